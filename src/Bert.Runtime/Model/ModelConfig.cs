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

/// <summary>The sizes and hyper-parameters of a model, as declared by its DSL attributes. Key names
/// in config.json follow HuggingFace's BertConfig.</summary>
public sealed record ModelConfig
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
}
