using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Tests.Cuda;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Backend;

/// <summary>Views carved from two large buffers of one backend: each call gets fresh, non-overlapping views.</summary>
public sealed class OpRig : IDisposable
{
    public const long Elements = 1 << 16;
    private readonly DeviceBuffer _f32, _i32;
    private long _f, _i;

    public OpRig(IBackend backend)
    {
        B = backend;
        _f32 = backend.Allocate(Elements, DType.F32, "f32");
        _i32 = backend.Allocate(Elements, DType.I32, "i32");
    }

    public IBackend B { get; }

    public DeviceBuffer F32Buffer => _f32;

    /// <summary>A fresh F32 view of n elements (a gap separates views, so no two share an address).</summary>
    public TensorRef F(long n)
    {
        var t = _f32.Slice(_f, n);
        _f += n + 16;
        return t;
    }

    /// <summary>A fresh I32 view of n elements, zero-filled by allocation (valid ids, labels and positions).</summary>
    public TensorRef I(long n)
    {
        var t = _i32.Slice(_i, n);
        _i += n + 16;
        return t;
    }

    public void Reset() => _f = _i = 0;

    public void Dispose()
    {
        _f32.Dispose();
        _i32.Dispose();
    }
}

/// <summary>One call with one bad argument, made the same way on any backend.</summary>
public sealed class BadCall(string op, string what, Action<OpRig> call)
{
    public string Op { get; } = op;

    public void Run(OpRig rig) => call(rig);

    public override string ToString() => $"{Op}: {what}";
}

/// <summary>
/// The argument checks are one set (OpChecks): the same bad call throws the same exception type with the
/// same message on the CPU backend and on the CUDA backend. The CUDA side runs on a recording device (the
/// launchers without execution, so without a GPU) and, in the [Gpu] fixture, on a real GPU.
/// </summary>
public abstract class OpCheckParityTests
{
    // Odd sizes: N rows, K in, O out, hidden H = NH·HD, batch B, sequence S, P predictions, C classes.
    private const int N = 3, K = 4, O = 5, H = 8, NH = 2, HD = 4, B = 2, S = 3, P = 2, C = 5, V = 11;

    protected abstract IBackend CreateCuda();

    private static BadCall Bad(string op, string what, Action<OpRig> call) => new(op, what, call);

    private static readonly DropoutSpec Drop = new(0.1f, 1, 2, 3);

    public static IEnumerable<BadCall> Cases()
    {
        // Linear(output, pre, input, weight, bias, rows, in, out, act)
        yield return Bad("Linear", "rows < 0", r => r.B.Linear(r.F(N * O), default, r.F(N * K), r.F(O * K), default, -1, K, O, Activation.None));
        yield return Bad("Linear", "inFeatures 0", r => r.B.Linear(r.F(N * O), default, r.F(N * K), r.F(O * K), default, N, 0, O, Activation.None));
        yield return Bad("Linear", "unknown activation", r => r.B.Linear(r.F(N * O), default, r.F(N * K), r.F(O * K), default, N, K, O, (Activation)99));
        yield return Bad("Linear", "output short", r => r.B.Linear(r.F(N * O - 1), default, r.F(N * K), r.F(O * K), default, N, K, O, Activation.None));
        yield return Bad("Linear", "input null", r => r.B.Linear(r.F(N * O), default, default, r.F(O * K), default, N, K, O, Activation.None));
        yield return Bad("Linear", "bias I32", r => r.B.Linear(r.F(N * O), default, r.F(N * K), r.F(O * K), r.I(O), N, K, O, Activation.None));
        yield return Bad("Linear", "preActivation short", r => r.B.Linear(r.F(N * O), r.F(1), r.F(N * K), r.F(O * K), default, N, K, O, Activation.Gelu));
        // LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, rows, in, out, accumulate)
        yield return Bad("LinearBackward", "dWeight short", r => r.B.LinearBackward(r.F(N * K), r.F(O * K - 1), r.F(O), r.F(N * O), r.F(N * K), r.F(O * K), N, K, O, false));
        yield return Bad("LinearBackward", "dBias I32", r => r.B.LinearBackward(r.F(N * K), r.F(O * K), r.I(O), r.F(N * O), r.F(N * K), r.F(O * K), N, K, O, false));
        yield return Bad("LinearBackward", "outFeatures < 0", r => r.B.LinearBackward(r.F(N * K), r.F(O * K), r.F(O), r.F(N * O), r.F(N * K), r.F(O * K), N, K, -1, false));
        yield return Bad("LinearBackward", "weight null with dInput", r => r.B.LinearBackward(r.F(N * K), r.F(O * K), default, r.F(N * O), r.F(N * K), default, N, K, O, false));
        // ActivationBackward(dPre, dOut, pre, count, act)
        yield return Bad("ActivationBackward", "count < 0", r => r.B.ActivationBackward(r.F(N), r.F(N), r.F(N), -1, Activation.Gelu));
        yield return Bad("ActivationBackward", "pre null", r => r.B.ActivationBackward(r.F(N), r.F(N), default, N, Activation.Gelu));
        yield return Bad("ActivationBackward", "pre null without activation", r => r.B.ActivationBackward(r.F(N), r.F(N), default, N, Activation.None));
        // Embeddings
        yield return Bad("EmbeddingsForward", "eps 0", r => EmbeddingsForward(r, eps: 0f));
        yield return Bad("EmbeddingsForward", "eps NaN", r => EmbeddingsForward(r, eps: float.NaN));
        yield return Bad("EmbeddingsForward", "eps ∞", r => EmbeddingsForward(r, eps: float.PositiveInfinity));
        yield return Bad("EmbeddingsForward", "dropout 1", r => EmbeddingsForward(r, dropout: new DropoutSpec(1f, 1, 2, 3)));
        yield return Bad("EmbeddingsForward", "fewer positions than seq", r => EmbeddingsForward(r, positions: S - 1));
        yield return Bad("EmbeddingsForward", "word table not rows × hidden", r => EmbeddingsForward(r, wordLength: V * H + 1));
        yield return Bad("EmbeddingsForward", "batch < 0", r => EmbeddingsForward(r, batch: -1));
        yield return Bad("EmbeddingsForward", "inputIds F32", r => r.B.EmbeddingsForward(r.F(B * S * H), r.F(B * S * H), r.F(B * S), r.F(B * S),
            r.F(B * S), r.I(B * S), r.F(V * H), r.F(S * H), r.F(2 * H), r.F(H), r.F(H), B, S, H, 1e-12f, default));
        yield return Bad("EmbeddingsBackward", "type table not rows × hidden", r => EmbeddingsBackward(r, typeLength: 2 * H - 1));
        yield return Bad("EmbeddingsBackward", "scratch short", r => EmbeddingsBackward(r, scratch: B * S * H - 1));
        yield return Bad("EmbeddingsBackward", "dropout negative", r => EmbeddingsBackward(r, dropout: new DropoutSpec(-0.1f, 1, 2, 3)));
        // LayerNorm family
        yield return Bad("LayerNorm", "eps 0", r => r.B.LayerNorm(r.F(N * H), r.F(N), r.F(N), r.F(N * H), r.F(H), r.F(H), N, H, 0f));
        yield return Bad("LayerNorm", "eps 0 with 0 rows", r => r.B.LayerNorm(r.F(0), r.F(0), r.F(0), r.F(0), r.F(H), r.F(H), 0, H, 0f));
        yield return Bad("LayerNorm", "mean short", r => r.B.LayerNorm(r.F(N * H), r.F(N - 1), r.F(N), r.F(N * H), r.F(H), r.F(H), N, H, 1e-5f));
        yield return Bad("LayerNorm", "hidden 0", r => r.B.LayerNorm(r.F(N * H), r.F(N), r.F(N), r.F(N * H), r.F(H), r.F(H), N, 0, 1e-5f));
        yield return Bad("LayerNormBackward", "dGamma I32", r => r.B.LayerNormBackward(r.F(N * H), r.I(H), r.F(H), r.F(N * H), r.F(N * H), r.F(N), r.F(N), r.F(H), N, H));
        yield return Bad("LayerNormBackward", "rstd null", r => r.B.LayerNormBackward(r.F(N * H), r.F(H), r.F(H), r.F(N * H), r.F(N * H), r.F(N), default, r.F(H), N, H));
        yield return Bad("ResidualLayerNorm", "sum aliases residual under dropout", r =>
        {
            var x = r.F(N * H);
            r.B.ResidualLayerNorm(r.F(N * H), x, r.F(N), r.F(N), x, r.F(N * H), r.F(H), r.F(H), N, H, 1e-5f, Drop);
        });
        yield return Bad("ResidualLayerNorm", "eps < 0", r => r.B.ResidualLayerNorm(r.F(N * H), r.F(N * H), r.F(N), r.F(N), r.F(N * H), r.F(N * H), r.F(H), r.F(H), N, H, -1f, default));
        yield return Bad("ResidualLayerNorm", "dropout NaN", r => r.B.ResidualLayerNorm(r.F(N * H), r.F(N * H), r.F(N), r.F(N), r.F(N * H), r.F(N * H), r.F(H), r.F(H), N, H, 1e-5f, new DropoutSpec(float.NaN, 1, 2, 3)));
        yield return Bad("ResidualLayerNormBackward", "dBranch aliases dOutput", r =>
        {
            var d = r.F(N * H);
            r.B.ResidualLayerNormBackward(r.F(N * H), d, r.F(H), r.F(H), d, r.F(N * H), r.F(N), r.F(N), r.F(H), N, H, default);
        });
        yield return Bad("ResidualLayerNormBackward", "dBranch aliases dResidual", r =>
        {
            var d = r.F(N * H);
            r.B.ResidualLayerNormBackward(d, d, r.F(H), r.F(H), r.F(N * H), r.F(N * H), r.F(N), r.F(N), r.F(H), N, H, default);
        });
        // Attention (the workspace length is the backend's own, so it is given generously)
        yield return Bad("PlanAttention", "heads 0", r => r.B.PlanAttention(B, S, 0, HD));
        yield return Bad("LogitsStride", "classes 0", r => r.B.LogitsStride(0));
        yield return Bad("AttentionForward", "mask F32", r => AttentionForward(r, mask: r.F(B * S)));
        yield return Bad("AttentionForward", "dropout 1.5", r => AttentionForward(r, dropout: new DropoutSpec(1.5f, 1, 2, 3)));
        yield return Bad("AttentionForward", "qkv short", r => AttentionForward(r, qkv: B * S * 3 * H - 1));
        yield return Bad("AttentionForward", "seq < 0", r => AttentionForward(r, seq: -1));
        yield return Bad("AttentionBackward", "dQkv short", r => r.B.AttentionBackward(r.F(B * S * 3 * H - 1), r.F(20_000), r.F(B * S * H), r.F(B * S * 3 * H),
            r.F(B * S * H), r.F(B * NH * S * S), r.I(B * S), B, S, NH, HD, default));
        yield return Bad("AttentionBackward", "headDim 0", r => r.B.AttentionBackward(r.F(B * S * 3 * H), r.F(20_000), r.F(B * S * H), r.F(B * S * 3 * H),
            r.F(B * S * H), r.F(B * NH * S * S), r.I(B * S), B, S, NH, 0, default));
        yield return Bad("Dropout", "count < 0", r => r.B.Dropout(r.F(N), r.F(N), -1, Drop));
        yield return Bad("Dropout", "probability 1", r => r.B.Dropout(r.F(N), r.F(N), N, new DropoutSpec(1f, 1, 2, 3)));
        // Gathers
        yield return Bad("GatherRows", "positions short", r => r.B.GatherRows(r.F(B * P * H), r.F(B * S * H), r.I(B * P - 1), B, S, P, H));
        yield return Bad("GatherRows", "seq 0 with rows to gather", r => r.B.GatherRows(r.F(B * P * H), r.F(0), r.I(B * P), B, 0, P, H));
        yield return Bad("GatherRows", "hidden 0", r => r.B.GatherRows(r.F(B * P * H), r.F(B * S * H), r.I(B * P), B, S, P, 0));
        yield return Bad("ScatterAddRows", "dInput short", r => r.B.ScatterAddRows(r.F(B * S * H - 1), r.F(B * P * H), r.I(B * P), B, S, P, H));
        // Loss
        yield return Bad("SoftmaxCrossEntropy", "stats short", r => r.B.SoftmaxCrossEntropy(r.F(N * C), r.F(2), r.F(N * C), r.I(N), default, N, C, 1f));
        yield return Bad("SoftmaxCrossEntropy", "gradScale NaN", r => r.B.SoftmaxCrossEntropy(r.F(N * C), r.F(3), r.F(N * C), r.I(N), default, N, C, float.NaN));
        yield return Bad("SoftmaxCrossEntropy", "labels F32", r => r.B.SoftmaxCrossEntropy(r.F(N * C), r.F(3), r.F(N * C), r.F(N), default, N, C, 1f));
        yield return Bad("SoftmaxCrossEntropy", "weights short", r => r.B.SoftmaxCrossEntropy(r.F(N * C), r.F(3), r.F(N * C), r.I(N), r.F(N - 1), N, C, 1f));
        yield return Bad("SoftmaxCrossEntropy", "classes 0", r => r.B.SoftmaxCrossEntropy(r.F(N * C), r.F(3), r.F(N * C), r.I(N), default, N, 0, 1f));
        yield return Bad("SoftmaxCrossEntropy", "rows < 0", r => r.B.SoftmaxCrossEntropy(r.F(N * C), r.F(3), r.F(N * C), r.I(N), default, -1, C, 1f));
        // Optimizer
        yield return Bad("SquaredNorm", "result null", r => r.B.SquaredNorm(default, r.F(N), N));
        yield return Bad("SquaredNorm", "count < 0", r => r.B.SquaredNorm(r.F(1), r.F(N), -1));
        yield return Bad("AdamW", "step 0", r => AdamW(r, Step() with { Step = 0 }));
        yield return Bad("AdamW", "beta1 1", r => AdamW(r, Step() with { Beta1 = 1f }));
        yield return Bad("AdamW", "max norm 0 with clipping", r => AdamW(r, Step() with { MaxGradNorm = 0f }, clip: true));
        yield return Bad("AdamW", "learning rate ∞", r => AdamW(r, Step() with { LearningRate = float.PositiveInfinity }));
        yield return Bad("AdamW", "m short", r => r.B.AdamW(r.F(N), r.F(N), r.F(N - 1), r.F(N), default, N, Step()));
        yield return Bad("AdamW", "count < 0 with 0 elements", r => r.B.AdamW(r.F(0), r.F(0), r.F(0), r.F(0), default, -1, Step()));
        yield return Bad("AdamWDevice", "scalars short", r => r.B.AdamWDevice(r.F(N), r.F(N), r.F(N), r.F(N), r.F(1), r.F(StepScalars.Length - 1), N, Constants()));
        yield return Bad("AdamWDevice", "normSquared null", r => r.B.AdamWDevice(r.F(N), r.F(N), r.F(N), r.F(N), default, r.F(StepScalars.Length), N, Constants()));
        yield return Bad("AdamWDevice", "max norm < 0", r => r.B.AdamWDevice(r.F(N), r.F(N), r.F(N), r.F(N), r.F(1), r.F(StepScalars.Length), N,
            Constants() with { MaxGradNorm = -1f }));
        yield return Bad("AdamWDevice", "beta2 1", r => r.B.AdamWDevice(r.F(N), r.F(N), r.F(N), r.F(N), r.F(1), r.F(StepScalars.Length), N,
            Constants() with { Beta2 = 1f }));
        yield return Bad("AdamWDevice", "v short", r => r.B.AdamWDevice(r.F(N), r.F(N), r.F(N), r.F(N - 1), r.F(1), r.F(StepScalars.Length), N, Constants()));
        // Memory
        yield return Bad("Copy", "lengths differ", r => r.B.Copy(r.F(N), r.F(N + 1)));
        yield return Bad("Copy", "dtypes differ", r => r.B.Copy(r.F(N), r.I(N)));
        yield return Bad("Zero", "null", r => r.B.Zero(default));
    }

    private static AdamWStep Step() => new(1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 1, 1f);

    private static AdamWConstants Constants() => new(0.9f, 0.999f, 1e-6f, 0.01f, 1f);

    private static void AdamW(OpRig r, AdamWStep step, bool clip = false) =>
        r.B.AdamW(r.F(N), r.F(N), r.F(N), r.F(N), clip ? r.F(1) : default, N, step);

    private static void EmbeddingsForward(OpRig r, float eps = 1e-12f, DropoutSpec dropout = default, int positions = S,
        long wordLength = V * H, int batch = B) =>
        r.B.EmbeddingsForward(r.F(B * S * H), r.F(B * S * H), r.F(B * S), r.F(B * S), r.I(B * S), r.I(B * S),
            r.F(wordLength), r.F(positions * H), r.F(2 * H), r.F(H), r.F(H), batch, S, H, eps, dropout);

    private static void EmbeddingsBackward(OpRig r, long typeLength = 2 * H, long scratch = B * S * H, DropoutSpec dropout = default) =>
        r.B.EmbeddingsBackward(r.F(V * H), r.F(S * H), r.F(typeLength), r.F(H), r.F(H), r.F(scratch), r.F(B * S * H), r.F(B * S * H),
            r.F(B * S), r.F(B * S), r.I(B * S), r.I(B * S), r.F(H), B, S, H, dropout);

    private static void AttentionForward(OpRig r, TensorRef mask = default, DropoutSpec dropout = default, long qkv = B * S * 3 * H, int seq = S) =>
        r.B.AttentionForward(r.F(B * S * H), r.F(B * NH * S * S), r.F(20_000), r.F(qkv), mask.IsNull ? r.I(B * S) : mask, B, seq, NH, HD, dropout);

    private static ArgumentException? Catch(IBackend backend, BadCall call)
    {
        using var rig = new OpRig(backend);
        try
        {
            call.Run(rig);
            return null;
        }
        catch (ArgumentException e)
        {
            return e;
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void TheSameBadCallFailsTheSameWayOnCpuAndCuda(BadCall call)
    {
        using var cpu = new CpuBackend(1);
        using var cuda = CreateCuda();
        var onCpu = Catch(cpu, call);
        var onCuda = Catch(cuda, call);
        Assert.That(onCpu, Is.Not.Null, "the CPU backend accepted the call");
        Assert.That(onCuda, Is.Not.Null, "the CUDA backend accepted the call");
        Assert.Multiple(() =>
        {
            Assert.That(onCpu!.Message, Does.StartWith(call.Op + ": "), "the message names the op first");
            Assert.That(onCuda!.GetType(), Is.EqualTo(onCpu.GetType()), "exception type");
            Assert.That(onCuda.Message, Is.EqualTo(onCpu.Message), "message");
            Assert.That(onCuda.ParamName, Is.EqualTo(onCpu.ParamName), "parameter name");
        });
    }
}

/// <summary>CPU against the CUDA backend's launchers on a recording device (no GPU needed).</summary>
[TestFixture]
public class OpCheckParityRecordingTests : OpCheckParityTests
{
    protected override IBackend CreateCuda() => new CudaBackend(new RecordingDevice(), new CudaBackendOptions());

    [Test]
    public void TheCasesCoverEveryOpOfTheBoundary()
    {
        // Allocate, Upload, Download and Synchronize carry backend-specific host-type rules (CUDA converts
        // F32 to BF16 on upload); WrittenExternally is a notification (any span, nothing to reject); everything
        // else is checked by OpChecks.
        var notHere = new HashSet<string> { "Allocate", "Upload", "Download", "Synchronize", "Dispose", "WrittenExternally" };
        var ops = typeof(IBackend).GetMethods().Where(m => !m.IsSpecialName).Select(m => m.Name).Where(n => !notHere.Contains(n)).ToHashSet();
        var covered = Cases().Select(c => c.Op).ToHashSet();
        Assert.That(ops.Except(covered), Is.Empty, "ops without a parity case");
        Assert.That(typeof(OpChecks).GetMethods().Select(m => m.Name).ToHashSet(), Is.SupersetOf(ops), "OpChecks has a method per op");
    }

    /// <summary>Calls with a zero row count and otherwise valid arguments: each must do nothing.</summary>
    private static IEnumerable<TestCaseData> ZeroRowCalls()
    {
        const int H = 8, NH = 2, HD = 4, S = 3, C = 5;
        var calls = new (string Name, Action<OpRig> Call)[]
        {
            ("Linear", r => r.B.Linear(r.F(0), r.F(0), r.F(0), r.F(5 * 4), r.F(5), 0, 4, 5, Activation.Gelu)),
            ("LinearBackward", r => r.B.LinearBackward(r.F(0), r.F(5 * 4), r.F(5), r.F(0), r.F(0), r.F(5 * 4), 0, 4, 5, false)),
            ("ActivationBackward", r => r.B.ActivationBackward(r.F(0), r.F(0), r.F(0), 0, Activation.Gelu)),
            ("EmbeddingsForward", r => r.B.EmbeddingsForward(r.F(0), r.F(0), r.F(0), r.F(0), r.I(0), r.I(0), r.F(11 * H), r.F(S * H), r.F(2 * H),
                r.F(H), r.F(H), 0, S, H, 1e-12f, new DropoutSpec(0.1f, 1, 2, 3))),
            ("EmbeddingsBackward", r => r.B.EmbeddingsBackward(r.F(11 * H), r.F(S * H), r.F(2 * H), r.F(H), r.F(H), r.F(0), r.F(0), r.F(0), r.F(0), r.F(0),
                r.I(0), r.I(0), r.F(H), 0, S, H, default)),
            ("LayerNorm", r => r.B.LayerNorm(r.F(0), r.F(0), r.F(0), r.F(0), r.F(H), r.F(H), 0, H, 1e-5f)),
            ("LayerNormBackward", r => r.B.LayerNormBackward(r.F(0), r.F(H), r.F(H), r.F(0), r.F(0), r.F(0), r.F(0), r.F(H), 0, H)),
            ("ResidualLayerNorm", r => r.B.ResidualLayerNorm(r.F(0), r.F(0), r.F(0), r.F(0), r.F(0), r.F(0), r.F(H), r.F(H), 0, H, 1e-5f, default)),
            ("ResidualLayerNormBackward", r => r.B.ResidualLayerNormBackward(r.F(0), r.F(0), r.F(H), r.F(H), r.F(0), r.F(0), r.F(0), r.F(0), r.F(H), 0, H, default)),
            ("AttentionForward", r => r.B.AttentionForward(r.F(0), r.F(0), r.F(20_000), r.F(0), r.I(0), 0, S, NH, HD, default)),
            ("AttentionForward seq 0", r => r.B.AttentionForward(r.F(0), r.F(0), r.F(20_000), r.F(0), r.I(0), 2, 0, NH, HD, default)),
            ("AttentionBackward", r => r.B.AttentionBackward(r.F(0), r.F(20_000), r.F(0), r.F(0), r.F(0), r.F(0), r.I(0), 0, S, NH, HD, default)),
            ("Dropout", r => r.B.Dropout(r.F(0), r.F(0), 0, new DropoutSpec(0.5f, 1, 2, 3))),
            ("GatherRows", r => r.B.GatherRows(r.F(0), r.F(0), r.I(0), 0, S, 2, H)),
            ("GatherRows count 0", r => r.B.GatherRows(r.F(0), r.F(2 * S * H), r.I(0), 2, S, 0, H)),
            ("ScatterAddRows", r => r.B.ScatterAddRows(r.F(0), r.F(0), r.I(0), 0, S, 2, H)),
            ("AdamW", r => r.B.AdamW(r.F(0), r.F(0), r.F(0), r.F(0), r.F(1), 0, new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 1, 1f))),
            ("AdamWDevice", r => r.B.AdamWDevice(r.F(0), r.F(0), r.F(0), r.F(0), r.F(1), r.F(StepScalars.Length), 0,
                new AdamWConstants(0.9f, 0.999f, 1e-6f, 0.01f, 1f))),
            ("SoftmaxCrossEntropy", r => r.B.SoftmaxCrossEntropy(r.F(0), r.F(3), r.F(0), r.I(0), default, 0, C, 1f)),
            ("SquaredNorm", r => r.B.SquaredNorm(r.F(1), r.F(0), 0)),
        };
        foreach (var (name, call) in calls) yield return new TestCaseData(call).SetArgDisplayNames(name);
    }

    [TestCaseSource(nameof(ZeroRowCalls))]
    public void ZeroRowsIsANoOpOnTheCpu(Action<OpRig> call)
    {
        using var cpu = new CpuBackend(1);
        using var rig = new OpRig(cpu);
        var sentinel = Enumerable.Repeat(7f, (int)OpRig.Elements).ToArray();
        cpu.Upload<float>(rig.F32Buffer, sentinel);
        call(rig);
        var after = new float[OpRig.Elements];
        cpu.Download<float>(after, rig.F32Buffer);
        // SoftmaxCrossEntropy and SquaredNorm overwrite their statistics (the first view of F32 elements
        // they took, at offset 0 after the empty views) with sums over nothing: 0.
        int changed = 0;
        for (int i = 0; i < after.Length; i++)
        {
            if (after[i] == 7f) continue;
            Assert.That(after[i], Is.EqualTo(0f), $"element {i}");
            changed++;
        }
        Assert.That(changed, Is.LessThanOrEqualTo(3), "only the statistics of a sum over no rows are written");
    }

    [TestCaseSource(nameof(ZeroRowCalls))]
    public void ZeroRowsLaunchesNothingOnCuda(Action<OpRig> call)
    {
        var device = new RecordingDevice();
        using var cuda = new CudaBackend(device, new CudaBackendOptions());
        using var rig = new OpRig(cuda);
        int launches = device.Launches, gemms = device.GemmCount;
        call(rig);
        Assert.That((device.Launches - launches, device.GemmCount - gemms), Is.EqualTo((0, 0)));
    }

    [Test]
    public void ZeroRowStatisticsAreZeroOnTheCpu()
    {
        using var cpu = new CpuBackend(1);
        using var rig = new OpRig(cpu);
        var stats = rig.F(3);
        var norm = rig.F(1);
        cpu.Upload<float>(stats, [5f, 5f, 5f]);
        cpu.Upload<float>(norm, [5f]);
        cpu.SoftmaxCrossEntropy(rig.F(0), stats, rig.F(0), rig.I(0), default, 0, 5, 1f);
        cpu.SquaredNorm(norm, rig.F(0), 0);
        var s = new float[3];
        var n = new float[1];
        cpu.Download<float>(s, stats);
        cpu.Download<float>(n, norm);
        Assert.That((s, n), Is.EqualTo((new float[3], new float[1])));
    }
}

/// <summary>CPU against the CUDA backend on a real GPU.</summary>
[TestFixture]
[Gpu]
public class OpCheckParityGpuTests : OpCheckParityTests
{
    protected override IBackend CreateCuda()
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason)) Assert.Ignore($"no GPU: {reason}");
        return backend!;
    }
}
