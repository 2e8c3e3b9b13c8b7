using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using Bert.Tests.Cuda.Emulator;
using Bert.Tests.Generator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// The fused attention wired into the model (issue 12): <see cref="IBackend.PlanAttention"/> makes the generated
/// arena hold only the saved state a backend asks for, so with <see cref="CudaBackendOptions.FusedAttention"/> a
/// BERT-base model allocates the row logsumexp instead of the [B,NH,S,S] probabilities in every layer; everything
/// else (the CPU backend, fp32, other head dimensions, older devices) keeps the probabilities.
/// </summary>
[TestFixture]
public class FusedAttentionModelTests
{
    private const long Align = 64;   // the generator's arena alignment, in elements

    private static long Up(long elements) => (elements + Align - 1) / Align * Align;

    private static CudaBackend Recording(bool fused, DType type = DType.BF16, int computeMajor = 9) =>
        new(new RecordingDevice(computeMajor), new CudaBackendOptions { ComputeType = type, FusedAttention = fused });

    // BERT-base phase 1 (B 256, S 128, P 20) and phase 2 (B 32, S 512, P 80).
    [TestCase(256, 128, 20)]
    [TestCase(32, 512, 80)]
    public void FusedAttentionShrinksTheBaseArenaByTheProbabilities(int batch, int seq, int predictions)
    {
        var config = ModelPresets.Base;
        using var unfused = Recording(fused: false);
        using var fused = Recording(fused: true);
        Assert.That(unfused.PlanAttention(batch, seq, config.Heads, config.HeadDim).Fused, Is.False);
        var plan = fused.PlanAttention(batch, seq, config.Heads, config.HeadDim);
        Assert.That(plan.Fused, Is.True);
        long lseBf16 = 2L * batch * config.Heads * seq;   // F32 [B·NH·S] in bf16 elements
        Assert.That(plan.SavedLength, Is.EqualTo(lseBf16));

        using var big = new BertForPreTraining(unfused, batch, seq, predictions, config);
        using var small = new BertForPreTraining(fused, batch, seq, predictions, config);
        long probs = AttentionPlan.ProbabilitiesLength(batch, seq, config.Heads);
        long savedPerLayer = Up(probs) - Up(lseBf16);
        Assert.That(big.Arena.Length - small.Arena.Length, Is.EqualTo(config.Layers * savedPerLayer),
            "the arena is smaller by L × (probabilities − logsumexp)");
        Assert.That(small.Arena.Length, Is.EqualTo(BertForPreTraining.PlanArena(fused, config, batch, seq, predictions).Compute));
        Assert.That(small.F32Arena.Length, Is.EqualTo(big.F32Arena.Length));
        // The shared workspace: 7·B·S·H + B·NH·S² unfused, two bf16 staging slots of B·S·H fused.
        long tokensHidden = (long)batch * seq * config.Hidden;
        Assert.That(big.Workspace.Length, Is.EqualTo(7 * tokensHidden + probs));
        Assert.That(small.Workspace.Length, Is.EqualTo(2 * tokensHidden));

        long savedBytes = (big.Arena.Length - small.Arena.Length + big.Workspace.Length - small.Workspace.Length) * 2;
        TestContext.Progress.WriteLine($"BERT-base B{batch} S{seq} bf16: arena {big.Arena.Length * 2 / 1e9:F2} → {small.Arena.Length * 2 / 1e9:F2} GB, " +
                                       $"workspace {big.Workspace.Length * 2 / 1e9:F2} → {small.Workspace.Length * 2 / 1e9:F2} GB; {savedBytes / 1e9:F2} GB saved");
    }

    /// <summary>A full training step of the fused BERT-base model on the recording device: every launch and GEMM within
    /// its allocation (so the arena really holds what the fused kernels write and read), the flash kernels launched.</summary>
    [Test]
    public void FusedBaseModelStepLaunchesWithinItsArena()
    {
        const int batch = 32, seq = 512, predictions = 80;
        var device = new RecordingDevice();
        using var cuda = new CudaBackend(device, new CudaBackendOptions { ComputeType = DType.BF16, FusedAttention = true, Profile = true });
        using var model = new BertForPreTraining(cuda, batch, seq, predictions, ModelPresets.Base);
        using var data = new DeviceBatch(cuda, batch, seq, predictions);
        var bertBatch = data.Upload(Bert.Cli.Commands.BenchCommand.SyntheticBatch(batch, seq, predictions, 30522, 7), 0, batch, batch * predictions, 1);
        model.Training = true;
        cuda.CollectOpTimings();
        model.Forward(bertBatch);
        model.Backward(bertBatch);
        var ops = cuda.CollectOpTimings();
        Assert.That(ops["AttentionForward"].Calls, Is.EqualTo(12));
        Assert.That(ops["AttentionBackward"].Calls, Is.EqualTo(12));
        Assert.That(device.KernelNames, Does.Contain(KernelCatalog.FlashAttentionForward.Name)
            .And.Contain(KernelCatalog.FlashAttentionBackwardDkDv.Name).And.Contain(KernelCatalog.FlashAttentionBackwardDq.Name));
        Assert.That(device.KernelNames, Does.Not.Contain(KernelCatalog.AttentionSoftmaxForward.Name), "no probabilities are computed");
    }

    [Test]
    public void ProfilingBackendNamesTheFusedOps()
    {
        using var fused = Recording(fused: true);
        using var profiler = new ProfilingBackend(fused);
        var config = ModelPresets.Tiny;   // H 128, NH 2: head dimension 64
        using var model = new BertForPreTraining(profiler, 2, 64, 5, config);
        using var data = new DeviceBatch(profiler, 2, 64, 5);
        var batch = data.Upload(Bert.Cli.Commands.BenchCommand.SyntheticBatch(2, 64, 5, config.VocabSize, 3), 0, 2, 10, 1);
        model.Forward(batch);
        model.Backward(batch);
        var names = profiler.Breakdown.Select(b => b.Op).ToList();
        Assert.That(names, Does.Contain("AttentionForward (fused)").And.Contain("AttentionBackward (fused)"));
        Assert.That(names, Does.Not.Contain("AttentionForward"));
    }

    /// <summary>Where the fused kernels do not apply, every backend plans the probabilities, so the arena (and the CPU
    /// job, bit for bit) is what it was before PlanAttention existed.</summary>
    [Test]
    public void EveryOtherPathKeepsTheProbabilities()
    {
        var tiny = ModelPresets.Tiny;                                       // head dimension 64
        var narrowHeads = tiny with { Hidden = 128, Heads = 4 };          // head dimension 32
        using var cpu = new CpuBackend(1);
        using var off = Recording(fused: false);
        using var f32 = Recording(fused: true, DType.F32);
        using var on = Recording(fused: true);
        long Probs(int b, int s, BertConfig c) => AttentionPlan.ProbabilitiesLength(b, s, c.Heads);
        foreach (var (backend, config, why) in new (IBackend, BertConfig, string)[]
                 {
                     (cpu, tiny, "CPU"), (off, tiny, "option off"), (f32, tiny, "fp32"), (on, narrowHeads, "head dim 32"),
                 })
        {
            var plan = backend.PlanAttention(3, 77, config.Heads, config.HeadDim);
            Assert.That(plan.Fused, Is.False, why);
            Assert.That(plan.SavedLength, Is.EqualTo(Probs(3, 77, config)), why);
        }
        Assert.That(BertForPreTraining.PlanArena(on, narrowHeads, 3, 77, 5), Is.EqualTo(BertForPreTraining.PlanArena(cpu, narrowHeads, 3, 77, 5)));
        Assert.That(BertForPreTraining.PlanArena(off, tiny, 3, 77, 5), Is.EqualTo(BertForPreTraining.PlanArena(cpu, tiny, 3, 77, 5)));
        Assert.That(BertForPreTraining.PlanArena(on, tiny, 3, 77, 5).Compute, Is.LessThan(BertForPreTraining.PlanArena(cpu, tiny, 3, 77, 5).Compute));
        Assert.That(on.FusedAttentionUnavailable(32), Does.Contain("head dimension is 32"));
        Assert.That(f32.FusedAttentionUnavailable(64), Does.Contain("F32"));
        // A device below compute 8.0 runs only F32 (the backend refuses BF16 there), so F32 is what it reports.
        using var turing = Recording(fused: true, DType.F32, computeMajor: 7);
        Assert.That(turing.PlanAttention(3, 77, tiny.Heads, tiny.HeadDim).Fused, Is.False);
        Assert.That(turing.FusedAttentionUnavailable(64), Does.Contain("F32"));
        Assert.That(on.FusedAttentionUnavailable(64), Is.Null);
    }

    /// <summary>The generated passes with a fused plan (a small saved state, the context read by the backward):
    /// every view has its op's length and every element read was written before, for every head combination.</summary>
    [Test]
    public void GeneratedPassesReadOnlyWhatTheFusedPlanSaved()
    {
        var backend = new PlanCheckingBackend(DType.BF16, fusedAttention: true);
        using var model = new BertForPreTraining(backend, 3, 7, 2, ModelPresets.Tiny with { VocabSize = 99 });
        var unfused = new PlanCheckingBackend(DType.BF16);
        using var reference = new BertForPreTraining(unfused, 3, 7, 2, ModelPresets.Tiny with { VocabSize = 99 });
        long probs = AttentionPlan.ProbabilitiesLength(3, 7, 2), lse = 2L * 3 * 2 * 7;
        Assert.That(unfused.Length("activations") - backend.Length("activations"), Is.EqualTo(2 * (Up(probs) - Up(lse))));
        using var data = new DeviceBatch(backend, 3, 7, 2);
        var batch = data.Upload(Bert.Cli.Commands.BenchCommand.SyntheticBatch(3, 7, 2, 99, 5), 0, 3, 6, 1);
        backend.Phase = "forward";
        model.Training = true;
        model.Forward(batch);
        backend.Phase = "backward";
        model.Backward(batch);
        var backward = backend.Ops.Where(o => o.Name == nameof(IBackend.AttentionBackward)).ToList();
        Assert.That(backward, Has.Count.EqualTo(2));
    }

    /// <summary>One training step of a small model (head dimension 64, padded sequences, dropout) on the CPU emulator
    /// with the fused attention against the same step unfused: loss and every parameter gradient agree within bf16
    /// rounding, so the model hands the fused backward the right context and logsumexp.</summary>
    [Test]
    public void FusedModelStepMatchesTheUnfusedOnTheEmulator() => FusedStepMatchesUnfused(fused =>
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return new CudaBackend(device!, new CudaBackendOptions { ComputeType = DType.BF16, FusedAttention = fused });
    }, seq: 64);

    /// <summary>The same on a GPU, at S 128 (two key tiles).</summary>
    [Test]
    [Gpu]
    public void FusedModelStepMatchesTheUnfusedOnTheGpu() => FusedStepMatchesUnfused(fused =>
    {
        if (!CudaBackend.TryCreate(out var gpu, out var reason, new CudaBackendOptions { ComputeType = DType.BF16, FusedAttention = fused }))
            Assert.Ignore(reason);
        return gpu!;
    }, seq: 128);

    private static void FusedStepMatchesUnfused(Func<bool, CudaBackend> create, int seq)
    {
        var config = ModelPresets.Tiny with { Layers = 1, Intermediate = 256, VocabSize = 99, MaxPositions = seq };
        const int batch = 2, predictions = 5;
        var host = Bert.Cli.Commands.BenchCommand.SyntheticBatch(batch, seq, predictions, config.VocabSize, 11);
        for (int s = seq - 14; s < seq; s++) host.AttentionMask[seq + s] = 0;   // the second sequence is padded

        (float Loss, float[] Gradients) Step(bool fused)
        {
            using var cuda = create(fused);
            Assert.That(cuda.PlanAttention(batch, seq, config.Heads, config.HeadDim).Fused, Is.EqualTo(fused));
            using var model = new BertForPreTraining(cuda, batch, seq, predictions, config);
            model.InitializeParameters(5);
            model.Seed = 9;
            model.DropoutStep = 1;
            model.Training = true;
            using var data = new DeviceBatch(cuda, batch, seq, predictions);
            var b = data.Upload(host, 0, batch, batch * predictions, 1);
            model.ZeroGradients();
            model.Forward(b);
            model.Backward(b);
            var metrics = new float[MetricSlot.Length];
            model.ReadMetrics(metrics);
            var grads = new float[model.ParameterTotal];
            cuda.Download<float>(grads, model.Gradients);
            return (metrics[MetricSlot.MlmLoss], grads);
        }

        var (lossUnfused, gradUnfused) = Step(fused: false);
        var (lossFused, gradFused) = Step(fused: true);
        Assert.That(lossFused, Is.EqualTo(lossUnfused).Within(2e-3), "MLM loss");
        using var cpu = new CpuBackend(1);
        using var layout = new BertForPreTraining(cpu, 1, 8, 1, config);
        foreach (var p in layout.ParameterTable)
        {
            double diff = 0, size = 0;
            for (long i = p.Offset; i < p.Offset + p.Count; i++)
            {
                diff = Math.Max(diff, Math.Abs(gradFused[i] - gradUnfused[i]));
                size = Math.Max(size, Math.Abs(gradUnfused[i]));
            }
            Assert.That(diff, Is.LessThanOrEqualTo(5e-2 * size + 1e-6), $"{p.Name}: max |Δ| {diff:G3} against max {size:G3}");
        }
    }
}
