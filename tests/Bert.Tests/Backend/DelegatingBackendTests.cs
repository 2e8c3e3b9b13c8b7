using System.Reflection;
using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Backend;

/// <summary>DelegatingBackend forwards every member of IBackend, each one overridable.</summary>
[TestFixture]
public class DelegatingBackendTests
{
    /// <summary>IBackend's members as the names <see cref="CountingBackend"/> records (property getters by property name).</summary>
    private static IEnumerable<MethodInfo> InterfaceMethods() =>
        typeof(IBackend).GetMethods().Concat(typeof(IDisposable).GetMethods());

    private static string Member(MethodInfo m) => m.IsSpecialName && m.Name.StartsWith("get_", StringComparison.Ordinal) ? m.Name[4..] : m.Name;

    [Test]
    public void EveryInterfaceMemberIsImplementedByDelegatingBackendAsAVirtualMethod()
    {
        var missing = new List<string>();
        foreach (var iface in new[] { typeof(IBackend), typeof(IDisposable) })
        {
            var map = typeof(DelegatingBackend).GetInterfaceMap(iface);
            for (int i = 0; i < map.InterfaceMethods.Length; i++)
            {
                var target = map.TargetMethods[i];
                // A default interface member (such as AvailableMemoryBytes) maps to the interface's own body
                // unless the class declares it: that is exactly the silent gap this test exists for.
                bool forwarded = target.DeclaringType == typeof(DelegatingBackend) && target.IsVirtual && !target.IsFinal;
                if (!forwarded) missing.Add($"{iface.Name}.{map.InterfaceMethods[i].Name} -> {target.DeclaringType?.Name}.{target.Name}");
            }
        }
        Assert.That(missing, Is.Empty, "IBackend members DelegatingBackend does not declare as overridable forwards");
    }

    [Test]
    public void EveryForwardedMemberReachesTheInnerBackend()
    {
        var inner = new CountingBackend();
        IBackend outer = new Passthrough(inner, ownsInner: true);

        // Span-taking members cannot go through reflection: called directly.
        outer.Upload<float>(new TensorRef(1, 1, DType.F32), [1f]);
        outer.Download<float>(new float[1], new TensorRef(1, 1, DType.F32));
        foreach (var m in InterfaceMethods())
        {
            var parameters = m.GetParameters();
            if (parameters.Any(p => p.ParameterType.IsByRefLike)) continue;
            var method = m.IsGenericMethodDefinition ? m.MakeGenericMethod(typeof(float)) : m;
            var args = parameters.Select(p => p.ParameterType.IsByRef
                ? Activator.CreateInstance(p.ParameterType.GetElementType()!)
                : p.ParameterType.IsValueType ? Activator.CreateInstance(p.ParameterType) : p.ParameterType == typeof(string) ? "x" : null).ToArray();
            method.Invoke(outer, args);
        }

        var expected = InterfaceMethods().Select(Member).Distinct().OrderBy(x => x, StringComparer.Ordinal).ToArray();
        Assert.That(inner.Calls.Distinct().OrderBy(x => x, StringComparer.Ordinal).ToArray(), Is.EqualTo(expected),
            "each IBackend member called on the decorator reaches the inner backend");
    }

    [Test]
    public void ForwardedResultsAndQueriesComeFromTheInnerBackend()
    {
        var inner = new CountingBackend();
        using var outer = new Passthrough(inner);
        Assert.Multiple(() =>
        {
            Assert.That(outer.Name, Is.EqualTo("counting"));
            Assert.That(outer.ComputeType, Is.EqualTo(DType.BF16));
            Assert.That(((IBackend)outer).AvailableMemoryBytes, Is.EqualTo(12345L));
            Assert.That(outer.PlanAttention(2, 3, 4, 5), Is.EqualTo(new AttentionPlan(2 * 4 * 3 * 3, 2 * 3 * 4 * 5, false)));
            Assert.That(outer.LogitsStride(30522), Is.EqualTo(30525));
        });
    }

    [Test]
    public void DisposeDisposesTheInnerBackendOnlyWhenOwned()
    {
        var inner = new CountingBackend();
        new Passthrough(inner).Dispose();
        Assert.That(inner.Calls, Does.Not.Contain(nameof(IDisposable.Dispose)));
        new Passthrough(inner, ownsInner: true).Dispose();
        Assert.That(inner.Calls, Does.Contain(nameof(IDisposable.Dispose)));
    }

    [Test]
    public void ProfilingBackendTimesOpsAndForwardsTheMemoryQuery()
    {
        var inner = new CountingBackend();
        using var profiler = new ProfilingBackend(inner);
        profiler.LayerNorm(default, default, default, default, default, default, 1, 1, 1e-5f);
        profiler.LayerNorm(default, default, default, default, default, default, 1, 1, 1e-5f);
        profiler.Linear(default, default, default, default, default, 1, 3, 7, Activation.None);
        Assert.That(((IBackend)profiler).AvailableMemoryBytes, Is.EqualTo(12345L));
        var ops = profiler.Breakdown.ToDictionary(x => x.Op, x => x.Calls);
        Assert.That(ops, Is.EquivalentTo(new Dictionary<string, long> { ["LayerNorm"] = 2, ["Linear 3->7"] = 1 }));
        Assert.That(inner.Calls.Count(c => c == nameof(IBackend.LayerNorm)), Is.EqualTo(2));
    }

    private sealed class Passthrough(IBackend inner, bool ownsInner = false) : DelegatingBackend(inner, ownsInner);

    /// <summary>Computes nothing; records the name of every member called on it.</summary>
    private sealed class CountingBackend : IBackend
    {
        public List<string> Calls { get; } = [];

        private void Hit(string member) => Calls.Add(member);

        public string Name
        {
            get
            {
                Hit(nameof(Name));
                return "counting";
            }
        }

        public DType ComputeType
        {
            get
            {
                Hit(nameof(ComputeType));
                return DType.BF16;
            }
        }

        public long? AvailableMemoryBytes
        {
            get
            {
                Hit(nameof(AvailableMemoryBytes));
                return 12345;
            }
        }

        public DeviceBuffer Allocate(long length, DType type, string label)
        {
            Hit(nameof(Allocate));
            return null!;
        }

        public void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged => Hit(nameof(Upload));
        public void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged => Hit(nameof(Download));
        public void Copy(TensorRef destination, TensorRef source) => Hit(nameof(Copy));
        public void Zero(TensorRef tensor) => Hit(nameof(Zero));
        public void Synchronize() => Hit(nameof(Synchronize));
        public void WrittenExternally(TensorRef written) => Hit(nameof(WrittenExternally));

        public void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
            int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0) => Hit(nameof(Linear));

        public void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
            int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0) => Hit(nameof(LinearBackward));

        public void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation) =>
            Hit(nameof(ActivationBackward));

        public void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds,
            TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb, TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps,
            DropoutSpec dropout) => Hit(nameof(EmbeddingsForward));

        public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta, TensorRef scratch,
            TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
            int batch, int seq, int hidden, DropoutSpec dropout) => Hit(nameof(EmbeddingsBackward));

        public void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
            int rows, int hidden, float eps) => Hit(nameof(LayerNorm));

        public void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput, TensorRef input, TensorRef mean,
            TensorRef rstd, TensorRef gamma, int rows, int hidden) => Hit(nameof(LayerNormBackward));

        public void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef residual, TensorRef branch,
            TensorRef gamma, TensorRef beta, int rows, int hidden, float eps, DropoutSpec dropout) => Hit(nameof(ResidualLayerNorm));

        public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
            TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout) =>
            Hit(nameof(ResidualLayerNormBackward));

        public AttentionPlan PlanAttention(int batch, int seq, int heads, int headDim)
        {
            Hit(nameof(PlanAttention));
            return new AttentionPlan(AttentionPlan.ProbabilitiesLength(batch, seq, heads), (long)batch * seq * heads * headDim, Fused: false);
        }

        public void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, TensorRef qkv, TensorRef attentionMask,
            int batch, int seq, int heads, int headDim, DropoutSpec dropout) => Hit(nameof(AttentionForward));

        public void AttentionBackward(TensorRef dQkv, TensorRef workspace, TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs, TensorRef attentionMask,
            int batch, int seq, int heads, int headDim, DropoutSpec dropout) => Hit(nameof(AttentionBackward));

        public void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout) => Hit(nameof(Dropout));

        public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden) =>
            Hit(nameof(GatherRows));

        public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden) =>
            Hit(nameof(ScatterAddRows));

        public void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
            int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default) => Hit(nameof(SoftmaxCrossEntropy));

        public int LogitsStride(int classes)
        {
            Hit(nameof(LogitsStride));
            return classes + 3;
        }

        public void SquaredNorm(TensorRef result, TensorRef input, long count) => Hit(nameof(SquaredNorm));

        public void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, long count, in AdamWStep step) =>
            Hit(nameof(AdamW));

        public void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
            long count, in AdamWConstants constants) =>
            Hit(nameof(AdamWDevice));

        public void Dispose() => Hit(nameof(Dispose));
    }
}
