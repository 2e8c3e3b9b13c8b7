using Bert.Dsl;

namespace Bert.Tests.Model;

// Odd-sized fine-tuning variants of Generator.OddModel (B3 S7 H32 NH4 I37 V99) for the whole-model
// gradient checks: each head of the DSL on top of the same encoder sizes. Activations are smooth
// (GELU, tanh-GELU) so that central differences do not straddle a kink; ReLU is checked at op level.

/// <summary>BertForSequenceClassification: pooler and a 3-class classifier with its own dropout.</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37)]
[Repeat(2)]
[Pooler]
[ClassificationHead(Labels = 3, Dropout = 0.2)]
public partial class GradSequenceClassifier;

/// <summary>Token classification (5 tags) beside an untied masked-LM head on a narrower transform
/// (T 24), tanh-GELU, three segment types: covers cls.predictions.decoder.weight.</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 3, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37, Activation = HiddenActivation.GeluTanh)]
[Repeat(2)]
[MlmHead(TieToWordEmbeddings = false, TransformSize = 24)]
[TokenClassificationHead(Labels = 5)]
public partial class GradTokenClassifier;

/// <summary>BertForQuestionAnswering: start/end logits over the tokens, no pooler.</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37)]
[Repeat(2)]
[SpanHead]
public partial class GradSpanReader;
