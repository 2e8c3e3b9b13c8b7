using Bert.Dsl;

namespace Bert.Tests.Training;

/// <summary>A small model with every dropout probability 0, so that splitting a batch into
/// micro-batches changes nothing but the order of sums (gradient-accumulation test).</summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 64, TypeVocabSize = 2, Hidden = 32, Dropout = 0)]
[EncoderLayer(Heads = 4, Intermediate = 37, AttentionDropout = 0, HiddenDropout = 0)]
[Repeat(2)]
[Pooler]
[MlmHead]
[NspHead]
public partial class NoDropoutModel;
