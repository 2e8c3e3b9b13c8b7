namespace Bert.Runtime.Presets;

/// <summary>One built-in model size: a <see cref="BertConfig"/> for <see cref="BertForPreTraining"/>.</summary>
/// <param name="Name">Registry name ("tiny" … "large").</param>
/// <param name="Config">The sizes (vocabulary 30522, 512 positions) with the pretraining heads.</param>
public sealed record ModelPreset(string Name, BertConfig Config)
{
    /// <summary>Every parameter, heads included, at the preset's vocabulary.</summary>
    public long TotalParameters => IO.ParameterLayout.Total(Table);

    /// <summary>HuggingFace BertModel part: embeddings, encoder, pooler.</summary>
    public long BertModelParameters => IO.ParameterLayout.BertModelPart(Table);

    /// <summary>Parameter table at the preset's vocabulary.</summary>
    public IReadOnlyList<ParameterInfo> Table => BertForPreTraining.TableFor(Config);

    /// <summary>Parameter table for another vocabulary size (a custom WordPiece vocabulary).</summary>
    public IReadOnlyList<ParameterInfo> TableFor(int vocabSize) => BertForPreTraining.TableFor(Config with { VocabSize = vocabSize });

    /// <summary>Builds a pretraining model of this size on a backend; <paramref name="vocabSize"/> (when given)
    /// replaces the preset's vocabulary of 30522.</summary>
    public BertForPreTraining Create(IBackend backend, int maxBatch, int maxSeq, int maxPredictions, int? vocabSize = null) =>
        new(backend, maxBatch, maxSeq, maxPredictions, vocabSize is { } v ? Config with { VocabSize = v } : Config);
}

/// <summary>
/// The published BERT sizes (google-research/bert) as <see cref="BertConfig"/> values, by name: tiny,
/// mini, small, medium, base, large. Each is a complete pretraining configuration (pooler, masked-LM and
/// next-sentence heads, bert-base-uncased's vocabulary of 30522, 512 positions); any built-in class takes
/// it (a classifier overrides the heads). Sizes are data: a config.json or code gives any other.
/// </summary>
public static class ModelPresets
{
    private static BertConfig Sizes(string name, int layers, int hidden, int heads) => BertForPreTraining.ResolveConfig(new BertConfig
    {
        Name = name,
        Layers = layers,
        Hidden = hidden,
        Heads = heads,
        Intermediate = 4 * hidden,
    });

    /// <summary>BERT-Tiny: L=2, H=128, A=2, I=512.</summary>
    public static BertConfig Tiny { get; } = Sizes("BertTiny", 2, 128, 2);
    /// <summary>BERT-Mini: L=4, H=256, A=4, I=1024.</summary>
    public static BertConfig Mini { get; } = Sizes("BertMini", 4, 256, 4);
    /// <summary>BERT-Small: L=4, H=512, A=8, I=2048.</summary>
    public static BertConfig Small { get; } = Sizes("BertSmall", 4, 512, 8);
    /// <summary>BERT-Medium: L=8, H=512, A=8, I=2048.</summary>
    public static BertConfig Medium { get; } = Sizes("BertMedium", 8, 512, 8);
    /// <summary>BERT-Base: L=12, H=768, A=12, I=3072 (110M parameters).</summary>
    public static BertConfig Base { get; } = Sizes("BertBase", 12, 768, 12);
    /// <summary>BERT-Large: L=24, H=1024, A=16, I=4096 (340M parameters).</summary>
    public static BertConfig Large { get; } = Sizes("BertLarge", 24, 1024, 16);

    /// <summary>The model of `bert pretrain` with no options (the README's default job): BERT-Tiny's sizes with
    /// the hidden and attention dropout off. A few minutes of CPU training underfit the model; dropout only
    /// slowed it (measured on the default job: held-out NSP 69% without, 56% with, at 1,200 steps). Not a
    /// registry entry: <c>--preset tiny</c> keeps BERT's 0.1.</summary>
    public static BertConfig TinyNoDropout { get; } = Tiny with { Name = "BertTinyNoDropout", HiddenDropout = 0f, AttentionDropout = 0f };

    private static readonly ModelPreset[] All =
    [
        new("tiny", Tiny), new("mini", Mini), new("small", Small), new("medium", Medium), new("base", Base), new("large", Large),
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

    public static BertConfig Config(string name) => Get(name).Config;

    public static long TotalParameters(string name) => Get(name).TotalParameters;

    /// <summary>Builds preset <paramref name="name"/> on <paramref name="backend"/>, its activation arenas planned for
    /// the given maxima; <paramref name="vocabSize"/> (when given) replaces the declared vocabulary of 30522.</summary>
    public static BertForPreTraining Create(string name, IBackend backend, int maxBatch, int maxSeq, int maxPredictions, int? vocabSize = null) =>
        Get(name).Create(backend, maxBatch, maxSeq, maxPredictions, vocabSize);

    /// <summary>The preset whose encoder has exactly the sizes of <paramref name="config"/> (vocabulary and
    /// heads aside), for messages and reports; null when it is no preset.</summary>
    public static string? NameOf(BertConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        foreach (var p in All)
        {
            var c = p.Config;
            if (c.Layers == config.Layers && c.Hidden == config.Hidden && c.Heads == config.Heads && c.Intermediate == config.Intermediate
                && c.MaxPositions == config.MaxPositions && c.TypeVocabSize == config.TypeVocabSize)
                return p.Name;
        }
        return null;
    }
}
