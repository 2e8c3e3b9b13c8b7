namespace Bert.Runtime;

/// <summary>
/// What every generated model shares: its configuration and parameter table (both fixed at
/// construction: sizes are run-time data), the flat parameter and gradient buffers (one allocation
/// each, carved by the table), the activation arenas planned by the generator for the largest
/// micro-batch, and the metrics the forward pass fills. The generator emits the derived partial class:
/// its layout rule (TableFor), activation plan, parameter views, Forward and Backward.
/// A training step allocates nothing: every view is a slice of these buffers.
/// </summary>
public abstract class BertModelBase : IDisposable
{
    private readonly Dictionary<string, int> _byName;
    private bool _disposed;

    /// <param name="backend">Where the buffers live and the ops run.</param>
    /// <param name="config">The validated configuration.</param>
    /// <param name="table">The parameter table the class's layout rule gives for <paramref name="config"/>.</param>
    /// <param name="maxBatch">Largest micro-batch B the arena is planned for.</param>
    /// <param name="maxSeq">Largest sequence length S.</param>
    /// <param name="maxPredictions">Largest masked-LM predictions per sequence P.</param>
    /// <param name="computeArenaLength">Elements of the activation arena (backend compute type).</param>
    /// <param name="f32ArenaLength">Elements of the F32 arena (LayerNorm statistics, logits, losses).</param>
    protected BertModelBase(IBackend backend, BertConfig config, IReadOnlyList<ParameterInfo> table,
        int maxBatch, int maxSeq, int maxPredictions, long computeArenaLength, long f32ArenaLength)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(table);
        if (maxBatch <= 0) throw new ArgumentOutOfRangeException(nameof(maxBatch), maxBatch, "maximum batch must be positive");
        if (maxSeq <= 0) throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, "maximum sequence length must be positive");
        if (maxPredictions < 0) throw new ArgumentOutOfRangeException(nameof(maxPredictions), maxPredictions, "maximum predictions must be non-negative");
        Backend = backend;
        MaxBatch = maxBatch;
        MaxSeq = maxSeq;
        MaxPredictions = maxPredictions;

        Config = config;
        ParameterTable = table;
        long total = 0, decayed = 0;
        foreach (var p in table)
        {
            total = Math.Max(total, p.Offset + p.Count);
            if (p.Decay) decayed = Math.Max(decayed, p.Offset + p.Count);
        }
        ParameterTotal = total;
        DecayedParameterCount = decayed;
        _byName = new Dictionary<string, int>(table.Count, StringComparer.Ordinal);
        for (int i = 0; i < table.Count; i++) _byName[table[i].Name] = i;
        if (maxSeq > Config.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq,
                $"sequence length {maxSeq} exceeds the model's {Config.MaxPositions} positions ({Config.Name})");

        // Refuse a configuration that cannot fit before allocating any of it (an allocation that
        // fails half-way, or that the OS overcommits and later kills, helps nobody).
        long workspace = Math.Max(1, backend.PlanAttention(maxBatch, maxSeq, Config.Heads, Config.HeadDim).WorkspaceLength);
        int computeBytes = backend.ComputeType == DType.F32 ? 4 : 2;
        long needed = ParameterTotal * 4L * 4   // parameters, gradients and the two AdamW moments
            + (Math.Max(1, computeArenaLength) + workspace) * computeBytes + Math.Max(1, f32ArenaLength) * 4L;
        if (backend.AvailableMemoryBytes is long available && needed > available)
            throw new ModelMemoryException(needed, available, maxBatch, maxSeq, backend.Name);

        Parameters = backend.Allocate(ParameterTotal, DType.F32, "parameters");
        Gradients = backend.Allocate(ParameterTotal, DType.F32, "gradients");
        Arena = backend.Allocate(Math.Max(1, computeArenaLength), backend.ComputeType, "activations");
        F32Arena = backend.Allocate(Math.Max(1, f32ArenaLength), DType.F32, "activations-f32");
        Workspace = backend.Allocate(workspace, backend.ComputeType, "attention-workspace");
        Metrics = backend.Allocate(MetricSlot.Length, DType.F32, "metrics");
        ZeroPositions = backend.Allocate(maxBatch, DType.I32, "zero-positions");
    }

    public IBackend Backend { get; }
    public int MaxBatch { get; }
    public int MaxSeq { get; }
    public int MaxPredictions { get; }

    /// <summary>The sizes and hyper-parameters this model was built with.</summary>
    public BertConfig Config { get; }

    /// <summary>Every parameter tensor in flat-buffer order. The weight-decayed rows come first and
    /// are contiguous, so AdamW runs as two range calls.</summary>
    public IReadOnlyList<ParameterInfo> ParameterTable { get; }

    /// <summary>Total parameters (elements of the flat buffer).</summary>
    public long ParameterTotal { get; }

    /// <summary>Elements [0, DecayedParameterCount) of the flat buffer take weight decay; the rest
    /// (LayerNorm weights, biases) do not.</summary>
    public long DecayedParameterCount { get; }

    /// <summary>F32[ParameterTotal] all weights.</summary>
    public DeviceBuffer Parameters { get; }
    /// <summary>F32[ParameterTotal] gradients, same layout; Backward accumulates into it.</summary>
    public DeviceBuffer Gradients { get; }
    public DeviceBuffer Arena { get; }
    public DeviceBuffer F32Arena { get; }
    public DeviceBuffer Workspace { get; }
    /// <summary>F32[<see cref="MetricSlot.Length"/>], filled by Forward (see <see cref="MetricSlot"/>).</summary>
    public DeviceBuffer Metrics { get; }
    /// <summary>I32[MaxBatch] zeros (never written): position 0 of every sequence, the [CLS] rows that
    /// the pooler gathers with <see cref="IBackend.GatherRows"/>.</summary>
    public DeviceBuffer ZeroPositions { get; }

    /// <summary>Dropout key: the run seed.</summary>
    public ulong Seed { get; set; }
    /// <summary>Dropout counter: one value per forward pass (the trainer sets step·accumulation + micro).</summary>
    public uint DropoutStep { get; set; }
    /// <summary>Dropout on (training) or off (evaluation).</summary>
    public bool Training { get; set; }

    /// <summary>The last Forward's masked-LM logits [B·P, V] in rows <see cref="MlmLogitsStride"/> apart (overwritten by
    /// their gradient when labels were given).</summary>
    public TensorRef MlmLogits { get; protected set; }
    /// <summary>The row stride of <see cref="MlmLogits"/>: the vocabulary size, or more where the backend pads the
    /// vocabulary GEMM (<see cref="IBackend.LogitsStride"/>); columns past the vocabulary are padding.</summary>
    public int MlmLogitsStride { get; protected set; }
    /// <summary>The last Forward's NSP logits F32[B, 2].</summary>
    public TensorRef NspLogits { get; protected set; }
    /// <summary>The last Forward's classification logits F32[B, C] or token-classification F32[B·S, C].</summary>
    public TensorRef ClassifierLogits { get; protected set; }
    /// <summary>The last Forward's span logits F32[2, B·S]: start logits [B,S], then end logits [B,S].</summary>
    public TensorRef SpanLogits { get; protected set; }
    /// <summary>The last Forward's final hidden states [B·S, H].</summary>
    public TensorRef SequenceOutput { get; protected set; }
    /// <summary>The last Forward's pooled [CLS] output [B, H] (Null without a pooler).</summary>
    public TensorRef PooledOutput { get; protected set; }

    public abstract void Forward(in BertBatch batch);

    /// <summary>Accumulates (+=) the loss gradient of the last Forward's batch into <see cref="Gradients"/>.</summary>
    public abstract void Backward(in BertBatch batch);

    public int ParameterIndex(string name) =>
        _byName.TryGetValue(name, out var i) ? i
            : throw new KeyNotFoundException($"{Config.Name} has no parameter named '{name}'");

    /// <summary>The view of one parameter tensor in <see cref="Parameters"/>.</summary>
    public TensorRef Parameter(string name) => Parameter(ParameterIndex(name));

    public TensorRef Parameter(int index)
    {
        var p = ParameterTable[index];
        return Parameters.Slice(p.Offset, p.Count);
    }

    public TensorRef Gradient(int index)
    {
        var p = ParameterTable[index];
        return Gradients.Slice(p.Offset, p.Count);
    }

    /// <summary>The view in <paramref name="buffer"/> (<see cref="Parameters"/> or <see cref="Gradients"/>) of
    /// <paramref name="rows"/> consecutive table rows starting at tensor <paramref name="first"/>: rows &gt; 1 fuse
    /// tensors stored back to back (a layer's query|key|value). Generated classes build their named views with it
    /// once, at construction.</summary>
    protected TensorRef View(DeviceBuffer buffer, string first, int rows = 1)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        int i = ParameterIndex(first);
        if (rows < 1 || i + rows > ParameterTable.Count)
            throw new ArgumentOutOfRangeException(nameof(rows), rows, $"{Config.Name}: no {rows} rows from '{first}'");
        var last = ParameterTable[i + rows - 1];
        return buffer.Slice(ParameterTable[i].Offset, last.Offset + last.Count - ParameterTable[i].Offset);
    }

    public void ZeroGradients() => Backend.Zero(Gradients);

    /// <summary>Initializes every parameter as BERT does: Normal(0, 0.02) for weights and embeddings,
    /// LayerNorm weight 1, biases and LayerNorm bias 0. Deterministic for a seed (Philox, one stream
    /// per tensor), whatever the backend.</summary>
    public void InitializeParameters(ulong seed)
    {
        var host = new float[ParameterTotal];
        InitializeHost(host, ParameterTable, Config.InitializerRange, seed);
        Backend.Upload<float>(Parameters, host);
    }

    /// <summary>The initialization of <see cref="InitializeParameters"/> into a host buffer laid out by
    /// <paramref name="table"/>, for code that has a parameter table but no model (checkpoint import).</summary>
    /// <param name="host">F32[total] flat parameters; only the table's ranges are written.</param>
    public static void InitializeHost(Span<float> host, IReadOnlyList<ParameterInfo> table, float std, ulong seed)
    {
        for (int t = 0; t < table.Count; t++)
        {
            var p = table[t];
            var span = host.Slice((int)p.Offset, (int)p.Count);
            switch (p.Init)
            {
                case ParameterInit.Ones: span.Fill(1f); break;
                case ParameterInit.Zeros: span.Clear(); break;
                default:
                    uint stream = 0x40000000u + (uint)t;
                    for (long i = 0; i < p.Count; i += 2)
                    {
                        // Box-Muller over two Philox uniforms; u1 in (0,1].
                        double u1 = 1.0 - Philox.Uniform(seed, 0, stream, i);
                        double u2 = Philox.Uniform(seed, 0, stream, i + 1);
                        double r = Math.Sqrt(-2.0 * Math.Log(u1));
                        span[(int)i] = (float)(std * r * Math.Cos(2 * Math.PI * u2));
                        if (i + 1 < p.Count) span[(int)i + 1] = (float)(std * r * Math.Sin(2 * Math.PI * u2));
                    }
                    break;
            }
        }
    }

    /// <summary>Told, during <see cref="Backward"/>, when a layer's parameter gradients are final for this backward
    /// (layers come last first), so data-parallel training can start their all-reduce while the layers below compute
    /// (<see cref="Distributed.GradientBuckets"/>). Null: nobody listens.</summary>
    public ILayerGradientsListener? LayerGradientsListener { get; set; }

    /// <summary>Called by the generated backward after layer <paramref name="layer"/>'s last parameter gradient was
    /// queued (on a GPU, the kernels may still run: a listener orders its work after them on the device).</summary>
    protected void LayerGradientsDone(int layer) => LayerGradientsListener?.LayerGradientsDone(layer);

    /// <summary>Copies the metrics of the last Forward to the host (waits for the device).</summary>
    public void ReadMetrics(Span<float> destination) => Backend.Download(destination[..MetricSlot.Length], Metrics.View);

    /// <summary>A dropout site: active only in training and when p &gt; 0.</summary>
    protected DropoutSpec Dropout(float probability, uint stream) =>
        Training && probability > 0f ? new DropoutSpec(probability, Seed, DropoutStep, stream) : DropoutSpec.None;

    /// <summary>Throws when a batch exceeds the planned maxima or lacks an input a head needs.</summary>
    protected void CheckBatch(in BertBatch batch)
    {
        if (batch.Batch <= 0 || batch.Batch > MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(batch), batch.Batch, $"batch size must be in [1, {MaxBatch}] (planned maximum)");
        if (batch.Seq <= 0 || batch.Seq > MaxSeq)
            throw new ArgumentOutOfRangeException(nameof(batch), batch.Seq, $"sequence length must be in [1, {MaxSeq}] (planned maximum)");
        if (batch.Predictions < 0 || batch.Predictions > MaxPredictions)
            throw new ArgumentOutOfRangeException(nameof(batch), batch.Predictions, $"predictions per sequence must be in [0, {MaxPredictions}] (planned maximum)");
        long tokens = (long)batch.Batch * batch.Seq;
        batch.InputIds.Require(tokens, DType.I32, "Forward", nameof(batch.InputIds));
        batch.TokenTypeIds.Require(tokens, DType.I32, "Forward", nameof(batch.TokenTypeIds));
        batch.AttentionMask.Require(tokens, DType.I32, "Forward", nameof(batch.AttentionMask));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ZeroPositions.Dispose();
        Metrics.Dispose();
        Workspace.Dispose();
        F32Arena.Dispose();
        Arena.Dispose();
        Gradients.Dispose();
        Parameters.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A model configuration needs more memory than the backend has; thrown before any allocation.</summary>
public sealed class ModelMemoryException(long needed, long available, int maxBatch, int maxSeq, string backend)
    : InvalidOperationException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"a micro-batch of {maxBatch} sequences of {maxSeq} tokens needs {needed / (double)(1L << 30):F1} GiB for the model's buffers, " +
        $"but {backend} has {available / (double)(1L << 30):F1} GiB available; use a smaller --micro-batch (gradient accumulation keeps --batch) or a shorter --seq"))
{
    public long Needed { get; } = needed;
    public long Available { get; } = available;
}

/// <summary>Hears <see cref="BertModelBase.LayerGradientsDone"/>: encoder layer <c>layer</c>'s parameter gradients
/// (bert.encoder.layer.{layer}.*) are final for the backward in progress.</summary>
public interface ILayerGradientsListener
{
    void LayerGradientsDone(int layer);
}
