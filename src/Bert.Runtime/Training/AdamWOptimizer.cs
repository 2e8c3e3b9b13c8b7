using Bert.Runtime.Distributed;

namespace Bert.Runtime.Training;

/// <summary>AdamW hyper-parameters (BERT's defaults).</summary>
public sealed record AdamWOptions
{
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Epsilon { get; init; } = 1e-6f;
    public float WeightDecay { get; init; } = 0.01f;
    /// <summary>Clip gradients to this global L2 norm; 0 disables clipping. Default 1.0.</summary>
    public float MaxGradNorm { get; init; } = 1.0f;
}

/// <summary>
/// AdamW over the model's flat buffers: the moments m and v share the parameter layout, so a step is
/// one global-norm pass and two range updates (weight-decayed prefix, then LayerNorm weights and
/// biases without decay — the split comes from the generated table's Decay flags, never from names).
/// The clip factor is computed on the device from the norm, so a step reads nothing back.
/// <para>Optimizer-state sharding (ZeRO stage 1, when made with a communicator of several ranks): each rank keeps
/// the moments of its <see cref="OptimizerShard"/> only (8 bytes per parameter divided by the number of ranks), the
/// gradients are reduce-scattered instead of all-reduced (<see cref="ReduceGradients"/>), the norm is the sum of the
/// shards' squared norms, each rank updates its shard and the updated weights are all-gathered, so every rank again
/// holds the whole model. Checkpoints hold the whole moments either way (<see cref="DownloadMoments"/> gathers
/// them), so a run may resume sharded or not, on any number of ranks.</para>
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly BertModelBase _model;
    private readonly DeviceBuffer _normSquared;
    private readonly DeviceBuffer _scalars;
    private readonly float[] _hostScalars = new float[StepScalars.Length];
    private readonly ICommunicator _comm;

    /// <param name="shardOver">Shard the moments over these ranks (ZeRO-1); null or a world of one: every rank
    /// holds all the moments and the gradients are all-reduced.</param>
    public AdamWOptimizer(BertModelBase model, AdamWOptions options, ICommunicator? shardOver = null)
    {
        _model = model;
        Options = options;
        _comm = shardOver ?? SingleProcessCommunicator.Instance;
        Shard = _comm.Size > 1 ? new OptimizerShard(_comm.Rank, _comm.Size, model.ParameterTotal) : null;
        long length = Shard?.Length ?? model.ParameterTotal;
        var be = model.Backend;
        M = be.Allocate(length, DType.F32, "adam-m");
        V = be.Allocate(length, DType.F32, "adam-v");
        _normSquared = be.Allocate(1, DType.F32, "grad-norm-squared");
        _scalars = be.Allocate(StepScalars.Length, DType.F32, "adam-step-scalars");
    }

    public AdamWOptions Options { get; }

    /// <summary>Where the moments live (the model's backend).</summary>
    public IBackend Backend => _model.Backend;

    /// <summary>The part of the parameters this rank updates when the moments are sharded; null: all of them.</summary>
    public OptimizerShard? Shard { get; }

    /// <summary>First moment, F32 over this rank's shard (F32[ParameterTotal] unsharded), local index 0 = the shard's
    /// first parameter.</summary>
    public DeviceBuffer M { get; }

    /// <summary>Second moment, laid out as <see cref="M"/>.</summary>
    public DeviceBuffer V { get; }

    /// <summary>Squared global gradient norm of the last step (device scalar).</summary>
    public TensorRef GradNormSquared => _normSquared.View;

    /// <summary>F32[<see cref="StepScalars.Length"/>] on the device: the scalars of the step <see cref="ApplyDevice"/>
    /// applies, written by <see cref="WriteStepScalars"/> (see <see cref="StepScalars"/> for the layout).</summary>
    public TensorRef Scalars => _scalars.View;

    /// <summary>The AdamW constants of <see cref="Options"/> (what stays fixed from step to step).</summary>
    public AdamWConstants Constants => new(Options.Beta1, Options.Beta2, Options.Epsilon, Options.WeightDecay, Options.MaxGradNorm);

    /// <summary>Applies optimizer step <paramref name="step"/> (1-based for bias correction):
    /// <see cref="ComputeGradientNorm"/>, then <see cref="Apply"/>.</summary>
    public void Step(int step, float learningRate)
    {
        ComputeGradientNorm();
        Apply(step, learningRate);
    }

    /// <summary>Data-parallel: sums the gradients over the ranks. Unsharded, one in-place all-reduce of the whole
    /// buffer; sharded, an in-place reduce-scatter of the equal blocks (each rank's block then holds its sums, the
    /// rest of its buffer is stale and never read) and an all-reduce of the tail. Collective: every rank calls it.</summary>
    public void ReduceGradients(ICommunicator communicator, long step)
    {
        var g = _model.Gradients.View;
        if (Shard is not { } s)
        {
            communicator.AllReduceSum(g, new Collective("the gradient all-reduce", step));
            return;
        }
        if (!ReferenceEquals(communicator, _comm))
            throw new ArgumentException("the gradients of a sharded optimizer are reduced over the ranks it was made for", nameof(communicator));
        if (s.Block > 0)
            _comm.ReduceScatterSum(g.Slice(0, s.Covered), g.Slice(s.Offset, s.Block), new Collective("the gradient reduce-scatter", step));
        if (s.Tail > 0)
            _comm.AllReduceSum(g.Slice(s.Covered, s.Tail), new Collective("the all-reduce of the gradients' tail", step));
    }

    /// <summary>Writes the squared global gradient norm into <see cref="GradNormSquared"/> (on the device).
    /// A caller that must inspect it before any weight changes (the trainer's non-finite check) reads it
    /// between this and <see cref="Apply"/>. Sharded, each rank's squared norm of its reduced shard is summed over
    /// the ranks (collective).</summary>
    public void ComputeGradientNorm(long step = -1)
    {
        var be = _model.Backend;
        if (Shard is not { } s)
        {
            be.SquaredNorm(_normSquared, _model.Gradients, _model.ParameterTotal);
            return;
        }
        be.SquaredNorm(_normSquared, _model.Gradients.Slice(s.Offset, s.Length), s.Length);
        _comm.AllReduceSum(_normSquared.View, new Collective("the gradient norm all-reduce", step));
    }

    /// <summary>The AdamW update of every parameter, clipped by the norm of the last
    /// <see cref="ComputeGradientNorm"/>: the decayed prefix [0, DecayedParameterCount) with weight
    /// decay, the rest without. Sharded, this rank updates its shard and the weights are all-gathered
    /// (collective).</summary>
    public void Apply(int step, float learningRate)
    {
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "AdamW steps are 1-based");
        var decay = new AdamWStep(learningRate, Options.Beta1, Options.Beta2, Options.Epsilon, Options.WeightDecay, step, Options.MaxGradNorm);
        var update = new HostScalarUpdate(decay, Options.MaxGradNorm > 0 ? _normSquared.View : TensorRef.Null);
        UpdateRanges(ref update);
        if (Shard is { } s) GatherParameters(s, step);
    }

    /// <summary>Uploads the scalars of step <paramref name="step"/> (1-based) into <see cref="Scalars"/>: one small staged
    /// upload per step, queued before the step's <see cref="ApplyDevice"/> (outside a captured graph, which then reads them).
    /// <paramref name="dropoutStep"/> is the dropout counter a replayed forward pass reads from the same buffer.</summary>
    public void WriteStepScalars(int step, float learningRate, uint dropoutStep = 0)
    {
        StepScalars.For(learningRate, Options.Beta1, Options.Beta2, step, dropoutStep).WriteTo(_hostScalars);
        _model.Backend.Upload<float>(_scalars, _hostScalars);
    }

    /// <summary><see cref="Apply"/> with the step's scalars read on the device from <see cref="Scalars"/>: the same
    /// update bit for bit, except that a non-finite <see cref="GradNormSquared"/> skips it on the device (the weights and
    /// moments keep their values) instead of needing a host read before it. Nothing is read back, so a step can run
    /// from the first forward to the update without waiting for the device. Sharded, this rank updates its shard and the
    /// weights are all-gathered (collective; a skipped update gathers the unchanged weights, the same on every rank since
    /// the norm is the all-reduced one).</summary>
    public void ApplyDevice(long step = -1)
    {
        var update = new DeviceScalarUpdate(Constants, _normSquared.View, _scalars.View);
        UpdateRanges(ref update);
        if (Shard is { } s) GatherParameters(s, step);
    }

    /// <summary>One backend update of parameters [from, from + count) with their gradients and moments, with or
    /// without weight decay (<see cref="UpdateRanges{T}"/>).</summary>
    private interface IRangeUpdate
    {
        void Run(IBackend backend, TensorRef parameters, TensorRef gradients, TensorRef m, TensorRef v, long count, bool decay);
    }

    // Apply: the step's scalars from the host.
    private readonly struct HostScalarUpdate(AdamWStep scalars, TensorRef clipNorm) : IRangeUpdate
    {
        public void Run(IBackend backend, TensorRef parameters, TensorRef gradients, TensorRef m, TensorRef v, long count, bool decay) =>
            backend.AdamW(parameters, gradients, m, v, clipNorm, count, decay ? scalars : scalars with { WeightDecay = 0f });
    }

    // ApplyDevice: the step's scalars read on the device.
    private readonly struct DeviceScalarUpdate(AdamWConstants constants, TensorRef normSquared, TensorRef scalars) : IRangeUpdate
    {
        public void Run(IBackend backend, TensorRef parameters, TensorRef gradients, TensorRef m, TensorRef v, long count, bool decay) =>
            backend.AdamWDevice(parameters, gradients, m, v, normSquared, scalars, count, decay ? constants : constants with { WeightDecay = 0f });
    }

    // The shard's part (everything, unsharded) of the decayed prefix [0, DecayedParameterCount), then its part of the
    // rest; the moments are indexed from the shard's start. Generic over a struct: nothing is allocated per step.
    private void UpdateRanges<T>(ref T update) where T : struct, IRangeUpdate
    {
        long total = _model.ParameterTotal, decayed = _model.DecayedParameterCount;
        long first = Shard?.Offset ?? 0, end = first + (Shard?.Length ?? total);
        Range(ref update, first, Math.Min(end, decayed), decay: true);
        Range(ref update, Math.Max(first, decayed), end, decay: false);

        void Range(ref T u, long from, long to, bool decay)
        {
            if (to <= from) return;
            long n = to - from;
            u.Run(_model.Backend, _model.Parameters.Slice(from, n), _model.Gradients.Slice(from, n),
                M.Slice(from - first, n), V.Slice(from - first, n), n, decay);
        }
    }

    // In place: each rank's updated block goes to every rank, the last rank's tail by a broadcast; then the backend
    // re-derives what it keeps of the weights (the bf16 copy of the CUDA backend) for the parts it did not write.
    private void GatherParameters(OptimizerShard s, long step)
    {
        var p = _model.Parameters.View;
        if (s.Block > 0)
            _comm.AllGather(p.Slice(s.Offset, s.Block), p.Slice(0, s.Covered), new Collective("the all-gather of the updated weights", step));
        if (s.Tail > 0)
            _comm.Broadcast(p.Slice(s.Covered, s.Tail), s.Ranks - 1, new Collective("the broadcast of the updated weights' tail", step));
        var be = _model.Backend;
        be.WrittenExternally(p.Slice(0, s.Offset));
        be.WrittenExternally(p.Slice(s.Offset + s.Length, s.Total - s.Offset - s.Length));
    }

    /// <summary>The whole moments, F32[ParameterTotal] each, into host arrays (a checkpoint). Sharded, the shards are
    /// all-gathered through a bounded device buffer (at most 4 Mi elements per rank at a time): a collective that every
    /// rank calls; a rank that does not need the result (one that does not write the checkpoint) passes empty spans.</summary>
    public void DownloadMoments(Span<float> m, Span<float> v)
    {
        long total = _model.ParameterTotal;
        bool wanted = !m.IsEmpty || !v.IsEmpty;
        if (wanted && (m.Length != total || v.Length != total) || !wanted && Shard is null && total > 0)
            throw new ArgumentException($"the moments have {total} elements each, the host arrays {m.Length} and {v.Length}");
        var be = _model.Backend;
        if (Shard is not { } s)
        {
            be.Download<float>(m, M);
            be.Download<float>(v, V);
            return;
        }
        long chunk = Math.Max(1, Math.Min(s.Block, 1L << 22));
        using var staging = be.Allocate(Math.Max(chunk * s.Ranks, Math.Max(s.Tail, 1)), DType.F32, "adam-gather");
        var host = wanted ? new float[chunk * s.Ranks] : [];
        foreach (var (moments, into, name) in new[] { (M, 0, "first"), (V, 1, "second") })
        {
            var target = into == 0 ? m : v;
            for (long o = 0; o < s.Block; o += chunk)
            {
                long c = Math.Min(chunk, s.Block - o);
                _comm.AllGather(moments.Slice(o, c), staging.Slice(0, c * s.Ranks), $"the all-gather of the AdamW {name} moments");
                if (!wanted) continue;
                be.Download<float>(host.AsSpan(0, (int)(c * s.Ranks)), staging.Slice(0, c * s.Ranks));
                for (int r = 0; r < s.Ranks; r++)
                    host.AsSpan((int)(r * c), (int)c).CopyTo(target.Slice((int)(s.OffsetOf(r) + o), (int)c));
            }
            if (s.Tail > 0)
            {
                if (s.Rank == s.Ranks - 1) be.Copy(staging.Slice(0, s.Tail), moments.Slice(s.Block, s.Tail));
                _comm.Broadcast(staging.Slice(0, s.Tail), s.Ranks - 1, $"the broadcast of the AdamW {name} moments' tail");
                if (wanted) be.Download<float>(target.Slice((int)s.Covered, (int)s.Tail), staging.Slice(0, s.Tail));
            }
        }
    }

    /// <summary>Loads whole moments, F32[ParameterTotal] each (a checkpoint's); sharded, this rank keeps its shard.</summary>
    public void UploadMoments(ReadOnlySpan<float> m, ReadOnlySpan<float> v)
    {
        long total = _model.ParameterTotal;
        if (m.Length != total || v.Length != total)
            throw new ArgumentException($"the optimizer holds the moments of {total} parameters, the checkpoint {m.Length} and {v.Length}");
        long first = Shard?.Offset ?? 0;
        int n = (int)(Shard?.Length ?? total);
        _model.Backend.Upload(M, m.Slice((int)first, n));
        _model.Backend.Upload(V, v.Slice((int)first, n));
    }

    public void Dispose()
    {
        _scalars.Dispose();
        _normSquared.Dispose();
        V.Dispose();
        M.Dispose();
    }
}
