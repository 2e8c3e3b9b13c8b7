using Bert.Dsl;
using Bert.Runtime.FineTuning;

namespace Bert.Runtime.Presets;

// Fine-tuning models for every published size: the encoder of the pretraining preset of the same
// name (same sizes, same HuggingFace tensor names, so its weights load as they are) with one
// fine-tuning head instead of the MLM and NSP heads. HuggingFace's layout is followed: sequence
// classification keeps the pooler (BertForSequenceClassification), token classification and span
// extraction drop it (BertForTokenClassification, BertForQuestionAnswering).
//
// The vocabulary size is a constructor argument (a checkpoint's own vocabulary), but the number of
// classes is part of the spec: classification is declared with 2 and 3 labels, token classification
// with 9 tags (CoNLL-2003 NER: O and B-/I- of PER, ORG, LOC, MISC). A task with fewer classes uses
// the smallest head that fits (the unused classes are never a target and never predicted); a task
// with more needs a new declaration here.

/// <summary>BERT-Tiny (L=2, H=128) with a 2-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 128)]
[EncoderLayer(Heads = 2, Intermediate = 512)]
[Repeat(2)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class BertTinyForSequenceClassification;

/// <summary>BERT-Tiny with a 3-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 128)]
[EncoderLayer(Heads = 2, Intermediate = 512)]
[Repeat(2)]
[Pooler]
[ClassificationHead(Labels = 3)]
public partial class BertTinyForSequenceClassification3;

/// <summary>BERT-Tiny with a 9-tag token classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 128)]
[EncoderLayer(Heads = 2, Intermediate = 512)]
[Repeat(2)]
[TokenClassificationHead(Labels = 9)]
public partial class BertTinyForTokenClassification;

/// <summary>BERT-Tiny with a span (question answering) head.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 128)]
[EncoderLayer(Heads = 2, Intermediate = 512)]
[Repeat(2)]
[SpanHead]
public partial class BertTinyForQuestionAnswering;

/// <summary>BERT-Mini (L=4, H=256) with a 2-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 256)]
[EncoderLayer(Heads = 4, Intermediate = 1024)]
[Repeat(4)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class BertMiniForSequenceClassification;

/// <summary>BERT-Mini with a 3-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 256)]
[EncoderLayer(Heads = 4, Intermediate = 1024)]
[Repeat(4)]
[Pooler]
[ClassificationHead(Labels = 3)]
public partial class BertMiniForSequenceClassification3;

/// <summary>BERT-Mini with a 9-tag token classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 256)]
[EncoderLayer(Heads = 4, Intermediate = 1024)]
[Repeat(4)]
[TokenClassificationHead(Labels = 9)]
public partial class BertMiniForTokenClassification;

/// <summary>BERT-Mini with a span (question answering) head.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 256)]
[EncoderLayer(Heads = 4, Intermediate = 1024)]
[Repeat(4)]
[SpanHead]
public partial class BertMiniForQuestionAnswering;

/// <summary>BERT-Small (L=4, H=512) with a 2-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(4)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class BertSmallForSequenceClassification;

/// <summary>BERT-Small with a 3-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(4)]
[Pooler]
[ClassificationHead(Labels = 3)]
public partial class BertSmallForSequenceClassification3;

/// <summary>BERT-Small with a 9-tag token classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(4)]
[TokenClassificationHead(Labels = 9)]
public partial class BertSmallForTokenClassification;

/// <summary>BERT-Small with a span (question answering) head.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(4)]
[SpanHead]
public partial class BertSmallForQuestionAnswering;

/// <summary>BERT-Medium (L=8, H=512) with a 2-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(8)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class BertMediumForSequenceClassification;

/// <summary>BERT-Medium with a 3-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(8)]
[Pooler]
[ClassificationHead(Labels = 3)]
public partial class BertMediumForSequenceClassification3;

/// <summary>BERT-Medium with a 9-tag token classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(8)]
[TokenClassificationHead(Labels = 9)]
public partial class BertMediumForTokenClassification;

/// <summary>BERT-Medium with a span (question answering) head.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 512)]
[EncoderLayer(Heads = 8, Intermediate = 2048)]
[Repeat(8)]
[SpanHead]
public partial class BertMediumForQuestionAnswering;

/// <summary>BERT-Base (L=12, H=768) with a 2-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class BertBaseForSequenceClassification;

/// <summary>BERT-Base with a 3-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[Pooler]
[ClassificationHead(Labels = 3)]
public partial class BertBaseForSequenceClassification3;

/// <summary>BERT-Base with a 9-tag token classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[TokenClassificationHead(Labels = 9)]
public partial class BertBaseForTokenClassification;

/// <summary>BERT-Base with a span (question answering) head.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 768)]
[EncoderLayer(Heads = 12, Intermediate = 3072)]
[Repeat(12)]
[SpanHead]
public partial class BertBaseForQuestionAnswering;

/// <summary>BERT-Large (L=24, H=1024) with a 2-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 1024)]
[EncoderLayer(Heads = 16, Intermediate = 4096)]
[Repeat(24)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class BertLargeForSequenceClassification;

/// <summary>BERT-Large with a 3-class sequence classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 1024)]
[EncoderLayer(Heads = 16, Intermediate = 4096)]
[Repeat(24)]
[Pooler]
[ClassificationHead(Labels = 3)]
public partial class BertLargeForSequenceClassification3;

/// <summary>BERT-Large with a 9-tag token classifier.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 1024)]
[EncoderLayer(Heads = 16, Intermediate = 4096)]
[Repeat(24)]
[TokenClassificationHead(Labels = 9)]
public partial class BertLargeForTokenClassification;

/// <summary>BERT-Large with a span (question answering) head.</summary>
[BertModel]
[Embeddings(VocabSize = 30522, MaxPositions = 512, TypeVocabSize = 2, Hidden = 1024)]
[EncoderLayer(Heads = 16, Intermediate = 4096)]
[Repeat(24)]
[SpanHead]
public partial class BertLargeForQuestionAnswering;

/// <summary>One fine-tuning model: a preset size with one head.</summary>
/// <param name="Size">The pretraining preset it extends ("tiny" … "large").</param>
/// <param name="Task">Which head.</param>
/// <param name="Labels">Classes of the head (2 for span: start and end).</param>
/// <param name="Config">Declared sizes (vocabulary 30522).</param>
/// <param name="TableFor">Parameter table for a vocabulary size.</param>
/// <param name="Create">Builds the model; the vocabulary size overrides the declared one.</param>
public sealed record FineTuningPreset(string Size, FineTuningTask Task, int Labels, ModelConfig Config,
    Func<int, IReadOnlyList<ParameterInfo>> TableFor, ModelPreset.Factory Create);

/// <summary>The registry of fine-tuning models: every preset size × (classification with 2 or 3
/// labels, token classification with 9 tags, span).</summary>
public static class FineTuningPresets
{
    private static readonly FineTuningPreset[] AllPresets =
    [
        new("tiny", FineTuningTask.Classification, 2, BertTinyForSequenceClassification.ModelConfig, BertTinyForSequenceClassification.TableFor,
            (b, n, s, p, v) => new BertTinyForSequenceClassification(b, n, s, p, v)),
        new("tiny", FineTuningTask.Classification, 3, BertTinyForSequenceClassification3.ModelConfig, BertTinyForSequenceClassification3.TableFor,
            (b, n, s, p, v) => new BertTinyForSequenceClassification3(b, n, s, p, v)),
        new("tiny", FineTuningTask.TokenClassification, 9, BertTinyForTokenClassification.ModelConfig, BertTinyForTokenClassification.TableFor,
            (b, n, s, p, v) => new BertTinyForTokenClassification(b, n, s, p, v)),
        new("tiny", FineTuningTask.Span, 2, BertTinyForQuestionAnswering.ModelConfig, BertTinyForQuestionAnswering.TableFor,
            (b, n, s, p, v) => new BertTinyForQuestionAnswering(b, n, s, p, v)),

        new("mini", FineTuningTask.Classification, 2, BertMiniForSequenceClassification.ModelConfig, BertMiniForSequenceClassification.TableFor,
            (b, n, s, p, v) => new BertMiniForSequenceClassification(b, n, s, p, v)),
        new("mini", FineTuningTask.Classification, 3, BertMiniForSequenceClassification3.ModelConfig, BertMiniForSequenceClassification3.TableFor,
            (b, n, s, p, v) => new BertMiniForSequenceClassification3(b, n, s, p, v)),
        new("mini", FineTuningTask.TokenClassification, 9, BertMiniForTokenClassification.ModelConfig, BertMiniForTokenClassification.TableFor,
            (b, n, s, p, v) => new BertMiniForTokenClassification(b, n, s, p, v)),
        new("mini", FineTuningTask.Span, 2, BertMiniForQuestionAnswering.ModelConfig, BertMiniForQuestionAnswering.TableFor,
            (b, n, s, p, v) => new BertMiniForQuestionAnswering(b, n, s, p, v)),

        new("small", FineTuningTask.Classification, 2, BertSmallForSequenceClassification.ModelConfig, BertSmallForSequenceClassification.TableFor,
            (b, n, s, p, v) => new BertSmallForSequenceClassification(b, n, s, p, v)),
        new("small", FineTuningTask.Classification, 3, BertSmallForSequenceClassification3.ModelConfig, BertSmallForSequenceClassification3.TableFor,
            (b, n, s, p, v) => new BertSmallForSequenceClassification3(b, n, s, p, v)),
        new("small", FineTuningTask.TokenClassification, 9, BertSmallForTokenClassification.ModelConfig, BertSmallForTokenClassification.TableFor,
            (b, n, s, p, v) => new BertSmallForTokenClassification(b, n, s, p, v)),
        new("small", FineTuningTask.Span, 2, BertSmallForQuestionAnswering.ModelConfig, BertSmallForQuestionAnswering.TableFor,
            (b, n, s, p, v) => new BertSmallForQuestionAnswering(b, n, s, p, v)),

        new("medium", FineTuningTask.Classification, 2, BertMediumForSequenceClassification.ModelConfig, BertMediumForSequenceClassification.TableFor,
            (b, n, s, p, v) => new BertMediumForSequenceClassification(b, n, s, p, v)),
        new("medium", FineTuningTask.Classification, 3, BertMediumForSequenceClassification3.ModelConfig, BertMediumForSequenceClassification3.TableFor,
            (b, n, s, p, v) => new BertMediumForSequenceClassification3(b, n, s, p, v)),
        new("medium", FineTuningTask.TokenClassification, 9, BertMediumForTokenClassification.ModelConfig, BertMediumForTokenClassification.TableFor,
            (b, n, s, p, v) => new BertMediumForTokenClassification(b, n, s, p, v)),
        new("medium", FineTuningTask.Span, 2, BertMediumForQuestionAnswering.ModelConfig, BertMediumForQuestionAnswering.TableFor,
            (b, n, s, p, v) => new BertMediumForQuestionAnswering(b, n, s, p, v)),

        new("base", FineTuningTask.Classification, 2, BertBaseForSequenceClassification.ModelConfig, BertBaseForSequenceClassification.TableFor,
            (b, n, s, p, v) => new BertBaseForSequenceClassification(b, n, s, p, v)),
        new("base", FineTuningTask.Classification, 3, BertBaseForSequenceClassification3.ModelConfig, BertBaseForSequenceClassification3.TableFor,
            (b, n, s, p, v) => new BertBaseForSequenceClassification3(b, n, s, p, v)),
        new("base", FineTuningTask.TokenClassification, 9, BertBaseForTokenClassification.ModelConfig, BertBaseForTokenClassification.TableFor,
            (b, n, s, p, v) => new BertBaseForTokenClassification(b, n, s, p, v)),
        new("base", FineTuningTask.Span, 2, BertBaseForQuestionAnswering.ModelConfig, BertBaseForQuestionAnswering.TableFor,
            (b, n, s, p, v) => new BertBaseForQuestionAnswering(b, n, s, p, v)),

        new("large", FineTuningTask.Classification, 2, BertLargeForSequenceClassification.ModelConfig, BertLargeForSequenceClassification.TableFor,
            (b, n, s, p, v) => new BertLargeForSequenceClassification(b, n, s, p, v)),
        new("large", FineTuningTask.Classification, 3, BertLargeForSequenceClassification3.ModelConfig, BertLargeForSequenceClassification3.TableFor,
            (b, n, s, p, v) => new BertLargeForSequenceClassification3(b, n, s, p, v)),
        new("large", FineTuningTask.TokenClassification, 9, BertLargeForTokenClassification.ModelConfig, BertLargeForTokenClassification.TableFor,
            (b, n, s, p, v) => new BertLargeForTokenClassification(b, n, s, p, v)),
        new("large", FineTuningTask.Span, 2, BertLargeForQuestionAnswering.ModelConfig, BertLargeForQuestionAnswering.TableFor,
            (b, n, s, p, v) => new BertLargeForQuestionAnswering(b, n, s, p, v)),
    ];

    /// <summary>Every fine-tuning model, by size (smallest first), then task and label count.</summary>
    public static IReadOnlyList<FineTuningPreset> All { get; } = Array.AsReadOnly(AllPresets);

    /// <summary>The label counts declared for <paramref name="task"/> (the same for every size).</summary>
    public static IReadOnlyList<int> LabelCounts(FineTuningTask task) =>
        AllPresets.Where(p => p.Task == task).Select(p => p.Labels).Distinct().Order().ToArray();

    /// <summary>The model of size <paramref name="size"/> for <paramref name="task"/> whose head has the
    /// fewest classes that still hold <paramref name="labels"/>; null when none is declared.</summary>
    public static FineTuningPreset? Find(string size, FineTuningTask task, int labels) =>
        AllPresets.Where(p => string.Equals(p.Size, size, StringComparison.OrdinalIgnoreCase) && p.Task == task && p.Labels >= labels)
            .OrderBy(p => p.Labels).FirstOrDefault();

    /// <summary>The preset size whose encoder has exactly the sizes of <paramref name="config"/>
    /// (layers, hidden, heads, intermediate, positions, segment types, activation, LayerNorm
    /// epsilon); the vocabulary may differ. Null when no preset matches.</summary>
    public static string? SizeOf(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        foreach (var name in ModelPresets.Names)
        {
            var p = ModelPresets.Config(name);
            if (p.Layers == config.Layers && p.Hidden == config.Hidden && p.Heads == config.Heads && p.Intermediate == config.Intermediate
                && p.MaxPositions == config.MaxPositions && p.TypeVocabSize == config.TypeVocabSize
                && p.HiddenActivation == config.HiddenActivation && Math.Abs(p.LayerNormEps - config.LayerNormEps) <= 1e-6f * Math.Max(p.LayerNormEps, 1e-12f))
                return name;
        }
        return null;
    }
}
