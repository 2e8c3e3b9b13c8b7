using Bert.Native;
using NUnit.Framework;
using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;

namespace Bert.Tests.Cuda;

/// <summary>
/// <c>[Gpu]</c>: the "Gpu" category (run these with <c>--filter "TestCategory=Gpu"</c>). On a machine
/// with no usable NVIDIA GPU the tests become explicit: a plain <c>dotnet test</c> leaves them out
/// instead of printing a skipped block for each of them, and <see cref="GpuTestsNotice"/> reports one
/// skipped test saying why. Selected by the filter, they run and skip in their own set-up with the reason.
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Method, AllowMultiple = false, Inherited = true)]
public sealed class GpuAttribute : CategoryAttribute, IApplyToTest
{
    public const string CategoryName = "Gpu";

    internal static readonly Lazy<string?> Unavailable = new(() => CudaDevice.IsAvailable(out var reason) ? null : reason);

    public GpuAttribute() : base(CategoryName) { }

    public new void ApplyToTest(Test test)
    {
        base.ApplyToTest(test);
        if (Unavailable.Value is not { } reason || test.RunState == RunState.NotRunnable) return;
        test.RunState = RunState.Explicit;
        test.Properties.Set(PropertyNames.SkipReason, reason);
    }
}

/// <summary>The one line a plain test run prints for the GPU tests it leaves out.</summary>
public class GpuTestsNotice
{
    [Test]
    public void GpuTestsRunOnlyOnAGpu()
    {
        if (GpuAttribute.Unavailable.Value is { } reason)
            Assert.Ignore($"the GPU tests (category Gpu) were left out: {reason}; on a GPU machine: dotnet test -c Release -- --filter \"TestCategory=Gpu\"");
        Assert.Pass("a GPU is available: the Gpu category runs");
    }
}
