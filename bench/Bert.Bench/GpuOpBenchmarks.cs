using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Bert.Native;
using Bert.Runtime;

namespace Bert.Bench;

/// <summary>
/// Every op of one BERT-base encoder layer, the MLM loss and AdamW on the GPU at training sizes
/// (batch 256, sequence 128: 32,768 tokens, hidden 768, 12 heads, intermediate 3072; the MLM loss over
/// 256·20 rows of 30,522 classes; AdamW over BERT-base's 110M parameters), in bf16 (the training
/// default) and fp32. Each call synchronizes the stream, so a sample is the op's wall time; the
/// Monitoring strategy times every call (no pilot stage averaging many calls into one). The extra
/// columns divide the op's floating-point operations and its minimal device-memory traffic (each input
/// read once, each output written once) by the median time. Exports: GitHub markdown and JSON.
/// Run on a GPU machine: dotnet Bert.Bench.dll --filter '*GpuOpBenchmarks*' (in-process, so the .NET
/// runtime suffices; bench/gpu/run-all.sh has it as the "ops" stage). Without a GPU every case reports
/// the reason and no numbers.
/// </summary>
[Config(typeof(GpuOpConfig))]
public class GpuOpBenchmarks
{
    public const int Batch = 256, Seq = 128, Hidden = 768, Heads = 12, Intermediate = 3072, Predictions = 20, Vocab = 30522;
    public const long Parameters = 110_106_428;
    private const long Tokens = (long)Batch * Seq;

    [Params("bf16", "f32")]
    public string Precision { get; set; } = "bf16";

    private CudaBackend _gpu = null!;
    private readonly List<DeviceBuffer> _buffers = [];
    private TensorRef _x, _qkv, _wQkv, _bQkv, _context, _probs, _workspace, _mask, _dContext, _dQkv;
    private TensorRef _inter, _preInter, _wInter, _bInter, _dInter, _dX, _dWInter, _dBInter;
    private TensorRef _residual, _sum, _out, _mean, _rstd, _gamma, _beta, _dGamma, _dBeta, _dResidual, _dBranch;
    private TensorRef _logits, _dLogits, _labels, _weights, _stats;
    private TensorRef _param, _grad, _m, _v, _norm;
    private readonly DropoutSpec _dropout = new(0.1f, 1234, 1, 7);
    private int _step;

    [GlobalSetup]
    public void Setup()
    {
        var type = Precision == "f32" ? DType.F32 : DType.BF16;
        if (!CudaBackend.TryCreate(out var gpu, out var reason, new CudaBackendOptions { ComputeType = type }))
            throw new InvalidOperationException($"GpuOpBenchmarks need a GPU: {reason}");
        _gpu = gpu!;
        var rng = new Random(5);
        TensorRef Act(long n) => Filled(n, type, rng);
        TensorRef F32(long n) => Filled(n, DType.F32, rng);

        _x = Act(Tokens * Hidden);
        _qkv = Act(Tokens * 3 * Hidden);
        _wQkv = Shadowed(3L * Hidden * Hidden, rng);
        _bQkv = F32(3 * Hidden);
        _context = Act(Tokens * Hidden);
        _probs = Act((long)Batch * Heads * Seq * Seq);
        _workspace = Act(_gpu.PlanAttention(Batch, Seq, Heads, Hidden / Heads).WorkspaceLength);
        _mask = Alloc(Tokens, DType.I32);
        _gpu.Upload<int>(_mask, Enumerable.Repeat(1, (int)Tokens).ToArray());
        _dContext = Act(Tokens * Hidden);
        _dQkv = Act(Tokens * 3 * Hidden);
        _inter = Act(Tokens * Intermediate);
        _preInter = Act(Tokens * Intermediate);
        _wInter = Shadowed((long)Intermediate * Hidden, rng);
        _bInter = F32(Intermediate);
        _dInter = Act(Tokens * Intermediate);
        _dX = Act(Tokens * Hidden);
        _dWInter = F32((long)Intermediate * Hidden);
        _dBInter = F32(Intermediate);
        _residual = Act(Tokens * Hidden);
        _sum = Act(Tokens * Hidden);
        _out = Act(Tokens * Hidden);
        _mean = F32(Tokens);
        _rstd = F32(Tokens);
        _gamma = F32(Hidden);
        _beta = F32(Hidden);
        _dGamma = F32(Hidden);
        _dBeta = F32(Hidden);
        _dResidual = Act(Tokens * Hidden);
        _dBranch = Act(Tokens * Hidden);
        long rows = (long)Batch * Predictions;
        _logits = F32(rows * Vocab);
        _dLogits = F32(rows * Vocab);
        _labels = Alloc(rows, DType.I32);
        _gpu.Upload<int>(_labels, Enumerable.Range(0, (int)rows).Select(i => (i * 7919) % Vocab).ToArray());
        _weights = F32(rows);
        _gpu.Upload<float>(_weights, Enumerable.Repeat(1f, (int)rows).ToArray());
        _stats = Alloc(3, DType.F32);
        _param = Shadowed(Parameters, rng);
        _grad = F32(Parameters);
        _m = F32(Parameters);
        _v = Alloc(Parameters, DType.F32);
        _gpu.Zero(_v);
        _norm = Alloc(1, DType.F32);
        _gpu.Upload<float>(_norm, [1f]);
        // Warm the kernel cache and cuBLAS heuristics so no sample includes compilation.
        _gpu.ResidualLayerNorm(_out, _sum, _mean, _rstd, _residual, _x, _gamma, _beta, (int)Tokens, Hidden, 1e-12f, _dropout);
        _gpu.Synchronize();
    }

    private TensorRef Alloc(long n, DType type)
    {
        var b = _gpu.Allocate(n, type, "bench");
        _buffers.Add(b);
        return b;
    }

    /// <summary>A weight-like F32 tensor with the "parameters" label, so bf16 GEMMs read its bf16 shadow.</summary>
    private TensorRef Shadowed(long n, Random rng)
    {
        var b = _gpu.Allocate(n, DType.F32, "parameters");
        _buffers.Add(b);
        Fill(b, DType.F32, rng, 0.02f);
        return b;
    }

    private TensorRef Filled(long n, DType type, Random rng)
    {
        var t = Alloc(n, type);
        Fill(t, type, rng, 1f);
        return t;
    }

    /// <summary>Random values (never zeros: they would hide unwritten outputs and run faster than data).</summary>
    private void Fill(TensorRef t, DType type, Random rng, float scale)
    {
        const int chunk = 1 << 22;
        var host = new float[Math.Min(chunk, t.Length)];
        for (long o = 0; o < t.Length; o += host.Length)
        {
            int n = (int)Math.Min(host.Length, t.Length - o);
            for (int k = 0; k < n; k++) host[k] = scale * (float)(rng.NextDouble() * 2 - 1);
            _gpu.Upload<float>(t.Slice(o, n), host.AsSpan(0, n));
        }
    }

    [Benchmark(Description = "Linear 768->2304 (QKV)")]
    public void LinearQkv()
    {
        _gpu.Linear(_qkv, TensorRef.Null, _x, _wQkv, _bQkv, (int)Tokens, Hidden, 3 * Hidden, Activation.None);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "Linear 768->3072 + GELU")]
    public void LinearIntermediateGelu()
    {
        _gpu.Linear(_inter, _preInter, _x, _wInter, _bInter, (int)Tokens, Hidden, Intermediate, Activation.Gelu);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "LinearBackward 768->3072 (dX, dW, db)")]
    public void LinearIntermediateBackward()
    {
        _gpu.LinearBackward(_dX, _dWInter, _dBInter, _dInter, _x, _wInter, (int)Tokens, Hidden, Intermediate, false);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "GELU backward")]
    public void GeluBackward()
    {
        _gpu.ActivationBackward(_dInter, _dInter, _preInter, Tokens * Intermediate, Activation.Gelu);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "Attention forward (dropout 0.1)")]
    public void AttentionForward()
    {
        _gpu.AttentionForward(_context, _probs, _workspace, _qkv, _mask, Batch, Seq, Heads, Hidden / Heads, _dropout);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "Attention backward (dropout 0.1)")]
    public void AttentionBackward()
    {
        _gpu.AttentionBackward(_dQkv, _workspace, _dContext, _qkv, _context, _probs, _mask, Batch, Seq, Heads, Hidden / Heads, _dropout);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "Residual + dropout + LayerNorm")]
    public void ResidualLayerNorm()
    {
        _gpu.ResidualLayerNorm(_out, _sum, _mean, _rstd, _residual, _x, _gamma, _beta, (int)Tokens, Hidden, 1e-12f, _dropout);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "Residual LayerNorm backward")]
    public void ResidualLayerNormBackward()
    {
        _gpu.ResidualLayerNormBackward(_dResidual, _dBranch, _dGamma, _dBeta, _out, _sum, _mean, _rstd, _gamma, (int)Tokens, Hidden, _dropout);
        _gpu.Synchronize();
    }

    [Benchmark(Description = "MLM softmax cross-entropy (5120 x 30522)")]
    public void MlmSoftmaxCrossEntropy()
    {
        _gpu.SoftmaxCrossEntropy(_dLogits, _stats, _logits, _labels, _weights, Batch * Predictions, Vocab, 1f / (Batch * Predictions));
        _gpu.Synchronize();
    }

    [Benchmark(Description = "AdamW over 110M parameters")]
    public void AdamWStep()
    {
        _gpu.AdamW(_param, _grad, _m, _v, _norm, Parameters, new Bert.Runtime.AdamWStep(1e-4f, 0.9f, 0.999f, 1e-6f, 0.01f, ++_step, 1f));
        _gpu.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        _gpu?.Dispose();
    }
}

/// <summary>Monitoring strategy (every call timed), TFLOP/s and GB/s columns, markdown and JSON exports.</summary>
public sealed class GpuOpConfig : ManualConfig
{
    public GpuOpConfig()
    {
        // In-process: the GPU machine has the .NET runtime but no SDK to build a child benchmark process.
        AddJob(Job.Default.WithStrategy(RunStrategy.Monitoring).WithWarmupCount(3).WithIterationCount(30)
            .WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance));
        AddColumn(StatisticColumn.Median, new WorkColumn(tflops: true), new WorkColumn(tflops: false));
        AddExporter(MarkdownExporter.GitHub, JsonExporter.Full);
    }
}

/// <summary>TFLOP/s or GB/s of a <see cref="GpuOpBenchmarks"/> case: its work (<see cref="GpuOpWork"/>) over the median time.</summary>
public sealed class WorkColumn(bool tflops) : IColumn
{
    public string Id => tflops ? "TFLOP/s" : "GB/s";
    public string ColumnName => Id;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => tflops ? 0 : 1;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => tflops
        ? "floating-point operations of the op / median time (10^12 per second)"
        : "minimal device-memory traffic of the op (inputs read once, outputs written once) / median time";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var statistics = summary[benchmarkCase]?.ResultStatistics;
        string method = benchmarkCase.Descriptor.WorkloadMethod.Name;
        string precision = benchmarkCase.Parameters["Precision"] as string ?? "bf16";
        // Columns are computed in the host process, which never runs the setup: the work comes from the sizes.
        if (statistics is null || statistics.Median <= 0 || !GpuOpWork.For(precision).TryGetValue(method, out var w))
            return "NA";
        double perNs = (tflops ? w.Flops : w.Bytes) / statistics.Median;  // per nanosecond: GFLOP/s or GB/s
        return tflops ? (w.Flops == 0 ? "-" : (perNs / 1e3).ToString("F1")) : perNs.ToString("F0");
    }
}

/// <summary>Floating-point operations and minimal device-memory bytes per call of each GPU op benchmark.</summary>
internal static class GpuOpWork
{
    public static Dictionary<string, (double Flops, double Bytes)> For(string precision)
    {
        int e = precision == "f32" ? 4 : 2;
        double t = (double)GpuOpBenchmarks.Batch * GpuOpBenchmarks.Seq, h = GpuOpBenchmarks.Hidden, i = GpuOpBenchmarks.Intermediate;
        double s = GpuOpBenchmarks.Seq, z = (double)GpuOpBenchmarks.Batch * GpuOpBenchmarks.Heads;
        double attention = 4 * z * s * s * (GpuOpBenchmarks.Hidden / GpuOpBenchmarks.Heads);
        double rows = (double)GpuOpBenchmarks.Batch * GpuOpBenchmarks.Predictions;
        return new()
        {
            [nameof(GpuOpBenchmarks.LinearQkv)] = (2 * t * h * 3 * h, e * (t * h + 3 * h * h + t * 3 * h)),
            [nameof(GpuOpBenchmarks.LinearIntermediateGelu)] = (2 * t * h * i, e * (t * h + h * i + 2 * t * i)),
            [nameof(GpuOpBenchmarks.LinearIntermediateBackward)] = (4 * t * h * i, e * (t * i + t * h + h * i + t * h) + 4 * (h * i + i)),
            [nameof(GpuOpBenchmarks.GeluBackward)] = (0, e * 3 * t * i),
            [nameof(GpuOpBenchmarks.AttentionForward)] = (attention, e * (3 * t * h + 2 * z * s * s + t * h)),
            [nameof(GpuOpBenchmarks.AttentionBackward)] = (2 * attention, e * (3 * t * h + z * s * s + t * h + 3 * t * h)),
            [nameof(GpuOpBenchmarks.ResidualLayerNorm)] = (0, e * 4 * t * h + 8 * t),
            [nameof(GpuOpBenchmarks.ResidualLayerNormBackward)] = (0, e * 4 * t * h + 8 * t + 8 * h),
            [nameof(GpuOpBenchmarks.MlmSoftmaxCrossEntropy)] = (0, 4 * 2 * rows * GpuOpBenchmarks.Vocab),
            [nameof(GpuOpBenchmarks.AdamWStep)] = (0, GpuOpBenchmarks.Parameters * (4.0 * 4 + 4 * 3 + (e == 2 ? 2 : 0))),
        };
    }
}
