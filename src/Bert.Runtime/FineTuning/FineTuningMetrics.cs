using System.Text;
using System.Text.RegularExpressions;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// The evaluation measures of each task: accuracy and F1 for classification (F1 of class 1 with two
/// classes, the macro average over classes otherwise); word accuracy and F1 for token classification
/// (entity-level F1 as conlleval computes it when the tags are BIO, the macro average over tags
/// otherwise); exact match and token F1 for spans, with the SQuAD v1.1 answer normalization.
/// </summary>
public static partial class FineTuningMetrics
{
    /// <returns>Accuracy and F1 (binary: of class 1; otherwise macro over the classes that occur).</returns>
    public static (double Accuracy, double F1) Classification(ReadOnlySpan<int> gold, ReadOnlySpan<int> predicted, int classes)
    {
        if (gold.Length != predicted.Length) throw new ArgumentException($"{gold.Length} gold labels but {predicted.Length} predictions", nameof(predicted));
        if (gold.Length == 0) return (0, 0);
        var tp = new long[classes];
        var fp = new long[classes];
        var fn = new long[classes];
        long correct = 0;
        for (int i = 0; i < gold.Length; i++)
        {
            int g = gold[i], p = predicted[i];
            if (g == p)
            {
                correct++;
                tp[g]++;
            }
            else
            {
                fp[p]++;
                fn[g]++;
            }
        }
        double accuracy = (double)correct / gold.Length;
        if (classes == 2) return (accuracy, F1(tp[1], fp[1], fn[1]));
        double sum = 0;
        int present = 0;
        for (int c = 0; c < classes; c++)
        {
            if (tp[c] + fp[c] + fn[c] == 0) continue;
            sum += F1(tp[c], fp[c], fn[c]);
            present++;
        }
        return (accuracy, present > 0 ? sum / present : 0);
    }

    /// <summary>Word accuracy and F1 over tagged sentences.</summary>
    public static (double Accuracy, double F1) Tokens(IReadOnlyList<string[]> gold, IReadOnlyList<string[]> predicted)
    {
        if (gold.Count != predicted.Count) throw new ArgumentException($"{gold.Count} gold sentences but {predicted.Count} predicted", nameof(predicted));
        long words = 0, correct = 0;
        for (int s = 0; s < gold.Count; s++)
        {
            if (gold[s].Length != predicted[s].Length)
                throw new ArgumentException($"sentence {s}: {gold[s].Length} gold tags but {predicted[s].Length} predicted", nameof(predicted));
            for (int w = 0; w < gold[s].Length; w++)
            {
                words++;
                if (gold[s][w] == predicted[s][w]) correct++;
            }
        }
        double accuracy = words > 0 ? (double)correct / words : 0;
        bool bio = gold.All(s => s.All(IsBioTag));
        return (accuracy, bio ? EntityF1(gold, predicted) : MacroTagF1(gold, predicted));
    }

    /// <summary>Whether a tag belongs to a BIO scheme: "O", "B-…" or "I-…".</summary>
    public static bool IsBioTag(string tag) => tag == "O" || tag.StartsWith("B-", StringComparison.Ordinal) || tag.StartsWith("I-", StringComparison.Ordinal);

    /// <summary>The entities (start word, end word inclusive, type) of a BIO sequence, read as conlleval
    /// does: an I- tag that does not continue an entity of its type starts one.</summary>
    public static List<(int Start, int End, string Type)> Entities(string[] tags)
    {
        var result = new List<(int, int, string)>();
        int start = -1;
        string type = "";
        for (int i = 0; i <= tags.Length; i++)
        {
            string tag = i < tags.Length ? tags[i] : "O";
            bool begins = tag.StartsWith("B-", StringComparison.Ordinal)
                          || (tag.StartsWith("I-", StringComparison.Ordinal) && (start < 0 || tag[2..] != type));
            bool continues = start >= 0 && tag.StartsWith("I-", StringComparison.Ordinal) && tag[2..] == type;
            if (start >= 0 && !continues)
            {
                result.Add((start, i - 1, type));
                start = -1;
            }
            if (begins)
            {
                start = i;
                type = tag[2..];
            }
        }
        return result;
    }

    private static double EntityF1(IReadOnlyList<string[]> gold, IReadOnlyList<string[]> predicted)
    {
        long tp = 0, goldCount = 0, predictedCount = 0;
        for (int s = 0; s < gold.Count; s++)
        {
            var g = Entities(gold[s]);
            var p = Entities(predicted[s].Select(t => IsBioTag(t) ? t : "O").ToArray());
            goldCount += g.Count;
            predictedCount += p.Count;
            var set = new HashSet<(int, int, string)>(g);
            foreach (var e in p)
                if (set.Contains(e)) tp++;
        }
        return F1(tp, predictedCount - tp, goldCount - tp);
    }

    private static double MacroTagF1(IReadOnlyList<string[]> gold, IReadOnlyList<string[]> predicted)
    {
        var stats = new Dictionary<string, (long Tp, long Fp, long Fn)>(StringComparer.Ordinal);
        for (int s = 0; s < gold.Count; s++)
            for (int w = 0; w < gold[s].Length; w++)
            {
                string g = gold[s][w], p = predicted[s][w];
                if (g == p)
                {
                    var x = stats.GetValueOrDefault(g);
                    stats[g] = (x.Tp + 1, x.Fp, x.Fn);
                }
                else
                {
                    var xp = stats.GetValueOrDefault(p);
                    stats[p] = (xp.Tp, xp.Fp + 1, xp.Fn);
                    var xg = stats.GetValueOrDefault(g);
                    stats[g] = (xg.Tp, xg.Fp, xg.Fn + 1);
                }
            }
        return stats.Count == 0 ? 0 : stats.Values.Average(v => F1(v.Tp, v.Fp, v.Fn));
    }

    /// <summary>SQuAD v1.1 exact match and F1 (fractions, not percentages) of predicted against gold answers.</summary>
    public static (double ExactMatch, double F1) Squad(IReadOnlyList<string> gold, IReadOnlyList<string> predicted)
    {
        if (gold.Count != predicted.Count) throw new ArgumentException($"{gold.Count} gold answers but {predicted.Count} predicted", nameof(predicted));
        if (gold.Count == 0) return (0, 0);
        double em = 0, f1 = 0;
        for (int i = 0; i < gold.Count; i++)
        {
            string g = NormalizeAnswer(gold[i]), p = NormalizeAnswer(predicted[i]);
            if (g == p) em++;
            f1 += TokenF1(g, p);
        }
        return (em / gold.Count, f1 / gold.Count);
    }

    /// <summary>SQuAD's normalize_answer: lower case, drop ASCII punctuation, drop the articles a/an/the,
    /// collapse whitespace.</summary>
    public static string NormalizeAnswer(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text.ToLowerInvariant())
            if (!((c < 128 && char.IsPunctuation(c)) || c is '$' or '+' or '<' or '=' or '>' or '^' or '`' or '|' or '~'))
                sb.Append(c);
        string noArticles = Articles().Replace(sb.ToString(), " ");
        return string.Join(' ', noArticles.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    private static double TokenF1(string gold, string predicted)
    {
        var g = gold.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var p = predicted.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (g.Length == 0 || p.Length == 0) return g.Length == p.Length ? 1 : 0;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in g) counts[t] = counts.GetValueOrDefault(t) + 1;
        int common = 0;
        foreach (var t in p)
            if (counts.TryGetValue(t, out int c) && c > 0)
            {
                counts[t] = c - 1;
                common++;
            }
        if (common == 0) return 0;
        double precision = (double)common / p.Length, recall = (double)common / g.Length;
        return 2 * precision * recall / (precision + recall);
    }

    private static double F1(long tp, long fp, long fn) => tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);

    [GeneratedRegex(@"\b(a|an|the)\b")]
    private static partial Regex Articles();
}
