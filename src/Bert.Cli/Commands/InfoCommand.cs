using System.CommandLine;
using System.Globalization;
using Bert.Runtime;
using Bert.Runtime.Presets;

namespace Bert.Cli.Commands;

/// <summary>`bert info --preset NAME [--vocab-size V] [--full]`: a preset's sizes, parameter table and totals.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset")
        {
            Description = "model preset: " + string.Join(", ", ModelPresets.Names),
            DefaultValueFactory = _ => "base",
        };
        var vocab = new Option<int?>("--vocab-size") { Description = "vocabulary size to lay the table out for (default: the preset's 30522)" };
        var full = new Option<bool>("--full") { Description = "print every layer's tensors instead of layer 0 and a summary" };
        var cmd = new Command("info", "print a preset's parameter table (HuggingFace names, shapes, counts, weight decay) and totals")
        {
            preset, vocab, full,
        };
        cmd.SetAction(r =>
        {
            Write(Console.Out, r.GetValue(preset) ?? "base", r.GetValue(vocab), r.GetValue(full));
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>Writes the summary of preset <paramref name="presetName"/>.</summary>
    /// <exception cref="UserException">Unknown preset (the message lists the valid ones) or a non-positive vocabulary size.</exception>
    public static void Write(TextWriter output, string presetName, int? vocabSize, bool full)
    {
        if (!ModelPresets.TryGet(presetName, out var preset))
            throw new UserException($"--preset: unknown model preset '{presetName}'; valid presets: {string.Join(", ", ModelPresets.Names)}");
        if (vocabSize is <= 0)
            throw new UserException($"--vocab-size: {vocabSize} is not a positive vocabulary size");
        var config = vocabSize is { } v ? preset.Config with { VocabSize = v } : preset.Config;
        var table = vocabSize is { } vs ? preset.TableFor(vs) : preset.Table;

        output.WriteLine($"{config.Name} (preset \"{preset.Name}\"): {config.Layers} layers, hidden {config.Hidden}, {config.Heads} heads " +
                         $"(head dim {config.HeadDim}), intermediate {config.Intermediate}, vocabulary {config.VocabSize}, " +
                         $"{config.MaxPositions} positions, {config.TypeVocabSize} segment types, activation {config.HiddenActivation}");
        output.WriteLine("heads: " + Heads(config));
        output.WriteLine();

        var rows = table.Select((p, i) => (Info: p, Index: i)).OrderBy(r => r.Info.Name, HuggingFaceOrder.Instance).ToList();
        int nameWidth = Math.Max(40, rows.Max(r => r.Info.Name.Length));
        int shapeWidth = Math.Max(12, rows.Max(r => r.Info.ShapeText.Length));
        string Row(string name, string shape, string count, string decay) =>
            name.PadRight(nameWidth) + "  " + shape.PadRight(shapeWidth) + "  " + count.PadLeft(13) + "  " + decay;
        output.WriteLine(Row("name", "shape", "parameters", "decay"));

        bool summarized = false;
        foreach (var (p, _) in rows)
        {
            int layer = LayerOf(p.Name);
            if (!full && layer >= 1)
            {
                if (!summarized && config.Layers > 1)
                {
                    long perLayer = table.Where(t => LayerOf(t.Name) == 0).Sum(t => t.Count);
                    var label = config.Layers == 2 ? "bert.encoder.layer.1" : $"bert.encoder.layer.1 … {config.Layers - 1}";
                    output.WriteLine(label.PadRight(nameWidth) + "  " +
                                     $"same shapes as layer 0: {N(perLayer)} each, {N(perLayer * (config.Layers - 1))} together");
                    summarized = true;
                }
                continue;
            }
            output.WriteLine(Row(p.Name, p.ShapeText, N(p.Count), p.Decay ? "yes" : "no"));
        }

        long total = table.Sum(t => t.Count);
        long bertModel = table.Where(t => t.Name.StartsWith("bert.", StringComparison.Ordinal)).Sum(t => t.Count);
        long decayed = table.Where(t => t.Decay).Sum(t => t.Count);
        output.WriteLine();
        output.WriteLine($"{"tensors",-44}{table.Count,15}");
        output.WriteLine($"{"BertModel (embeddings + encoder + pooler)",-44}{N(bertModel),15}");
        output.WriteLine($"{"heads",-44}{N(total - bertModel),15}");
        output.WriteLine($"{"total",-44}{N(total),15}  ({total * 4.0 / (1 << 20):F1} MiB of fp32 weights)");
        output.WriteLine($"{"weight-decayed (embeddings, Linear weights)",-44}{N(decayed),15}");
    }

    private static string Heads(BertConfig c)
    {
        var heads = new List<string>();
        if (c.HasPooler) heads.Add("pooler");
        if (c.HasMlmHead) heads.Add("masked LM (decoder tied to the word embeddings)");
        if (c.HasNspHead) heads.Add("next sentence");
        if (c.ClassificationLabels > 0) heads.Add($"classification ({c.ClassificationLabels} classes)");
        if (c.TokenClassificationLabels > 0) heads.Add($"token classification ({c.TokenClassificationLabels} classes)");
        if (c.HasSpanHead) heads.Add("span");
        return heads.Count == 0 ? "none" : string.Join(", ", heads);
    }

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>The encoder layer a tensor belongs to, or −1.</summary>
    private static int LayerOf(string name)
    {
        const string prefix = "bert.encoder.layer.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return -1;
        int end = name.IndexOf('.', prefix.Length);
        return int.Parse(name.AsSpan(prefix.Length, end - prefix.Length), CultureInfo.InvariantCulture);
    }

    /// <summary>Orders names as HuggingFace's BertForPreTraining declares its modules (embeddings, layers in
    /// order, pooler, heads; weight before bias), comparing dotted segments, numbers numerically.</summary>
    private sealed class HuggingFaceOrder : IComparer<string>
    {
        public static readonly HuggingFaceOrder Instance = new();

        private static readonly Dictionary<string, int> Rank = new(StringComparer.Ordinal)
        {
            ["bert"] = 0, ["cls"] = 1, ["classifier"] = 2, ["qa_outputs"] = 3,
            ["embeddings"] = 0, ["encoder"] = 1, ["pooler"] = 2,
            ["word_embeddings"] = 0, ["position_embeddings"] = 1, ["token_type_embeddings"] = 2,
            ["attention"] = 0, ["intermediate"] = 1, ["output"] = 2, ["self"] = 0,
            ["query"] = 0, ["key"] = 1, ["value"] = 2, ["dense"] = 0, ["LayerNorm"] = 3,
            ["predictions"] = 0, ["seq_relationship"] = 1, ["transform"] = 0, ["decoder"] = 1,
            ["weight"] = 0, ["bias"] = 1,
        };

        public int Compare(string? x, string? y)
        {
            var a = (x ?? "").Split('.');
            var b = (y ?? "").Split('.');
            for (int i = 0; i < Math.Min(a.Length, b.Length); i++)
            {
                int c = Segment(a[i], b[i]);
                if (c != 0) return c;
            }
            return a.Length.CompareTo(b.Length);
        }

        private static int Segment(string a, string b)
        {
            if (a == b) return 0;
            if (int.TryParse(a, CultureInfo.InvariantCulture, out int na) && int.TryParse(b, CultureInfo.InvariantCulture, out int nb))
                return na.CompareTo(nb);
            int ra = Rank.GetValueOrDefault(a, 100), rb = Rank.GetValueOrDefault(b, 100);
            return ra != rb ? ra.CompareTo(rb) : string.CompareOrdinal(a, b);
        }
    }
}
