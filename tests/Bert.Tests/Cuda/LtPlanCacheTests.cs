using Bert.Native;
using Bert.Native.Interop;
using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// <see cref="LtPlanCache"/> against a recording fake of the cuBLASLt API: one plan (descriptor, layouts,
/// heuristic query) per shape, the epilogue and bias type each call asks for, the 32 MiB workspace offered to the
/// heuristic and passed to every matmul, a refused shape answered false and logged once, and everything destroyed.
/// </summary>
[TestFixture]
public class LtPlanCacheTests
{
    /// <summary>Records every call; refuses the shapes <see cref="Refuse"/> names.</summary>
    internal sealed class FakeCublasLt : ICublasLtApi
    {
        private nint _next = 100;
        public Func<(LtEpilogue Epilogue, long Rows, long Cols), bool> Refuse { get; set; } = _ => false;
        public List<(nint Handle, bool TransA, bool TransB, LtEpilogue Epilogue, DType BiasType)> Descriptors { get; } = [];
        public Dictionary<nint, (DType Type, long Rows, long Cols, long Ld)> Layouts { get; } = [];
        public List<(long WorkspaceBytes, uint Alignment)> Queries { get; } = [];
        public List<(nint Descriptor, float Beta, ulong A, ulong B, ulong D, ulong Workspace, long WorkspaceBytes)> Matmuls { get; } = [];
        public List<(nint Descriptor, ulong Bias, ulong Aux, long AuxLd)> Pointers { get; } = [];
        public HashSet<nint> Destroyed { get; } = [];

        public nint CreateDescriptor(bool transA, bool transB, LtEpilogue epilogue, DType biasType)
        {
            var h = _next++;
            Descriptors.Add((h, transA, transB, epilogue, biasType));
            return h;
        }

        public void SetPointers(nint descriptor, ulong bias, ulong aux, long auxLd) => Pointers.Add((descriptor, bias, aux, auxLd));

        public nint CreateLayout(DType type, long rows, long cols, long ld)
        {
            var h = _next++;
            Layouts[h] = (type, rows, cols, ld);
            return h;
        }

        public bool TryGetAlgorithm(nint descriptor, nint aLayout, nint bLayout, nint dLayout, long workspaceBytes, uint alignment,
            out cublasLtMatmulAlgo_t algorithm, out string reason)
        {
            Queries.Add((workspaceBytes, alignment));
            algorithm = default;
            var epilogue = Descriptors.Single(d => d.Handle == descriptor).Epilogue;
            var d = Layouts[dLayout];
            if (Refuse((epilogue, d.Rows, d.Cols)))
            {
                reason = "CUBLAS_STATUS_NOT_SUPPORTED (fake)";
                return false;
            }
            reason = "";
            return true;
        }

        public void Matmul(nint descriptor, float alpha, ulong a, nint aLayout, ulong b, nint bLayout, float beta, ulong d, nint dLayout,
            in cublasLtMatmulAlgo_t algorithm, ulong workspace, long workspaceBytes) =>
            Matmuls.Add((descriptor, beta, a, b, d, workspace, workspaceBytes));

        public void DestroyLayout(nint layout) => Assert.That(Destroyed.Add(layout), $"layout {layout} destroyed twice");

        public void DestroyDescriptor(nint descriptor) => Assert.That(Destroyed.Add(descriptor), $"descriptor {descriptor} destroyed twice");
    }

    private const ulong Workspace = 0x7000_0000;

    // The weight-gradient call LinearBackward makes for rows 40, in 24, out 16 (bf16 operands, F32 dW, beta 1).
    private static LtMatmulCall WeightGradient(int rows = 40, ulong x = 0x1000_0000, ulong dy = 0x2000_0000) =>
        new(false, true, 24, 16, rows, x, 24, dy, 16, 0x3000_0000, 24, 0x4000_0000, 0, LtEpilogue.BiasGradB, DType.BF16, DType.F32, Beta: 1f);

    private static LtMatmulCall Forward(int rows = 40) =>
        new(true, false, 16, rows, 24, 0x5000_0000, 24, 0x1000_0000, 24, 0x6000_0000, 16, 0x4000_0100, 0, LtEpilogue.Bias, DType.BF16);

    [Test]
    public void OnePlanPerShapeAndTheHeuristicOnce()
    {
        var fake = new FakeCublasLt();
        var logged = new List<string>();
        using (var cache = new LtPlanCache(fake, Workspace, LtPlanCache.DefaultWorkspaceBytes, logged.Add))
        {
            for (int i = 0; i < 3; i++)
            {
                Assert.That(cache.TryMatmul(WeightGradient()), Is.True);
                Assert.That(cache.TryMatmul(Forward()), Is.True);
            }
            // Another row count (the MLM head's rows differ from the encoder's) is another shape.
            Assert.That(cache.TryMatmul(WeightGradient(rows: 56)), Is.True);
            // The same shape at other (equally aligned) pointers reuses its plan and gets the new pointers.
            Assert.That(cache.TryMatmul(WeightGradient(x: 0x1100_0000, dy: 0x2100_0000)), Is.True);

            Assert.That(cache.Count, Is.EqualTo(3));
            Assert.That(fake.Descriptors, Has.Count.EqualTo(3));
            Assert.That(fake.Queries, Has.Count.EqualTo(3), "one heuristic query per shape");
            Assert.That(fake.Layouts, Has.Count.EqualTo(9));
            Assert.That(fake.Matmuls, Has.Count.EqualTo(8));
            Assert.That(fake.Matmuls[^1].A, Is.EqualTo(0x1100_0000UL));
            Assert.That(fake.Matmuls[^1].B, Is.EqualTo(0x2100_0000UL));
            Assert.That(fake.Matmuls.Select(m => m.Descriptor).Distinct().Count(), Is.EqualTo(3));
            Assert.That(logged, Is.Empty);
        }
        Assert.That(fake.Destroyed, Is.EquivalentTo(fake.Layouts.Keys.Concat(fake.Descriptors.Select(d => d.Handle))),
            "every descriptor and layout is destroyed with the cache");
    }

    [Test]
    public void TheWeightGradientAsksForBgradbWithAnF32BiasAndAccumulatesIntoD()
    {
        var fake = new FakeCublasLt();
        using var cache = new LtPlanCache(fake, Workspace, LtPlanCache.DefaultWorkspaceBytes, _ => { });
        Assert.That(cache.TryMatmul(WeightGradient()), Is.True);
        Assert.That(cache.TryMatmul(Forward()), Is.True);

        var (handle, transA, transB, epilogue, biasType) = fake.Descriptors[0];
        Assert.That((transA, transB, epilogue, biasType), Is.EqualTo((false, true, LtEpilogue.BiasGradB, DType.F32)));
        Assert.That(fake.Descriptors[1].Epilogue, Is.EqualTo(LtEpilogue.Bias));
        Assert.That(fake.Descriptors[1].BiasType, Is.EqualTo(DType.BF16), "the forward bias comes from the bf16 shadow");
        // A = x stored K×N (24×40), B = dY stored O×N (16×40) read transposed, D = dW column-major 24×16 in F32.
        var layouts = fake.Layouts.Where(kv => kv.Key < fake.Descriptors[1].Handle).OrderBy(kv => kv.Key).Select(kv => kv.Value).ToArray();
        Assert.That(layouts, Is.EqualTo(new[] { (DType.BF16, 24L, 40L, 24L), (DType.BF16, 16L, 40L, 16L), (DType.F32, 24L, 16L, 24L) }));
        Assert.That(fake.Matmuls[0].Beta, Is.EqualTo(1f), "dW accumulates");
        Assert.That(fake.Matmuls[1].Beta, Is.EqualTo(0f));
        Assert.That(fake.Pointers.Where(p => p.Descriptor == handle).Select(p => p.Bias), Is.All.EqualTo(0x4000_0000UL),
            "the bias gradient goes where the call says (the backend's reduction scratch)");
    }

    [Test]
    public void EveryMatmulGetsThe32MiBWorkspace()
    {
        var fake = new FakeCublasLt();
        using var cache = new LtPlanCache(fake, Workspace, LtPlanCache.DefaultWorkspaceBytes, _ => { });
        cache.TryMatmul(WeightGradient());
        cache.TryMatmul(Forward());
        Assert.That(LtPlanCache.DefaultWorkspaceBytes, Is.EqualTo(32L << 20));
        Assert.That(fake.Queries.Select(q => q.WorkspaceBytes), Is.All.EqualTo(32L << 20));
        Assert.That(fake.Matmuls.Select(m => (m.Workspace, m.WorkspaceBytes)), Is.All.EqualTo((Workspace, 32L << 20)));
    }

    [Test]
    public void TheHeuristicSeesTheOperandsAlignment()
    {
        var fake = new FakeCublasLt();
        using var cache = new LtPlanCache(fake, Workspace, LtPlanCache.DefaultWorkspaceBytes, _ => { });
        cache.TryMatmul(WeightGradient());
        cache.TryMatmul(WeightGradient(x: 0x1000_0010));
        Assert.That(fake.Queries.Select(q => q.Alignment), Is.EqualTo(new uint[] { 256, 16 }),
            "a 16-byte aligned operand is another plan whose algorithm suits 16-byte alignment");
    }

    [Test]
    public void ARefusedShapeAnswersFalseAndIsLoggedOnce()
    {
        var fake = new FakeCublasLt { Refuse = s => s.Epilogue == LtEpilogue.BiasGradB && s.Cols == 16 };
        var logged = new List<string>();
        using var cache = new LtPlanCache(fake, Workspace, LtPlanCache.DefaultWorkspaceBytes, logged.Add);
        for (int i = 0; i < 4; i++) Assert.That(cache.TryMatmul(WeightGradient()), Is.False);
        Assert.That(cache.TryMatmul(Forward()), Is.True, "other shapes still run");

        Assert.That(logged, Has.Count.EqualTo(1));
        Assert.That(logged[0], Does.Contain("BiasGradB").And.Contain("m=24 n=16 k=40").And.Contain("cuBLAS path")
            .And.Contain("NOT_SUPPORTED"));
        Assert.That(fake.Queries, Has.Count.EqualTo(2), "a refused shape is not queried again");
        Assert.That(fake.Matmuls, Has.Count.EqualTo(1), "nothing is queued for a refused shape");
        Assert.That(cache.Refused, Is.EqualTo(1));
        // The refused plan's descriptor and layouts are released at once.
        var refused = fake.Descriptors[0].Handle;
        Assert.That(fake.Destroyed, Does.Contain(refused));
    }
}
