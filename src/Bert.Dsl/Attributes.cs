namespace Bert.Dsl;

// The layer-spec language. A model is a `partial class` carrying these attributes; the Bert source
// generator (Bert.Generators) turns it, at compile time, into a model class with a parameter table,
// an activation plan and straight-line Forward/Backward passes over the backend interface.
//
//   [BertModel]
//   [Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
//   [EncoderLayer(Heads = 12, Intermediate = 3072)]
//   [Repeat(12)]
//   [Pooler]
//   [MlmHead]
//   [NspHead]
//   public partial class BertBase;
//
// Defaults are those of google-research/bert's BertConfig and HuggingFace's BertConfig.

/// <summary>Marks a partial class as a BERT-family model to generate. Required.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class BertModelAttribute : Attribute
{
    /// <summary>HuggingFace model_type written to config.json. Default "bert".</summary>
    public string ModelType { get; set; } = "bert";
}

/// <summary>Token + segment + position embeddings, summed, LayerNorm, dropout. Required.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class EmbeddingsAttribute : Attribute
{
    /// <summary>Vocabulary size V. Default 30522 (bert-base-uncased).</summary>
    public int VocabSize { get; set; } = 30522;
    /// <summary>Learned absolute positions. Default 512.</summary>
    public int MaxPositions { get; set; } = 512;
    /// <summary>Segment (token type) vocabulary. Default 2 (A and B).</summary>
    public int TypeVocabSize { get; set; } = 2;
    /// <summary>Hidden size H (d_model). Required, positive.</summary>
    public int Hidden { get; set; }
    /// <summary>LayerNorm epsilon. Default 1e-12.</summary>
    public double LayerNormEps { get; set; } = 1e-12;
    /// <summary>Dropout after the embedding LayerNorm. Default 0.1.</summary>
    public double Dropout { get; set; } = 0.1;
}

/// <summary>Hidden activation of the feed-forward block.</summary>
public enum HiddenActivation
{
    /// <summary>Exact GELU, x·Φ(x) (HuggingFace "gelu").</summary>
    Gelu = 0,
    /// <summary>Tanh approximation of GELU (HuggingFace "gelu_new").</summary>
    GeluTanh = 1,
    /// <summary>max(0, x).</summary>
    Relu = 2,
}

/// <summary>One post-LN transformer encoder layer: self-attention, residual + LayerNorm,
/// feed-forward, residual + LayerNorm. Required.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class EncoderLayerAttribute : Attribute
{
    /// <summary>Attention heads; Hidden must be divisible by it. Required, positive.</summary>
    public int Heads { get; set; }
    /// <summary>Feed-forward (intermediate) size. Required, positive (4·H in the paper).</summary>
    public int Intermediate { get; set; }
    /// <summary>Feed-forward activation. Default exact GELU.</summary>
    public HiddenActivation Activation { get; set; } = HiddenActivation.Gelu;
    /// <summary>Dropout on attention probabilities. Default 0.1.</summary>
    public double AttentionDropout { get; set; } = 0.1;
    /// <summary>Dropout on each sub-layer output before the residual add. Default 0.1.</summary>
    public double HiddenDropout { get; set; } = 0.1;
    /// <summary>LayerNorm epsilon. Default 1e-12.</summary>
    public double LayerNormEps { get; set; } = 1e-12;
    /// <summary>Post-LN (the original BERT). Only true is supported; false is reported by BERT007.</summary>
    public bool PostLayerNorm { get; set; } = true;
}

/// <summary>How many times the encoder layer repeats (L). Required.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class RepeatAttribute(int count) : Attribute
{
    /// <summary>Number of encoder layers L.</summary>
    public int Count { get; } = count;
}

/// <summary>Pooler: tanh(W·h[CLS] + b), the input of the NSP and classification heads.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class PoolerAttribute : Attribute;

/// <summary>Masked-LM head: dense + activation + LayerNorm transform, then a decoder tied to the token
/// embeddings plus its own bias, evaluated only at the gathered masked positions.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class MlmHeadAttribute : Attribute
{
    /// <summary>Tie the decoder weight to the word embeddings (stored once). Default true; the tied
    /// shapes must agree (BERT004).</summary>
    public bool TieToWordEmbeddings { get; set; } = true;
    /// <summary>Transform activation. Default exact GELU.</summary>
    public HiddenActivation Activation { get; set; } = HiddenActivation.Gelu;
    /// <summary>Width T of the transform (dense H→T, LayerNorm over T) that feeds the decoder [V,T].
    /// Default 0: the hidden size, as in BERT. A tied decoder is the word-embedding matrix [V,H], so
    /// tying requires T = H (BERT004); an untied one is stored as cls.predictions.decoder.weight.</summary>
    public int TransformSize { get; set; }
}

/// <summary>Next-sentence-prediction head: linear(H→2) on the pooled output. Requires [Pooler].</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class NspHeadAttribute : Attribute;

/// <summary>Sequence classification head (fine-tuning): dropout + linear(H→Labels) on the pooled
/// output. Requires [Pooler].</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class ClassificationHeadAttribute : Attribute
{
    /// <summary>Number of classes. Default 2.</summary>
    public int Labels { get; set; } = 2;
    /// <summary>Dropout before the classifier. Default 0.1.</summary>
    public double Dropout { get; set; } = 0.1;
}

/// <summary>Token classification head (fine-tuning): dropout + linear(H→Labels) on every token.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class TokenClassificationHeadAttribute : Attribute
{
    /// <summary>Number of tag classes. Default 2.</summary>
    public int Labels { get; set; } = 2;
    /// <summary>Dropout before the classifier. Default 0.1.</summary>
    public double Dropout { get; set; } = 0.1;
}

/// <summary>Span question-answering head (fine-tuning): linear(H→2) giving start and end logits.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class SpanHeadAttribute : Attribute;
