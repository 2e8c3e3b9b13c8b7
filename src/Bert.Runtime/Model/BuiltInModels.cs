using Bert.Dsl;

namespace Bert.Runtime;

// The built-in model classes: one per HuggingFace BERT architecture (head combination), generated from
// these specs. Sizes are run-time data: each class takes any BertConfig (a preset from
// Presets.ModelPresets, a config.json, or code); the sizes declared here (bert-base-uncased's) are only
// the classes' DefaultConfig. Fine-tuning heads take any number of labels from the config.
// transformers' layout is followed: sequence classification and next-sentence prediction keep the
// pooler; masked LM, token classification and span extraction have none.

/// <summary>BertForPreTraining: encoder, pooler, masked-LM and next-sentence heads.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[Pooler]
[MlmHead]
[NspHead]
public partial class BertForPreTraining;

/// <summary>BertModel: the encoder and its pooler, no head (embeddings and inference).</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[Pooler]
public partial class BertModel;

/// <summary>BertForMaskedLM: encoder and masked-LM head, no pooler.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[MlmHead]
public partial class BertForMaskedLM;

/// <summary>BertForNextSentencePrediction: encoder, pooler and next-sentence head.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[Pooler]
[NspHead]
public partial class BertForNextSentencePrediction;

/// <summary>BertForSequenceClassification: encoder, pooler, dropout and a linear classifier with
/// <see cref="BertConfig.ClassificationLabels"/> classes (any number; 2 by default).</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class BertForSequenceClassification;

/// <summary>BertForTokenClassification: encoder, dropout and a linear tagger with
/// <see cref="BertConfig.TokenClassificationLabels"/> tags (any number; 2 by default), no pooler.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[TokenClassificationHead(Labels = 2)]
public partial class BertForTokenClassification;

/// <summary>BertForQuestionAnswering: encoder and span head (start and end logits), no pooler.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[SpanHead]
public partial class BertForQuestionAnswering;
