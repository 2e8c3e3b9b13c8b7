using Bert.Runtime.IO;

namespace Bert.Runtime;

/// <summary>
/// The built-in model classes by architecture: which generated class a <see cref="BertConfig"/>'s heads
/// select (HuggingFace's architecture names), its parameter table and a factory. Code that has a config
/// but no model (export, import, checkpoint inspection) takes the layout rule from here, so there is one.
/// </summary>
public static class BertModels
{
    private sealed record Entry(
        Func<BertConfig?, BertConfig> Resolve,
        Func<BertConfig, IReadOnlyList<ParameterInfo>> TableFor,
        Func<BertConfig, IBackend, int, int, int, BertModelBase> Create);

    private static readonly Dictionary<string, Entry> ByArchitecture = new(StringComparer.Ordinal)
    {
        ["BertForPreTraining"] = new(BertForPreTraining.ResolveConfig, BertForPreTraining.TableFor, (c, b, n, s, p) => new BertForPreTraining(b, n, s, p, c)),
        ["BertModel"] = new(BertModel.ResolveConfig, BertModel.TableFor, (c, b, n, s, p) => new BertModel(b, n, s, p, c)),
        ["BertForMaskedLM"] = new(BertForMaskedLM.ResolveConfig, BertForMaskedLM.TableFor, (c, b, n, s, p) => new BertForMaskedLM(b, n, s, p, c)),
        ["BertForNextSentencePrediction"] = new(BertForNextSentencePrediction.ResolveConfig, BertForNextSentencePrediction.TableFor,
            (c, b, n, s, p) => new BertForNextSentencePrediction(b, n, s, p, c)),
        ["BertForSequenceClassification"] = new(BertForSequenceClassification.ResolveConfig, BertForSequenceClassification.TableFor,
            (c, b, n, s, p) => new BertForSequenceClassification(b, n, s, p, c)),
        ["BertForTokenClassification"] = new(BertForTokenClassification.ResolveConfig, BertForTokenClassification.TableFor,
            (c, b, n, s, p) => new BertForTokenClassification(b, n, s, p, c)),
        ["BertForQuestionAnswering"] = new(BertForQuestionAnswering.ResolveConfig, BertForQuestionAnswering.TableFor,
            (c, b, n, s, p) => new BertForQuestionAnswering(b, n, s, p, c)),
    };

    /// <summary>The HuggingFace architecture names with a built-in class.</summary>
    public static IReadOnlyCollection<string> Architectures => ByArchitecture.Keys;

    private static Entry For(BertConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return ByArchitecture[ConfigJson.Architecture(config)];
    }

    /// <summary>The parameter table of the built-in class whose heads are <paramref name="config"/>'s.</summary>
    /// <exception cref="ArgumentException">No architecture has these heads, or a size is out of range.</exception>
    public static IReadOnlyList<ParameterInfo> TableFor(BertConfig config) => For(config).TableFor(config);

    /// <summary>Builds the built-in class whose heads are <paramref name="config"/>'s, at its sizes.</summary>
    public static BertModelBase Create(BertConfig config, IBackend backend, int maxBatch, int maxSeq, int maxPredictions) =>
        For(config).Create(config, backend, maxBatch, maxSeq, maxPredictions);

    /// <summary>The sizes of <paramref name="config"/> with the heads of <paramref name="architecture"/> (for example
    /// a pretraining checkpoint's encoder under a classifier), validated.</summary>
    public static BertConfig WithHeads(BertConfig config, string architecture)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!ByArchitecture.TryGetValue(architecture, out var entry))
            throw new ArgumentException($"unknown architecture '{architecture}'; built in: {string.Join(", ", ByArchitecture.Keys)}", nameof(architecture));
        return entry.Resolve(config);
    }
}
