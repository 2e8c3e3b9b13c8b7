using System.Globalization;
using System.Text;
using Bert.Runtime.Data;
using Bert.Runtime.IO;

namespace Bert.Runtime.FineTuning;

/// <summary>Class names and the deterministic held-out split of user data.</summary>
public static class LabelSets
{
    /// <summary>The distinct labels in class-id order: numeric order when every label is an integer
    /// ("0", "1", "2"), ordinal string order otherwise.</summary>
    public static IReadOnlyList<string> FromLabels(IEnumerable<string> labels)
    {
        var distinct = labels.Distinct(StringComparer.Ordinal).ToList();
        bool numeric = distinct.All(l => long.TryParse(l, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _));
        return numeric
            ? distinct.OrderBy(l => long.Parse(l, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture)).ToArray()
            : distinct.Order(StringComparer.Ordinal).ToArray();
    }

    public static Dictionary<string, int> Index(IReadOnlyList<string> names)
    {
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < names.Count; i++) index[names[i]] = i;
        return index;
    }

    /// <summary>Splits off a fraction of <paramref name="items"/> for validation, spread evenly through the
    /// file: item i goes to validation when ⌊(i+1)·f⌋ &gt; ⌊i·f⌋ (f = 0.1: items 9, 19, 29, …).</summary>
    public static (List<T> Train, List<T> Validation) Holdout<T>(IReadOnlyList<T> items, double fraction)
    {
        if (!(fraction > 0 && fraction < 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "the validation fraction must be in (0, 1)");
        var train = new List<T>();
        var validation = new List<T>();
        for (int i = 0; i < items.Count; i++)
        {
            if (Math.Floor((i + 1) * fraction) > Math.Floor(i * fraction)) validation.Add(items[i]);
            else train.Add(items[i]);
        }
        return (train, validation);
    }
}

/// <summary>Saves a fine-tuned model as a checkpoint that is also a HuggingFace model directory
/// (BertForSequenceClassification, BertForTokenClassification or BertForQuestionAnswering, with
/// id2label/label2id), with vocab.txt, tokenizer_config.json and special_tokens_map.json beside it.</summary>
public static class FineTunedCheckpoint
{
    public static string Save(CheckpointWriter writer, BertModelBase model, long step, IReadOnlyList<string>? labelNames,
        Vocabulary vocabulary, bool lowerCase, IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? extraFiles = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vocabulary);
        var host = new float[model.ParameterTotal];
        model.Backend.Download<float>(host, model.Parameters);
        int head = Math.Max(model.Config.ClassificationLabels, model.Config.TokenClassificationLabels);
        if (head > 0 && labelNames is not null && labelNames.Count != head)
            throw new ArgumentException($"{labelNames.Count} label names for a head of {head} classes", nameof(labelNames));
        var vocabText = new StringBuilder(vocabulary.Count * 8);
        foreach (var t in vocabulary.Tokens) vocabText.Append(t).Append('\n');
        var files = new Dictionary<string, ReadOnlyMemory<byte>>(StringComparer.Ordinal)
        {
            ["vocab.txt"] = Encoding.UTF8.GetBytes(vocabText.ToString()),
            [HfTokenizerFiles.ConfigFile] = HfTokenizerFiles.TokenizerConfig(lowerCase, model.Config.MaxPositions),
            [HfTokenizerFiles.SpecialTokensFile] = HfTokenizerFiles.SpecialTokensMap(),
        };
        if (extraFiles is not null)
            foreach (var (k, v) in extraFiles) files[k] = v;
        return writer.Save(new CheckpointContent
        {
            Step = step,
            Config = model.Config,
            LabelNames = head > 0 ? labelNames : null,
            Table = model.ParameterTable,
            Parameters = host,
            ExtraFiles = files,
        }, cancellationToken);
    }
}
