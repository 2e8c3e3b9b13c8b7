using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Bert.Runtime;
using Bert.Runtime.Cpu;

namespace Bert.Bench;

/// <summary>
/// A 1024³ fp32 GEMM through CpuBackend.Linear (output[N,O] = input[N,K]·weight[O,K]ᵀ, plus the
/// epilogue variants) against cblas_sgemm called directly on the same buffers and threads; the
/// target is Linear ≥ 90% of OpenBLAS. The managed GEMM is listed for reference.
/// Run: dotnet run -c Release --project bench/Bert.Bench -- --filter '*CpuGemm*' --job short
/// </summary>
[Config(typeof(GflopsConfig))]
public unsafe class CpuGemmBenchmarks
{
    public const int Size = 1024;

    private CpuBackend _openBlas = null!;
    private CpuBackend _managed = null!;
    private DeviceBuffer _input = null!, _weight = null!, _bias = null!, _output = null!, _pre = null!;

    [GlobalSetup]
    public void Setup()
    {
        if (!CpuBackend.OpenBlasAvailable) throw new InvalidOperationException("this benchmark compares against OpenBLAS, which does not load");
        _openBlas = new CpuBackend(0, CpuGemmKind.OpenBlas);
        _managed = new CpuBackend(0, CpuGemmKind.Managed);
        var rng = new Random(1);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        _input = Upload(Random(Size * Size));
        _weight = Upload(Random(Size * Size));
        _bias = Upload(Random(Size));
        _output = _openBlas.Allocate(Size * Size, DType.F32, "output");
        _pre = _openBlas.Allocate(Size * Size, DType.F32, "pre");
        OpenBlas.SetThreads(_openBlas.Threads);
        Console.WriteLine($"// {_openBlas.Name}; {OpenBlas.Config}");
    }

    private DeviceBuffer Upload(float[] data)
    {
        var buffer = _openBlas.Allocate(data.Length, DType.F32, "data");
        _openBlas.Upload<float>(buffer, data);
        return buffer;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var b in new[] { _input, _weight, _bias, _output, _pre }) b.Dispose();
        _openBlas.Dispose();
        _managed.Dispose();
    }

    [Benchmark(Baseline = true, Description = "cblas_sgemm direct")]
    public void CblasDirect() =>
        OpenBlas.cblas_sgemm(101, 111, 112, Size, Size, Size, 1f, (float*)_input.View.Address, Size,
            (float*)_weight.View.Address, Size, 0f, (float*)_output.View.Address, Size);

    [Benchmark(Description = "Linear")]
    public void Linear() =>
        _openBlas.Linear(_output, TensorRef.Null, _input, _weight, TensorRef.Null, Size, Size, Size, Activation.None);

    [Benchmark(Description = "Linear + bias + GELU")]
    public void LinearBiasGelu() =>
        _openBlas.Linear(_output, _pre, _input, _weight, _bias, Size, Size, Size, Activation.Gelu);

    [Benchmark(Description = "Linear (managed GEMM)")]
    public void LinearManaged() =>
        _managed.Linear(_output, TensorRef.Null, _input, _weight, TensorRef.Null, Size, Size, Size, Activation.None);

    private sealed class GflopsConfig : ManualConfig
    {
        public GflopsConfig() => AddColumn(StatisticColumn.Median, new GflopsColumn(2.0 * Size * Size * Size));
    }
}

/// <summary>Throughput column: floating-point operations per benchmark call divided by the mean time.</summary>
public sealed class GflopsColumn(double flopsPerCall) : IColumn
{
    public string Id => "GFLOP/s";
    public string ColumnName => "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Billions of floating-point operations per second (2·M·N·K / median time)";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var statistics = summary[benchmarkCase]?.ResultStatistics;
        // From the median (robust to the other load of a shared machine); it is in nanoseconds,
        // so flops per nanosecond is GFLOP/s.
        return statistics is null || statistics.Median <= 0 ? "NA" : (flopsPerCall / statistics.Median).ToString("F1");
    }
}
