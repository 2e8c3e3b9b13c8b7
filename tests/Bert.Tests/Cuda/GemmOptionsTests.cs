using System.Text.Json;
using Bert.Cli;
using Bert.Cli.Commands;
using Bert.Native;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>Issue 12's GEMM options from the environment (BERT_CUBLASLT, BERT_LOGITS_PADDING): both off by default,
/// each value parsed or refused with the variable named, and `bert bench` reporting them.</summary>
[TestFixture, NonParallelizable]
public class GemmOptionsTests
{
    private static Func<string, string?> Env(params (string Name, string Value)[] vars) =>
        name => vars.FirstOrDefault(v => v.Name == name).Value;

    [Test]
    public void BothAreOffUnlessTheEnvironmentSays()
    {
        var options = new CudaBackendOptions().WithEnvironment(Env());
        Assert.That((options.UseCublasLt, options.LogitsPadding), Is.EqualTo((false, 0)));
        Assert.That(options.DescribeGemmOptions(), Is.EqualTo("cublaslt off, logits padding off"));
    }

    [Test]
    public void TheVariablesTurnThemOn()
    {
        var options = new CudaBackendOptions().WithEnvironment(Env(("BERT_CUBLASLT", "1"), ("BERT_LOGITS_PADDING", "64")));
        Assert.That((options.UseCublasLt, options.LogitsPadding), Is.EqualTo((true, 64)));
        Assert.That(options.DescribeGemmOptions(), Is.EqualTo("cublaslt on, logits padding 64"));
        var off = new CudaBackendOptions { UseCublasLt = true, LogitsPadding = 64 }
            .WithEnvironment(Env(("BERT_CUBLASLT", "0"), ("BERT_LOGITS_PADDING", "0")));
        Assert.That((off.UseCublasLt, off.LogitsPadding), Is.EqualTo((false, 0)));
    }

    [TestCase("BERT_CUBLASLT", "yes", "BERT_CUBLASLT=yes: expected 1 (cuBLASLt epilogues on) or 0 (off)")]
    [TestCase("BERT_LOGITS_PADDING", "60", "BERT_LOGITS_PADDING=60: expected 0 (off) or a multiple of 8 up to 1024, such as 64")]
    [TestCase("BERT_LOGITS_PADDING", "-64", "BERT_LOGITS_PADDING=-64: expected 0 (off) or a multiple of 8 up to 1024, such as 64")]
    [TestCase("BERT_LOGITS_PADDING", "2048", "BERT_LOGITS_PADDING=2048: expected 0 (off) or a multiple of 8 up to 1024, such as 64")]
    public void ABadValueIsRefusedWithTheVariableNamed(string name, string value, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => new CudaBackendOptions().WithEnvironment(Env((name, value))));
        Assert.That(e!.Message, Is.EqualTo(message));
    }

    [Test]
    public void TheCommandLineRefusesABadValueBeforeLookingForAGpu()
    {
        var saved = Environment.GetEnvironmentVariable("BERT_CUBLASLT");
        try
        {
            Environment.SetEnvironmentVariable("BERT_CUBLASLT", "true");
            var e = Assert.Throws<UserException>(() => Backends.Create("cuda", 1, "bf16"));
            Assert.That(e!.Message, Does.StartWith("BERT_CUBLASLT=true: expected 1"));
            // The CPU backend has no GEMM options: the variable does not concern it.
            using var cpu = Backends.Create("cpu", 1, "f32");
            Assert.That(cpu.Name, Does.StartWith("cpu"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("BERT_CUBLASLT", saved);
        }
    }

    [Test]
    public void BenchJsonHasGemmOptionsNullOnTheCpu()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bert-bench-gemm-{Environment.ProcessId}.json");
        try
        {
            Assert.That(BenchCommand.Run("tiny", "cpu", 2, 16, 2, 99, 1, 0, 1, false, false, path, "f32"), Is.EqualTo(0));
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            Assert.That(doc.RootElement.GetProperty("gemm_options").ValueKind, Is.EqualTo(JsonValueKind.Null));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
