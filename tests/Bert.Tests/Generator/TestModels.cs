using Bert.Dsl;

namespace Bert.Tests.Generator;

// Odd-sized variants of OddModel that cover every head and option of the DSL, generated into the
// test assembly. Each combination exercises a different path of the emitted Forward and Backward.

/// <summary>Sequence classification (3 classes) on the pooled output.</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37)]
[Repeat(2)]
[Pooler]
[NspHead]
[ClassificationHead(Labels = 3, Dropout = 0.2)]
public partial class OddClassifier;

/// <summary>Token classification (5 tags) beside a masked-LM head, tanh-GELU.</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 3, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37, Activation = HiddenActivation.GeluTanh)]
[Repeat(2)]
[MlmHead]
[TokenClassificationHead(Labels = 5)]
public partial class OddTagger;

/// <summary>Span question answering, one layer, ReLU, no pooler.</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37, Activation = HiddenActivation.Relu)]
[Repeat(1)]
[SpanHead]
public partial class OddReader;

/// <summary>An untied masked-LM decoder on a narrower transform (T = 24 ≠ H).</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37)]
[Repeat(2)]
[MlmHead(TieToWordEmbeddings = false, TransformSize = 24, Activation = HiddenActivation.Relu)]
public partial class OddUntied;

/// <summary>An encoder with a pooler and no head: inference only.</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37)]
[Repeat(2)]
[Pooler]
public partial class OddEncoder;
