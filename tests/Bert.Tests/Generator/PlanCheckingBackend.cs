using Bert.Runtime;

namespace Bert.Tests.Generator;

/// <summary>
/// A backend that computes nothing but checks how a generated model calls the op boundary: every
/// view has exactly the length and dtype its op's shape comment asks for, outputs overlap inputs only
/// where the interface allows it, and every activation element an op reads was written before (by
/// this pass or the forward pass). It records the calls so tests can compare Backward with Forward.
/// Memory is never touched: addresses are fake and only the bookkeeping is real.
/// </summary>
internal sealed class PlanCheckingBackend(DType computeType = DType.F32, bool fusedAttention = false) : IBackend
{
    /// <summary>Plan attention as a fused kernel would: a small saved state instead of the probabilities.</summary>
    public bool FusedAttention { get; } = fusedAttention;

    /// <summary>One recorded call: the views it read and wrote, and what pairs it with its mirror.</summary>
    public sealed record Op(string Name, string Phase, IReadOnlyList<TensorRef> Reads, IReadOnlyList<TensorRef> Writes,
        TensorRef Weight, DropoutSpec Dropout, Activation Activation);

    private sealed class Allocation(string label, TensorRef view, bool tracked)
    {
        public string Label { get; } = label;
        public TensorRef View { get; } = view;
        /// <summary>Per element: written since allocation (only for the activation arenas).</summary>
        public bool[]? Written { get; } = tracked ? new bool[view.Length] : null;
    }

    private sealed class FakeBuffer(TensorRef view, string label) : DeviceBuffer(view, label)
    {
        public override void Dispose() { }
    }

    private readonly List<Allocation> _allocations = [];
    private ulong _next = 0x1_0000_0000;

    public List<Op> Ops { get; } = [];

    /// <summary>"forward" or "backward": recorded with each op.</summary>
    public string Phase { get; set; } = "setup";

    public string Name => "plan-check";

    public DType ComputeType { get; } = computeType;

    public DeviceBuffer Allocate(long length, DType type, string label)
    {
        var view = new TensorRef(_next, length, type);
        _next += (ulong)((length * type.Size() + 4095) / 4096 * 4096 + 4096);
        // Only the activation arenas must be written before they are read; everything else
        // (parameters, batch inputs, the zero positions) is valid from the start.
        bool tracked = label is "activations" or "activations-f32";
        _allocations.Add(new Allocation(label, view, tracked));
        return new FakeBuffer(view, label);
    }

    /// <summary>The allocation a view lies in, and the view's first element in it.</summary>
    private (Allocation Owner, long Start) Locate(TensorRef t, string what)
    {
        foreach (var a in _allocations)
        {
            if (t.Address >= a.View.Address && t.Address + (ulong)t.Bytes <= a.View.Address + (ulong)a.View.Bytes)
            {
                if (t.DType != a.View.DType) throw new InvalidOperationException($"{what}: view of {t.DType} in the {a.View.DType} buffer '{a.Label}'");
                return (a, (long)(t.Address - a.View.Address) / t.DType.Size());
            }
        }
        throw new InvalidOperationException($"{what}: {t} lies in no allocation");
    }

    /// <summary>Length of each allocation's view, by label ("activations", "activations-f32", …).</summary>
    public long Length(string label) => _allocations.Single(a => a.Label == label).View.Length;

    /// <summary>Buffers allocated so far.</summary>
    public int Allocations => _allocations.Count;

    /// <summary>The views of the arena with <paramref name="label"/> written so far, as [start, end) element ranges.</summary>
    public IEnumerable<(long Start, long End)> WrittenRanges(string label)
    {
        foreach (var w in Ops.SelectMany(o => o.Writes).Distinct())
        {
            var (owner, start) = Locate(w, "range");
            if (owner.Label == label) yield return (start, start + w.Length);
        }
    }

    public string Owner(TensorRef t) => Locate(t, "owner").Owner.Label;

    // ---- checks -----------------------------------------------------------------------------------

    private static void Shape(TensorRef t, long length, string op, string arg, params DType[] types)
    {
        if (t.IsNull) throw new InvalidOperationException($"{op}: {arg} is null, {length} elements expected");
        if (t.Length != length) throw new InvalidOperationException($"{op}: {arg} has {t.Length} elements, the shape needs exactly {length}");
        if (!types.Contains(t.DType)) throw new InvalidOperationException($"{op}: {arg} is {t.DType}, expected {string.Join(" or ", types)}");
    }

    private DType[] Compute => [ComputeType];
    private static readonly DType[] F32 = [DType.F32];
    private static readonly DType[] I32 = [DType.I32];
    private DType[] ComputeOrF32 => ComputeType == DType.F32 ? F32 : [ComputeType, DType.F32];

    private sealed class Call(PlanCheckingBackend backend, string name)
    {
        private readonly List<(TensorRef View, string Arg)> _reads = [];
        private readonly List<(TensorRef View, string Arg, string? MayAlias)> _writes = [];
        public TensorRef Weight { get; set; }
        public DropoutSpec Dropout { get; set; }
        public Activation Activation { get; set; }

        public Call Read(TensorRef t, long length, string arg, DType[] types)
        {
            Shape(t, length, name, arg, types);
            _reads.Add((t, arg));
            return this;
        }

        public Call OptionalRead(TensorRef t, long length, string arg, DType[] types) => t.IsNull ? this : Read(t, length, arg, types);

        public Call Write(TensorRef t, long length, string arg, DType[] types, string? mayAlias = null)
        {
            Shape(t, length, name, arg, types);
            _writes.Add((t, arg, mayAlias));
            return this;
        }

        /// <summary>+=: read (must be valid) and written.</summary>
        public Call Accumulate(TensorRef t, long length, string arg, DType[] types) => Read(t, length, arg, types).Write(t, length, arg, types, arg);

        public void Done()
        {
            foreach (var (w, warg, alias) in _writes)
            {
                foreach (var (r, rarg) in _reads)
                    if (Overlaps(w, r) && !(rarg == alias && w == r))
                        throw new InvalidOperationException($"{name}: output {warg} overlaps input {rarg}");
                foreach (var (w2, warg2, _) in _writes)
                    if (warg2 != warg && Overlaps(w, w2))
                        throw new InvalidOperationException($"{name}: outputs {warg} and {warg2} overlap");
            }
            foreach (var (r, rarg) in _reads)
            {
                var (owner, start) = backend.Locate(r, name + " " + rarg);
                if (owner.Written is { } written)
                    for (long i = start; i < start + r.Length; i++)
                        if (!written[i])
                            throw new InvalidOperationException($"{name} ({backend.Phase}): {rarg} reads element {i} of '{owner.Label}' that nothing wrote");
            }
            foreach (var (w, warg, _) in _writes)
            {
                var (owner, start) = backend.Locate(w, name + " " + warg);
                if (owner.Written is { } written) Array.Fill(written, true, (int)start, (int)w.Length);
            }
            backend.Ops.Add(new Op(name, backend.Phase, _reads.Select(r => r.View).ToArray(), _writes.Select(w => w.View).Distinct().ToArray(),
                Weight, Dropout, Activation));
        }

        private static bool Overlaps(TensorRef a, TensorRef b) =>
            a.Address < b.Address + (ulong)b.Bytes && b.Address < a.Address + (ulong)a.Bytes;
    }

    private Call Begin(string name) => new(this, name);

    // ---- memory -----------------------------------------------------------------------------------

    public void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged
    {
        if (destination.Bytes < source.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>())
            throw new InvalidOperationException($"Upload: {source.Length} values do not fit {destination}");
        var (owner, start) = Locate(destination, "Upload");
        if (owner.Written is { } written) Array.Fill(written, true, (int)start, (int)destination.Length);
    }

    public void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged => destination.Clear();

    public void Copy(TensorRef destination, TensorRef source)
    {
        var c = Begin(nameof(Copy)).Read(source, source.Length, "source", [source.DType]);
        c.Write(destination, source.Length, "destination", [source.DType]).Done();
    }

    public void Zero(TensorRef tensor) => Begin(nameof(Zero)).Write(tensor, tensor.Length, "tensor", [tensor.DType]).Done();

    public void Synchronize() { }

    // ---- ops --------------------------------------------------------------------------------------

    public void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0)
    {
        long ld = OpChecks.Stride(outputStride, outFeatures, nameof(Linear), nameof(outputStride));
        var c = Begin(nameof(Linear)).Read(input, (long)rows * inFeatures, "input", Compute)
            .Read(weight, (long)outFeatures * inFeatures, "weight", F32)
            .OptionalRead(bias, outFeatures, "bias", F32)
            .Write(output, rows * ld, "output", ComputeOrF32);
        if (activation != Activation.None) c.Write(preActivation, rows * ld, "preActivation", Compute);
        else if (!preActivation.IsNull) throw new InvalidOperationException("Linear: preActivation given without an activation");
        c.Weight = weight;
        c.Activation = activation;
        c.Done();
    }

    public void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0)
    {
        long ld = OpChecks.Stride(dOutputStride, outFeatures, nameof(LinearBackward), nameof(dOutputStride));
        var c = Begin(nameof(LinearBackward)).Read(dOutput, rows * ld, "dOutput", ComputeOrF32)
            .Read(input, (long)rows * inFeatures, "input", Compute)
            .Read(weight, (long)outFeatures * inFeatures, "weight", F32)
            .Accumulate(dWeight, (long)outFeatures * inFeatures, "dWeight", F32);
        if (!dBias.IsNull) c.Accumulate(dBias, outFeatures, "dBias", F32);
        if (!dInput.IsNull)
        {
            if (accumulateInput) c.Accumulate(dInput, (long)rows * inFeatures, "dInput", Compute);
            else c.Write(dInput, (long)rows * inFeatures, "dInput", Compute);
        }
        c.Weight = weight;
        c.Done();
    }

    public void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation)
    {
        if (activation == Activation.None) throw new InvalidOperationException("ActivationBackward without an activation");
        var c = Begin(nameof(ActivationBackward)).Read(dOut, count, "dOut", Compute).Read(pre, count, "pre", Compute)
            .Write(dPre, count, "dPre", Compute, "dOut");
        c.Activation = activation;
        c.Done();
    }

    public void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb,
        TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout)
    {
        long n = (long)batch * seq;
        var c = Begin(nameof(EmbeddingsForward)).Read(inputIds, n, "inputIds", I32).Read(tokenTypeIds, n, "tokenTypeIds", I32)
            .Read(wordEmb, Rows(wordEmb, hidden, "wordEmb") * hidden, "wordEmb", F32)
            .Read(posEmb, Math.Max(seq, Rows(posEmb, hidden, "posEmb")) * hidden, "posEmb", F32)
            .Read(typeEmb, Rows(typeEmb, hidden, "typeEmb") * hidden, "typeEmb", F32)
            .Read(gamma, hidden, "gamma", F32).Read(beta, hidden, "beta", F32)
            .Write(output, n * hidden, "output", Compute).Write(sum, n * hidden, "sum", Compute)
            .Write(mean, n, "mean", F32).Write(rstd, n, "rstd", F32);
        c.Weight = gamma;
        c.Dropout = dropout;
        c.Done();
    }

    private static long Rows(TensorRef table, int hidden, string arg) =>
        table.Length % hidden == 0 && table.Length > 0 ? table.Length / hidden
            : throw new InvalidOperationException($"embedding table {arg} of {table.Length} elements is not [rows, {hidden}]");

    public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma, int batch, int seq, int hidden, DropoutSpec dropout)
    {
        long n = (long)batch * seq;
        var c = Begin(nameof(EmbeddingsBackward)).Read(dOutput, n * hidden, "dOutput", Compute).Read(sum, n * hidden, "sum", Compute)
            .Read(mean, n, "mean", F32).Read(rstd, n, "rstd", F32).Read(inputIds, n, "inputIds", I32).Read(tokenTypeIds, n, "tokenTypeIds", I32)
            .Read(gamma, hidden, "gamma", F32)
            .Accumulate(dWordEmb, Rows(dWordEmb, hidden, "dWordEmb") * hidden, "dWordEmb", F32)
            .Accumulate(dPosEmb, Math.Max(seq, Rows(dPosEmb, hidden, "dPosEmb")) * hidden, "dPosEmb", F32)
            .Accumulate(dTypeEmb, Rows(dTypeEmb, hidden, "dTypeEmb") * hidden, "dTypeEmb", F32)
            .Accumulate(dGamma, hidden, "dGamma", F32).Accumulate(dBeta, hidden, "dBeta", F32)
            .Write(scratch, n * hidden, "scratch", F32);
        c.Weight = gamma;
        c.Dropout = dropout;
        c.Done();
    }

    public void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta, int rows, int hidden, float eps)
    {
        var c = Begin(nameof(LayerNorm)).Read(input, (long)rows * hidden, "input", Compute).Read(gamma, hidden, "gamma", F32).Read(beta, hidden, "beta", F32)
            .Write(output, (long)rows * hidden, "output", Compute).Write(mean, rows, "mean", F32).Write(rstd, rows, "rstd", F32);
        c.Weight = gamma;
        c.Done();
    }

    public void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput, TensorRef input, TensorRef mean,
        TensorRef rstd, TensorRef gamma, int rows, int hidden)
    {
        var c = Begin(nameof(LayerNormBackward)).Read(dOutput, (long)rows * hidden, "dOutput", Compute).Read(input, (long)rows * hidden, "input", Compute)
            .Read(mean, rows, "mean", F32).Read(rstd, rows, "rstd", F32).Read(gamma, hidden, "gamma", F32)
            .Accumulate(dGamma, hidden, "dGamma", F32).Accumulate(dBeta, hidden, "dBeta", F32)
            .Write(dInput, (long)rows * hidden, "dInput", Compute);
        c.Weight = gamma;
        c.Done();
    }

    public void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef residual, TensorRef branch,
        TensorRef gamma, TensorRef beta, int rows, int hidden, float eps, DropoutSpec dropout)
    {
        long n = (long)rows * hidden;
        var c = Begin(nameof(ResidualLayerNorm)).Read(residual, n, "residual", Compute).Read(branch, n, "branch", Compute)
            .Read(gamma, hidden, "gamma", F32).Read(beta, hidden, "beta", F32)
            .Write(output, n, "output", Compute).Write(sum, n, "sum", Compute).Write(mean, rows, "mean", F32).Write(rstd, rows, "rstd", F32);
        c.Weight = gamma;
        c.Dropout = dropout;
        c.Done();
    }

    public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
        TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout)
    {
        long n = (long)rows * hidden;
        var c = Begin(nameof(ResidualLayerNormBackward)).Read(dOutput, n, "dOutput", Compute).Read(sum, n, "sum", Compute)
            .Read(mean, rows, "mean", F32).Read(rstd, rows, "rstd", F32).Read(gamma, hidden, "gamma", F32)
            .Accumulate(dGamma, hidden, "dGamma", F32).Accumulate(dBeta, hidden, "dBeta", F32)
            .Write(dResidual, n, "dResidual", Compute, "dOutput").Write(dBranch, n, "dBranch", Compute);
        c.Weight = gamma;
        c.Dropout = dropout;
        c.Done();
    }

    /// <summary>Unfused: the probabilities are saved (the workspace as large). Fused (<see cref="FusedAttention"/>):
    /// 2·B·NH·S elements, as the CUDA backend's bf16 logsumexp, and the backward reads the context.</summary>
    public AttentionPlan PlanAttention(int batch, int seq, int heads, int headDim) => FusedAttention
        ? new AttentionPlan(2L * batch * heads * seq, (long)batch * seq * heads * headDim, Fused: true)
        : new AttentionPlan(AttentionPlan.ProbabilitiesLength(batch, seq, heads), AttentionPlan.ProbabilitiesLength(batch, seq, heads), Fused: false);

    public void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        long n = (long)batch * seq, h = (long)heads * headDim;
        var plan = PlanAttention(batch, seq, heads, headDim);
        if (workspace.Length < plan.WorkspaceLength) throw new InvalidOperationException("AttentionForward: workspace too small");
        var c = Begin(nameof(AttentionForward)).Read(qkv, n * 3 * h, "qkv", Compute).Read(attentionMask, n, "attentionMask", I32)
            .Write(context, n * h, "context", Compute).Write(probs, plan.SavedLength, "probs", Compute);
        c.Dropout = dropout;
        c.Done();
    }

    public void AttentionBackward(TensorRef dQkv, TensorRef workspace, TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs,
        TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        long n = (long)batch * seq, h = (long)heads * headDim;
        var plan = PlanAttention(batch, seq, heads, headDim);
        if (workspace.Length < plan.WorkspaceLength) throw new InvalidOperationException("AttentionBackward: workspace too small");
        var c = Begin(nameof(AttentionBackward)).Read(dContext, n * h, "dContext", Compute).Read(qkv, n * 3 * h, "qkv", Compute)
            .Read(context, n * h, "context", Compute).Read(probs, plan.SavedLength, "probs", Compute).Read(attentionMask, n, "attentionMask", I32)
            .Write(dQkv, n * 3 * h, "dQkv", Compute);
        c.Dropout = dropout;
        c.Done();
    }

    public void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout)
    {
        var c = Begin(nameof(Dropout)).Read(input, count, "input", Compute).Write(output, count, "output", Compute, "input");
        c.Dropout = dropout;
        c.Done();
    }

    public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden) =>
        Begin(nameof(GatherRows)).Read(input, (long)batch * seq * hidden, "input", Compute).Read(positions, (long)batch * count, "positions", I32)
            .Write(output, (long)batch * count * hidden, "output", Compute).Done();

    public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden) =>
        Begin(nameof(ScatterAddRows)).Read(dOutput, (long)batch * count * hidden, "dOutput", Compute).Read(positions, (long)batch * count, "positions", I32)
            .Accumulate(dInput, (long)batch * seq * hidden, "dInput", Compute).Done();

    public void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default)
    {
        if (!(gradScale > 0) || float.IsInfinity(gradScale)) throw new InvalidOperationException($"SoftmaxCrossEntropy: gradScale {gradScale}");
        long ld = OpChecks.Stride(stride, classes, nameof(SoftmaxCrossEntropy), nameof(stride));
        Begin(nameof(SoftmaxCrossEntropy)).Read(logits, rows * ld, "logits", ComputeOrF32).Read(labels, rows, "labels", I32)
            .OptionalRead(weights, rows, "weights", F32).OptionalRead(gradScaleOnDevice, 1, "gradScaleOnDevice", F32)
            .Write(stats, 3, "stats", F32).Write(dLogits, rows * ld, "dLogits", ComputeOrF32, "logits").Done();
    }

    /// <summary>The stride the checked model's logits get: classes, or <see cref="LogitsPadding"/>'s multiple.</summary>
    public int LogitsStride(int classes) => LogitsPadding == 0 ? classes : (classes + LogitsPadding - 1) / LogitsPadding * LogitsPadding;

    /// <summary>Pad the logits' rows to a multiple of this (0: no padding), as the CUDA backend's LogitsPadding.</summary>
    public int LogitsPadding { get; init; }

    public void SquaredNorm(TensorRef result, TensorRef input, long count) =>
        throw new NotSupportedException("PlanCheckingBackend checks a model's Forward and Backward, which never call SquaredNorm");

    public void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, long count, in AdamWStep step) =>
        throw new NotSupportedException("PlanCheckingBackend checks a model's Forward and Backward, which never call AdamW");

    public void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants) =>
        throw new NotSupportedException("PlanCheckingBackend checks a model's Forward and Backward, which never call AdamWDevice");

    public void Dispose() { }
}
