using System.Diagnostics;
using System.Runtime.CompilerServices;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>The emulator's C++ models of mma.sync m16n8k16 bf16 and ldmatrix x4 (.trans) against an fp64
/// matmul and direct reads, with fragments packed in the PTX ISA layouts (Emulator/checks/tensor_core_check.cpp).</summary>
[TestFixture]
public class TensorCoreModelTests
{
    private static string Dir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    private static (int Code, string Output) Run(string file, string args, string cwd)
    {
        var start = new ProcessStartInfo(file, args) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(start)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    [Test]
    public void MmaAndLdmatrixModelsFollowThePtxFragmentLayouts()
    {
        if (OperatingSystem.IsWindows()) Assert.Ignore("the emulator builds with g++ on Linux");
        var emulator = Path.Combine(Dir(), "Emulator");
        var source = Path.Combine(emulator, "checks", "tensor_core_check.cpp");
        if (!File.Exists(source)) Assert.Ignore($"the emulator sources are not here ({source}): a packed test build");
        var exe = Path.Combine(Path.GetTempPath(), $"bert-tensor-core-check-{Environment.ProcessId}");
        int code;
        string output;
        try
        {
            (code, output) = Run(Environment.GetEnvironmentVariable("CXX") ?? "g++",
                $"-std=c++20 -O1 -Wall -Werror -fsanitize=address,undefined -I\"{emulator}\" \"{source}\" -o \"{exe}\"", emulator);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Ignore($"no C++ compiler: {e.Message}");
            return;
        }
        Assert.That(code, Is.EqualTo(0), output);
        try
        {
            (code, output) = Run(exe, "", emulator);
            Assert.That(code, Is.EqualTo(0), output);
            Assert.That(output, Does.Contain("tensor-core models ok"));
        }
        finally
        {
            File.Delete(exe);
        }
    }
}
