using Bert.Dsl;

namespace Bert.Tests.Generator;

/// <summary>
/// The odd-sized test model (google-research/bert's test sizes): sizes that share no factor catch
/// swapped axes. Run-time tests use batch 3 and sequence 7 with it. Its generated source is kept as
/// a snapshot (Snapshots/OddModel.g.cs.txt).
/// </summary>
[BertModel]
[Embeddings(VocabSize = 99, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37)]
[Repeat(2)]
[Pooler]
[MlmHead]
[NspHead]
public partial class OddModel;
