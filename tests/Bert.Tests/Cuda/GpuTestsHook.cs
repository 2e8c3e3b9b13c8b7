using Bert.Native;
using Microsoft.Testing.Platform.Builder;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// Keeps the tests of category Gpu out of a plain run on a machine without a usable NVIDIA GPU, so that
/// <c>dotnet test</c> does not print a six-line "skipped" block for each of them (the SDK's reporter shows
/// every skipped test with its reason, its assembly and the reason again as standard output).
/// Registered as a Microsoft.Testing.Platform builder hook (Bert.Tests.csproj), it runs before the NUnit
/// bridge reads its run settings. Without a GPU, and unless the command line or the environment already
/// names run settings, it points the bridge at <c>no-gpu.runsettings</c>, whose NUnit <c>Where</c>
/// (<c>cat != Gpu</c>) leaves those tests out. The adapter ignores <c>Where</c> when <c>--filter</c> is given,
/// so <c>--filter "TestCategory=Gpu"</c> still selects them (and each then skips with its reason).
/// <see cref="GpuTestsNotice"/> is the one skipped test that says they were left out and why.
/// </summary>
public static class GpuTestsHook
{
    /// <summary>Read by Microsoft.Testing.Extensions.VSTestBridge when no <c>--settings</c> is given.</summary>
    internal const string RunSettingsFileVariable = "TESTINGPLATFORM_VSTESTBRIDGE_RUNSETTINGS_FILE";
    internal const string RunSettingsXmlVariable = "TESTINGPLATFORM_EXPERIMENTAL_VSTEST_RUNSETTINGS";
    internal const string RunSettingsFileName = "no-gpu.runsettings";

    /// <summary>Why the machine has no usable GPU; null when it has one.</summary>
    internal static readonly Lazy<string?> Unavailable = new(() => CudaDevice.IsAvailable(out var reason) ? null : reason);

    /// <summary>True when this process set the run settings that leave the Gpu category out.</summary>
    internal static bool LeftOut { get; private set; }

    public static void AddExtensions(ITestApplicationBuilder builder, string[] args)
    {
        _ = builder;
        if (RunSettingsFor(args, Environment.GetEnvironmentVariable, Unavailable.Value, AppContext.BaseDirectory) is not { } file) return;
        Environment.SetEnvironmentVariable(RunSettingsFileVariable, file);
        LeftOut = true;
    }

    /// <summary>The run settings file to use, or null to leave the run as it is: a GPU is available
    /// (<paramref name="unavailable"/> is null), the command line has --settings, the environment names run
    /// settings already, or the file is missing from <paramref name="baseDirectory"/>.</summary>
    internal static string? RunSettingsFor(string[] args, Func<string, string?> environment, string? unavailable, string baseDirectory)
    {
        if (unavailable is null) return null;
        if (args.Any(a => a.Equals("--settings", StringComparison.OrdinalIgnoreCase) || a.StartsWith("--settings=", StringComparison.OrdinalIgnoreCase)
                          || a.StartsWith("--settings:", StringComparison.OrdinalIgnoreCase)))
            return null;
        if (!string.IsNullOrEmpty(environment(RunSettingsFileVariable)) || !string.IsNullOrEmpty(environment(RunSettingsXmlVariable)))
            return null;
        string file = Path.Combine(baseDirectory, RunSettingsFileName);
        return File.Exists(file) ? file : null;
    }
}

/// <summary>The one test a plain run without a GPU reports for the Gpu category it left out.</summary>
public class GpuTestsNotice
{
    [Test]
    public void GpuTestsNeedAGpu()
    {
        if (GpuTestsHook.Unavailable.Value is { } reason)
            Assert.Ignore((GpuTestsHook.LeftOut ? "the tests of category Gpu are left out of this run: " : "the tests of category Gpu skip: ")
                          + reason + "; on a GPU machine they run (alone: dotnet test -c Release -- --filter \"TestCategory=Gpu\")");
        // A GPU machine: the hook must have left the run as it was, so the Gpu category runs.
        Assert.That(GpuTestsHook.LeftOut, Is.False, "a GPU is available but the Gpu category was left out of the run");
    }
}
