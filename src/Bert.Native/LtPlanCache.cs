using Bert.Native.Interop;
using Bert.Runtime;

namespace Bert.Native;

/// <summary>
/// The cuBLASLt calls <see cref="LtPlanCache"/> makes, one method per step of a plan's life, so tests can put a
/// fake behind the cache (which plans it builds, which epilogue, which workspace, a refused shape) without a GPU.
/// <see cref="CublasLtApi"/> is the real one. Matrices are column-major; every matmul accumulates in fp32 with
/// fp32 alpha and beta.
/// </summary>
internal interface ICublasLtApi
{
    /// <summary>A matmul descriptor: compute 32F, scale 32F, the transposes, the epilogue and the bias type.</summary>
    nint CreateDescriptor(bool transA, bool transB, LtEpilogue epilogue, DType biasType);

    /// <summary>The per-call pointers of a descriptor: the bias (or bias-gradient output) and the aux buffer
    /// with its leading dimension (0 when the epilogue has none).</summary>
    void SetPointers(nint descriptor, ulong bias, ulong aux, long auxLd);

    /// <summary>A column-major rows×cols matrix layout with leading dimension ld.</summary>
    nint CreateLayout(DType type, long rows, long cols, long ld);

    /// <summary>The heuristic's best algorithm for operands aligned to <paramref name="alignment"/> bytes and at
    /// most <paramref name="workspaceBytes"/> of workspace; false with the reason when it has none (or the
    /// combination is not supported).</summary>
    bool TryGetAlgorithm(nint descriptor, nint aLayout, nint bLayout, nint dLayout, long workspaceBytes, uint alignment,
        out cublasLtMatmulAlgo_t algorithm, out string reason);

    /// <summary>Queues D = epilogue(alpha·op(A)·op(B) + beta·D) (C is D) on the stream.</summary>
    void Matmul(nint descriptor, float alpha, ulong a, nint aLayout, ulong b, nint bLayout, float beta, ulong d, nint dLayout,
        in cublasLtMatmulAlgo_t algorithm, ulong workspace, long workspaceBytes);

    void DestroyLayout(nint layout);

    void DestroyDescriptor(nint descriptor);
}

/// <summary>
/// One cuBLASLt plan per shape and epilogue: the descriptor, the three layouts and the algorithm the heuristic
/// chose, created on a shape's first call and reused (only the bias/aux pointers are set per call). A shape the
/// heuristic refuses is remembered as refused, logged once, and every call of it answers false so the caller
/// takes the cuBLAS path. The workspace (<see cref="WorkspaceBytes"/>, 32 MiB by default) is shared by all plans:
/// the calls are queued on one stream, so they never overlap.
/// </summary>
internal sealed class LtPlanCache(ICublasLtApi api, ulong workspace, long workspaceBytes, Action<string> log) : IDisposable
{
    /// <summary>The workspace cuBLASLt may use per matmul: 32 MiB, enough for the split-K variants Hopper's
    /// heuristic picks at BERT's shapes.</summary>
    public const long DefaultWorkspaceBytes = 32L << 20;

    /// <summary>What identifies a plan: everything baked into the descriptor and layouts, plus the operands'
    /// alignment (the heuristic's algorithm must suit every later call of the shape).</summary>
    internal readonly record struct Key(bool TransA, bool TransB, int M, int N, int K, int Lda, int Ldb, int Ldd,
        LtEpilogue Epilogue, DType Type, DType OutType, uint Alignment);

    private sealed class Plan
    {
        public nint Descriptor, ALayout, BLayout, DLayout;
        public cublasLtMatmulAlgo_t Algorithm;
    }

    private readonly Dictionary<Key, Plan?> _plans = [];

    public long WorkspaceBytes => workspaceBytes;

    /// <summary>Plans built so far (refused shapes included).</summary>
    public int Count => _plans.Count;

    /// <summary>Shapes the heuristic refused.</summary>
    public int Refused => _plans.Values.Count(p => p is null);

    public static Key KeyOf(in LtMatmulCall call) =>
        new(call.TransA, call.TransB, call.M, call.N, call.K, call.Lda, call.Ldb, call.Ldd,
            call.Epilogue, call.Type, call.DType, Alignment(call));

    /// <summary>The largest power of two (at most 256) dividing every pointer of the call.</summary>
    public static uint Alignment(in LtMatmulCall call)
    {
        ulong any = call.A | call.B | call.D | call.Bias | call.Aux;
        return any == 0 ? 256u : (uint)Math.Min(256UL, any & (~any + 1));
    }

    /// <summary>Queues the call through its cached plan; false (nothing queued) when its shape is refused.</summary>
    public bool TryMatmul(in LtMatmulCall call)
    {
        var key = KeyOf(call);
        if (!_plans.TryGetValue(key, out var plan))
        {
            plan = Create(call, key);
            _plans[key] = plan;
        }
        if (plan is null) return false;
        // Pointers change per call; the shape-dependent parts of the plan do not.
        api.SetPointers(plan.Descriptor, call.Bias, call.Aux, call.Epilogue == LtEpilogue.GeluTanhAuxBias ? call.Ldd : 0);
        api.Matmul(plan.Descriptor, 1f, call.A, plan.ALayout, call.B, plan.BLayout, call.Beta, call.D, plan.DLayout,
            plan.Algorithm, workspace, workspaceBytes);
        return true;
    }

    private Plan? Create(in LtMatmulCall call, Key key)
    {
        var plan = new Plan { Descriptor = api.CreateDescriptor(call.TransA, call.TransB, call.Epilogue, call.BiasType) };
        try
        {
            // The heuristic checks the bias pointer's alignment, so it sees this call's.
            api.SetPointers(plan.Descriptor, call.Bias, call.Aux, call.Epilogue == LtEpilogue.GeluTanhAuxBias ? call.Ldd : 0);
            plan.ALayout = api.CreateLayout(call.Type, call.TransA ? call.K : call.M, call.TransA ? call.M : call.K, call.Lda);
            plan.BLayout = api.CreateLayout(call.Type, call.TransB ? call.N : call.K, call.TransB ? call.K : call.N, call.Ldb);
            plan.DLayout = api.CreateLayout(call.DType, call.M, call.N, call.Ldd);
            if (api.TryGetAlgorithm(plan.Descriptor, plan.ALayout, plan.BLayout, plan.DLayout, workspaceBytes, key.Alignment,
                    out plan.Algorithm, out string reason))
                return plan;
            log($"cuBLASLt has no algorithm for {call.Epilogue} {(call.TransA ? 'T' : 'N')}{(call.TransB ? 'T' : 'N')} " +
                $"m={call.M} n={call.N} k={call.K} {call.Type}->{call.DType} (aligned {key.Alignment} B): {reason}; " +
                "this shape takes the cuBLAS path");
            Destroy(plan);
            return null;
        }
        catch
        {
            Destroy(plan);
            throw;
        }
    }

    private void Destroy(Plan plan)
    {
        if (plan.ALayout != 0) api.DestroyLayout(plan.ALayout);
        if (plan.BLayout != 0) api.DestroyLayout(plan.BLayout);
        if (plan.DLayout != 0) api.DestroyLayout(plan.DLayout);
        if (plan.Descriptor != 0) api.DestroyDescriptor(plan.Descriptor);
    }

    public void Dispose()
    {
        foreach (var plan in _plans.Values) if (plan is not null) Destroy(plan);
        _plans.Clear();
    }
}
