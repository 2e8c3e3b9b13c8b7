namespace Bert.Runtime.Presets;

/// <summary>One built-in model size: its declared configuration, parameter table and a factory.</summary>
/// <param name="Name">Registry name ("tiny" … "large").</param>
/// <param name="Config">Declared sizes (vocabulary 30522).</param>
/// <param name="TotalParameters">Every parameter, heads included, at the declared vocabulary.</param>
/// <param name="BertModelParameters">HuggingFace BertModel part: embeddings, encoder, pooler.</param>
/// <param name="Table">Parameter table at the declared vocabulary.</param>
/// <param name="TableFor">Parameter table for another vocabulary size (a custom WordPiece vocabulary).</param>
/// <param name="Create">Builds the model (see <see cref="ModelPresets.Create"/>).</param>
public sealed record ModelPreset(string Name, ModelConfig Config, long TotalParameters, long BertModelParameters,
    IReadOnlyList<ParameterInfo> Table, Func<int, IReadOnlyList<ParameterInfo>> TableFor, ModelPreset.Factory Create)
{
    /// <summary>Builds the model on a backend; <paramref name="vocabSize"/> overrides the declared vocabulary.</summary>
    public delegate BertModelBase Factory(IBackend backend, int maxBatch, int maxSeq, int maxPredictions, int? vocabSize);
}

/// <summary>The registry of built-in model sizes, by name: tiny, mini, small, medium, base, large.</summary>
public static class ModelPresets
{
    private static readonly ModelPreset[] All =
    [
        new("tiny", BertTiny.ModelConfig, BertTiny.TotalParameters, BertTiny.BertModelParameters, BertTiny.Table, BertTiny.TableFor,
            (b, n, s, p, v) => new BertTiny(b, n, s, p, v)),
        new("mini", BertMini.ModelConfig, BertMini.TotalParameters, BertMini.BertModelParameters, BertMini.Table, BertMini.TableFor,
            (b, n, s, p, v) => new BertMini(b, n, s, p, v)),
        new("small", BertSmall.ModelConfig, BertSmall.TotalParameters, BertSmall.BertModelParameters, BertSmall.Table, BertSmall.TableFor,
            (b, n, s, p, v) => new BertSmall(b, n, s, p, v)),
        new("medium", BertMedium.ModelConfig, BertMedium.TotalParameters, BertMedium.BertModelParameters, BertMedium.Table, BertMedium.TableFor,
            (b, n, s, p, v) => new BertMedium(b, n, s, p, v)),
        new("base", BertBase.ModelConfig, BertBase.TotalParameters, BertBase.BertModelParameters, BertBase.Table, BertBase.TableFor,
            (b, n, s, p, v) => new BertBase(b, n, s, p, v)),
        new("large", BertLarge.ModelConfig, BertLarge.TotalParameters, BertLarge.BertModelParameters, BertLarge.Table, BertLarge.TableFor,
            (b, n, s, p, v) => new BertLarge(b, n, s, p, v)),
    ];

    /// <summary>The registry names, smallest model first.</summary>
    public static IReadOnlyList<string> Names { get; } = Array.AsReadOnly(All.Select(p => p.Name).ToArray());

    public static bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ModelPreset? preset)
    {
        preset = All.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
        return preset is not null;
    }

    /// <summary>The preset called <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No such preset; the message lists the valid names.</exception>
    public static ModelPreset Get(string name) =>
        TryGet(name, out var preset) ? preset
            : throw new ArgumentException($"unknown model preset '{name}'; valid presets: {string.Join(", ", Names)}", nameof(name));

    public static ModelConfig Config(string name) => Get(name).Config;

    public static long TotalParameters(string name) => Get(name).TotalParameters;

    /// <summary>Builds preset <paramref name="name"/> on <paramref name="backend"/>, its activation arenas planned for
    /// the given maxima; <paramref name="vocabSize"/> (when given) replaces the declared vocabulary of 30522.</summary>
    public static BertModelBase Create(string name, IBackend backend, int maxBatch, int maxSeq, int maxPredictions, int? vocabSize = null) =>
        Get(name).Create(backend, maxBatch, maxSeq, maxPredictions, vocabSize);
}
