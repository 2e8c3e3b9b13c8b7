using Bert.Cli;
using Bert.Native;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

public class CheckKernelsCommandTests
{
    [Test]
    public void WithoutAGpuItPrintsTheReasonAndExitsWithTheDeviceCode()
    {
        if (CudaDevice.IsAvailable(out _)) Assert.Ignore("this machine has a GPU");
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Bert.Cli.Commands.CheckKernelsCommand.Run(null, new CudaBackendOptions(), new KernelCheckOptions(), output, error);
        Assert.That(code, Is.EqualTo(ExitCodes.Device));
        Assert.That(error.ToString(), Does.Contain("no NVIDIA GPU available"));
        Assert.That(output.ToString(), Is.Empty);
    }

    [Test]
    public void TheCommandIsRegisteredAndParsesItsOptions()
    {
        var root = Program.BuildRoot();
        var parse = root.Parse(["check-kernels", "--precision", "bf16", "--size", "base", "--filter", "Linear"]);
        Assert.That(parse.Errors, Is.Empty);
        Assert.That(root.Parse(["check-kernels", "--precision", "fp8"]).Errors, Is.Not.Empty);
    }

    [Test]
    public void ResultsFormatAsATable()
    {
        var text = KernelCheck.Format(
        [
            new OpCheckResult("LayerNorm", "plain", "N=21 H=32", 1.5e-7, 1.2e-7, "output[3]", 1e-5, 0.012, null),
            new OpCheckResult("Linear", "gelu", "N=21 K=32 O=37", 0.5, 0.5, "output[0]", 1e-5, null, null),
        ]);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[0], Does.StartWith("op").And.Contain("max abs err").And.Contain("GPU ms"));
        Assert.That(lines[1], Does.Contain("LayerNorm").And.Contain("1.20e-07").And.Contain("0.012").And.EndWith("ok"));
        Assert.That(lines[2], Does.Contain("FAIL").And.Contain("output[0]"));
    }
}
