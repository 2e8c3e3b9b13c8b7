using Bert.Native;
using Bert.Runtime;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// The whole CUDA backend (launchers, grids, argument marshalling, cuBLAS call mapping, kernels) run on
/// the CPU emulator and compared op by op with the fp64 reference backend, through the same KernelCheck
/// cases `bert check-kernels` runs on a GPU. Scratch buffers are tiny here so the chunked paths run.
/// </summary>
[TestFixture(DType.F32, false)]
[TestFixture(DType.F32, true)]
[TestFixture(DType.BF16, false)]
[TestFixture(DType.BF16, true)]
[NonParallelizable]
public class EmulatedCudaBackendTests(DType computeType, bool useLt)
{
    private EmulatedDevice? _device;
    private CudaBackend? _cuda;
    private Dictionary<string, OpCheckResult> _results = [];

    public static IEnumerable<string> F32Cases => KernelCheck.CaseNames(new KernelCheckOptions(), DType.F32);

    [OneTimeSetUp]
    public void RunAllCases()
    {
        if (!EmulatedDevice.TryStart(out _device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        _cuda = new CudaBackend(_device!, new CudaBackendOptions
        {
            ComputeType = computeType,
            UseCublasLt = useLt,
            ConversionScratchElements = 1024,
            ReductionScratchElements = 4096,
        });
        using var reference = new ReferenceBackend();
        var results = KernelCheck.Run(reference, _cuda, new KernelCheckOptions { TimingRepeats = 0 });
        _results = results.ToDictionary(r => $"{r.Op}/{r.Case}");
        TestContext.Progress.WriteLine($"emulated CUDA ({computeType}{(useLt ? ", cuBLASLt" : "")}) vs reference:");
        TestContext.Progress.Write(KernelCheck.Format(results));
        TestContext.Progress.WriteLine("emulator time by command: " + string.Join(", ",
            _device!.CommandSeconds.OrderByDescending(kv => kv.Value).Take(8).Select(kv => $"{kv.Key} {kv.Value:F1}s")));
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _cuda?.Dispose();
    }

    [TestCaseSource(nameof(F32Cases))]
    public void OpMatchesTheReference(string name)
    {
        Assert.That(_results, Does.ContainKey(name), "the case ran");
        var r = _results[name];
        Assert.That(r.Error, Is.Null, name);
        Assert.That(r.MaxRelError, Is.LessThanOrEqualTo(r.Tolerance), $"{name}: worst at {r.WorstOutput}");
    }

    [Test]
    public void LtEpiloguesAreUsedWhenEnabled()
    {
        if (!useLt) Assert.Ignore("only the cuBLASLt fixtures");
        Assert.That(_device!.LtCalls, Is.GreaterThan(0));
    }
}
