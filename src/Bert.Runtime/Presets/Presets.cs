using Bert.Dsl;

namespace Bert.Runtime.Presets;

// The published BERT sizes (google-research/bert), each a complete pretraining model: embeddings,
// encoder, pooler, masked-LM and next-sentence heads, bert-base-uncased's vocabulary (30522) and
// 512 positions. A model built with another vocabulary passes vocabSize to the constructor.

/// <summary>BERT-Tiny: L=2, H=128, A=2, I=512.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 128)]
[EncoderLayer(Heads = 2, Intermediate = 512)]
[Repeat(2)]
[Pooler]
[MlmHead]
[NspHead]
public partial class BertTiny;

/// <summary>BERT-Mini: L=4, H=256, A=4, I=1024.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 256)]
[EncoderLayer(Heads = 4, Intermediate = 1024)]
[Repeat(4)]
[Pooler]
[MlmHead]
[NspHead]
public partial class BertMini;

/// <summary>BERT-Small: L=4, H=512, A=8, I=2048.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(4)]
[Pooler]
[MlmHead]
[NspHead]
public partial class BertSmall;

/// <summary>BERT-Medium: L=8, H=512, A=8, I=2048.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(8)]
[Pooler]
[MlmHead]
[NspHead]
public partial class BertMedium;

/// <summary>BERT-Base: L=12, H=768, A=12, I=3072 (110M parameters).</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[Pooler]
[MlmHead]
[NspHead]
public partial class BertBase;

/// <summary>BERT-Large: L=24, H=1024, A=16, I=4096 (340M parameters).</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 1024)]
[EncoderLayer(Heads = 16, Intermediate = 4096)]
[Repeat(24)]
[Pooler]
[MlmHead]
[NspHead]
public partial class BertLarge;
