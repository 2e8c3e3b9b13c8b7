namespace Bert.Runtime.IO;

/// <summary>
/// The flat-buffer parameter table of a BERT model from its config alone, for tools that have a config
/// but no model (export, import). There is one layout rule: the generated TableFor of the built-in class
/// whose heads the config declares (<see cref="BertModels"/>), the same table the model itself uses.
/// </summary>
public static class ParameterLayout
{
    /// <summary>The table of a BertForPreTraining (pooler, MLM and NSP heads) with the config's sizes,
    /// whatever heads the config itself declares.</summary>
    public static IReadOnlyList<ParameterInfo> ForPretraining(BertConfig config) => BertForPreTraining.TableFor(config);

    /// <summary>The table of the heads the config declares (HuggingFace's names).</summary>
    /// <exception cref="ArgumentException">No HuggingFace architecture has these heads, or a size is out of range.</exception>
    public static IReadOnlyList<ParameterInfo> For(BertConfig config) => BertModels.TableFor(config);

    /// <summary>Elements of the flat buffer the table needs (the end of its furthest tensor).</summary>
    public static long Total(IReadOnlyList<ParameterInfo> table)
    {
        ArgumentNullException.ThrowIfNull(table);
        long end = 0;
        foreach (var p in table) end = Math.Max(end, p.Offset + p.Count);
        return end;
    }

    /// <summary>Parameters of HuggingFace's BertModel part (embeddings, encoder, pooler), heads excluded.</summary>
    public static long BertModelPart(IReadOnlyList<ParameterInfo> table)
    {
        ArgumentNullException.ThrowIfNull(table);
        long n = 0;
        foreach (var p in table) if (p.Name.StartsWith("bert.", StringComparison.Ordinal)) n += p.Count;
        return n;
    }
}
