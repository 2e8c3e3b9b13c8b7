using System.Xml.Linq;
using Bert.Tests.Cuda;
using NUnit.Framework;

namespace Bert.Tests.Reliability;

/// <summary>Issue 17: without a GPU, a plain `dotnet test` leaves the Gpu category out (one skipped notice)
/// instead of printing a six-line skipped block per GPU test; --filter still selects them.</summary>
public class GpuTestSelectionTests
{
    private static readonly Func<string, string?> NoEnvironment = _ => null;

    [Test]
    public void TheRunSettingsLeaveOutExactlyTheGpuCategory()
    {
        string file = Path.Combine(AppContext.BaseDirectory, GpuTestsHook.RunSettingsFileName);
        Assert.That(File.Exists(file), Is.True, $"{file} is copied next to the test assembly");
        var where = XDocument.Load(file).Root?.Element("NUnit")?.Element("Where")?.Value;
        Assert.That(where, Is.EqualTo($"cat != {GpuAttribute.CategoryName}"));
    }

    [Test]
    public void WithoutAGpuAPlainRunUsesThem()
    {
        string? file = GpuTestsHook.RunSettingsFor([], NoEnvironment, "no NVIDIA GPU available: test", AppContext.BaseDirectory);
        Assert.That(file, Is.EqualTo(Path.Combine(AppContext.BaseDirectory, GpuTestsHook.RunSettingsFileName)));
        // --filter does not stop the hook: the adapter itself prefers the filter over Where.
        Assert.That(GpuTestsHook.RunSettingsFor(["--filter", "TestCategory=Gpu"], NoEnvironment, "no GPU", AppContext.BaseDirectory), Is.EqualTo(file));
    }

    [TestCase("--settings", "my.runsettings")]
    [TestCase("--settings=my.runsettings")]
    [TestCase("--SETTINGS:my.runsettings")]
    public void RunSettingsOnTheCommandLineWin(params string[] args) =>
        Assert.That(GpuTestsHook.RunSettingsFor(args, NoEnvironment, "no GPU", AppContext.BaseDirectory), Is.Null);

    [TestCase(GpuTestsHook.RunSettingsFileVariable)]
    [TestCase(GpuTestsHook.RunSettingsXmlVariable)]
    public void RunSettingsInTheEnvironmentWin(string variable) =>
        Assert.That(GpuTestsHook.RunSettingsFor([], v => v == variable ? "x" : null, "no GPU", AppContext.BaseDirectory), Is.Null);

    [Test]
    public void WithAGpuNothingIsLeftOut() =>
        Assert.That(GpuTestsHook.RunSettingsFor([], NoEnvironment, unavailable: null, AppContext.BaseDirectory), Is.Null);

    [Test]
    public void AMissingFileLeavesTheRunAsItIs() =>
        Assert.That(GpuTestsHook.RunSettingsFor([], NoEnvironment, "no GPU", Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid())), Is.Null);
}
