namespace Bert.Runtime;

/// <summary>
/// One micro-batch on the device, as the generated Forward/Backward read it. Views are I32 unless
/// noted; heads whose inputs are Null are not evaluated for loss (inference).
/// </summary>
public readonly record struct BertBatch
{
    /// <summary>B: sequences in this micro-batch (≤ the model's planned maximum).</summary>
    public required int Batch { get; init; }
    /// <summary>S: sequence length (≤ planned maximum).</summary>
    public required int Seq { get; init; }
    /// <summary>P: masked-LM predictions per sequence (0 without an MLM head).</summary>
    public int Predictions { get; init; }

    /// <summary>[B·S] token ids.</summary>
    public required TensorRef InputIds { get; init; }
    /// <summary>[B·S] segment ids (0 for A, 1 for B).</summary>
    public required TensorRef TokenTypeIds { get; init; }
    /// <summary>[B·S] 1 for real tokens, 0 for padding.</summary>
    public required TensorRef AttentionMask { get; init; }

    /// <summary>[B·P] masked positions in [0,S) (padding entries: 0 with weight 0).</summary>
    public TensorRef MlmPositions { get; init; }
    /// <summary>[B·P] original token ids at the masked positions.</summary>
    public TensorRef MlmLabels { get; init; }
    /// <summary>F32[B·P] 1 for a real prediction, 0 for padding.</summary>
    public TensorRef MlmWeights { get; init; }
    /// <summary>1/(Σ MlmWeights + 1e-5), computed on the host when the batch is built (no device read).</summary>
    public float MlmGradScale { get; init; }
    /// <summary>F32[1] on the device holding <see cref="MlmGradScale"/>, or Null. When set, the MLM loss reads its
    /// scale from here when it runs (<see cref="IBackend.SoftmaxCrossEntropy"/>'s gradScaleOnDevice), so a step's
    /// queued work does not depend on the batch's weight total and a captured CUDA graph replays for every batch of
    /// the same shape.</summary>
    public TensorRef MlmGradScaleOnDevice { get; init; }

    /// <summary>[B] 0 = B is the actual next segment, 1 = B is random.</summary>
    public TensorRef NspLabels { get; init; }

    /// <summary>1/(gradient-accumulation micro-batches): multiplies the per-sequence heads' gradient
    /// scale 1/B (NSP, classification, span) so that the micro-batches of one step sum to the mean over
    /// the whole batch. 0 means 1. (MLM and token classification take their full-batch scale directly.)</summary>
    public float MicroBatchScale { get; init; }

    /// <summary>Fine-tuning labels: [B] for classification, [B·S] for token classification
    /// (weights in <see cref="LabelWeights"/>), unused for span.</summary>
    public TensorRef Labels { get; init; }
    /// <summary>F32[B·S] token-classification weights (0 for padding and continuation pieces) or Null.</summary>
    public TensorRef LabelWeights { get; init; }
    /// <summary>Scale of the token-classification gradient, 1/(Σ LabelWeights + 1e-5).</summary>
    public float LabelGradScale { get; init; }
    /// <summary>[B] span start / end token positions.</summary>
    public TensorRef StartPositions { get; init; }
    public TensorRef EndPositions { get; init; }
}

/// <summary>Indices into <see cref="BertModelBase.Metrics"/> (F32[16]) that Forward fills.</summary>
public static class MetricSlot
{
    public const int MlmLoss = 0, MlmCorrect = 1, MlmCount = 2;
    public const int NspLoss = 3, NspCorrect = 4, NspCount = 5;
    public const int ClsLoss = 6, ClsCorrect = 7, ClsCount = 8;
    public const int SpanStartLoss = 9, SpanStartCorrect = 10, SpanEndLoss = 12, SpanEndCorrect = 13, SpanCount = 14;
    public const int Length = 16;
}
