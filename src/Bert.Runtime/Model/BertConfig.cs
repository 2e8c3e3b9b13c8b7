namespace Bert.Runtime;

/// <summary>How a parameter tensor is initialized (google-research/bert and HuggingFace).</summary>
public enum ParameterInit : byte
{
    /// <summary>Truncated-free normal, mean 0, std = initializer range (0.02).</summary>
    Normal = 0,
    Ones = 1,
    Zeros = 2,
}

/// <summary>One row of a generated model's parameter table.</summary>
/// <param name="Name">HuggingFace BertForPreTraining name, e.g. "bert.encoder.layer.0.attention.self.query.weight".</param>
/// <param name="Shape">Shape as HuggingFace stores it (Linear weights are [out, in]).</param>
/// <param name="Offset">Element offset in the flat parameter buffer.</param>
/// <param name="Init">Initialization.</param>
/// <param name="Decay">Whether AdamW applies weight decay (false for LayerNorm weights and all biases).</param>
public sealed record ParameterInfo(string Name, int[] Shape, long Offset, ParameterInit Init, bool Decay)
{
    public long Count { get; } = Shape.Aggregate(1L, (a, d) => a * d);

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// The sizes and hyper-parameters of a BERT model: what transformers' BertConfig holds, with key names in
/// config.json following it. Sizes are run-time data: a generated model class takes one at construction
/// (its [BertModel] attributes give <c>DefaultConfig</c>), so one class serves every size. Which heads exist
/// (the Has*/labels members) is the class's structure; a class overrides those members with its own.
/// Read one from a config.json (<see cref="IO.ConfigJson"/>), a preset (<see cref="Presets.ModelPresets"/>) or code.
/// </summary>
public sealed record BertConfig
{
    public required string Name { get; init; }
    public int VocabSize { get; init; } = 30522;
    public int MaxPositions { get; init; } = 512;
    public int TypeVocabSize { get; init; } = 2;
    public int Hidden { get; init; }
    public int Layers { get; init; }
    public int Heads { get; init; }
    public int Intermediate { get; init; }
    public Activation HiddenActivation { get; init; } = Activation.Gelu;
    /// <summary>Dropout on the embeddings and on each sub-layer's output (hidden_dropout_prob).</summary>
    public float HiddenDropout { get; init; } = 0.1f;
    public float AttentionDropout { get; init; } = 0.1f;
    public float LayerNormEps { get; init; } = 1e-12f;
    public float InitializerRange { get; init; } = 0.02f;
    public bool HasPooler { get; init; }
    public bool HasMlmHead { get; init; }
    public bool HasNspHead { get; init; }
    /// <summary>Classes of a classification / token-classification head; 0 when absent.</summary>
    public int ClassificationLabels { get; init; }
    public int TokenClassificationLabels { get; init; }
    public bool HasSpanHead { get; init; }
    public float ClassifierDropout { get; init; } = 0.1f;

    public int HeadDim => Hidden / Heads;

    /// <summary>Most encoder layers a config may declare (BERT-large has 24); bounds the parameter table.</summary>
    public const int MaxLayers = 1024;

    /// <summary>Most classes of a classification head.</summary>
    public const int MaxLabels = 4096;

    /// <summary>Throws when a size or hyper-parameter is out of range, naming the field and its value.
    /// Models call it before allocating anything.</summary>
    /// <exception cref="BertConfigException">The first bad field.</exception>
    public BertConfig Validate()
    {
        static string S(double v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);
        void Fail(string field, double value, string rule) => throw new BertConfigException(Name, field, S(value), rule);
        void Positive(string field, int value)
        {
            if (value <= 0) Fail(field, value, "must be positive");
        }
        void Probability(string field, float value)
        {
            if (!(value >= 0f && value < 1f)) Fail(field, value, "a dropout probability must be in [0, 1)");
        }

        Positive(nameof(VocabSize), VocabSize);
        Positive(nameof(MaxPositions), MaxPositions);
        Positive(nameof(TypeVocabSize), TypeVocabSize);
        Positive(nameof(Hidden), Hidden);
        Positive(nameof(Layers), Layers);
        Positive(nameof(Heads), Heads);
        Positive(nameof(Intermediate), Intermediate);
        if (Layers > MaxLayers) Fail(nameof(Layers), Layers, $"at most {MaxLayers} layers are supported");
        if (Hidden % Heads != 0) Fail(nameof(Hidden), Hidden, $"must be divisible by Heads ({Heads})");
        if (!Enum.IsDefined(HiddenActivation)) Fail(nameof(HiddenActivation), (int)HiddenActivation, "not an Activation member");
        Probability(nameof(HiddenDropout), HiddenDropout);
        Probability(nameof(AttentionDropout), AttentionDropout);
        Probability(nameof(ClassifierDropout), ClassifierDropout);
        if (!(LayerNormEps > 0f && LayerNormEps < 1f)) Fail(nameof(LayerNormEps), LayerNormEps, "a LayerNorm epsilon must be in (0, 1)");
        if (!(InitializerRange > 0f && float.IsFinite(InitializerRange))) Fail(nameof(InitializerRange), InitializerRange, "must be positive");
        if (ClassificationLabels < 0 || ClassificationLabels > MaxLabels)
            Fail(nameof(ClassificationLabels), ClassificationLabels, $"must be in [1, {MaxLabels}] with a classification head, 0 without");
        if (TokenClassificationLabels < 0 || TokenClassificationLabels > MaxLabels)
            Fail(nameof(TokenClassificationLabels), TokenClassificationLabels, $"must be in [1, {MaxLabels}] with a token-classification head, 0 without");
        return this;
    }
}

/// <summary>A <see cref="BertConfig"/> member out of range: which one, its value and the rule it breaks.</summary>
public sealed class BertConfigException(string model, string field, string value, string rule)
    : ArgumentException($"model config '{model}': {field} = {value}: {rule}", field)
{
    /// <summary>The <see cref="BertConfig"/> member.</summary>
    public string Field { get; } = field;
    public string Value { get; } = value;
    public string Rule { get; } = rule;
}
