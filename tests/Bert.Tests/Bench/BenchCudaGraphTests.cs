using System.Text.Json;
using Bert.Cli.Commands;
using NUnit.Framework;

namespace Bert.Tests.Bench;

/// <summary>`bert bench --cuda-graphs`: the mode the timed steps ran in is reported as "cuda_graph" in the JSON.</summary>
[TestFixture]
public class BenchCudaGraphTests
{
    [TestCase("off", "off")]
    [TestCase("auto", "fallback")]
    public void TheJsonSaysHowTheStepsRan(string mode, string expected)
    {
        string json = Path.Combine(Path.GetTempPath(), $"bert-bench-graphs-{Guid.NewGuid():N}.json");
        try
        {
            int code = BenchCommand.Run("tiny", "cpu", batch: 2, seq: 16, predictions: 3, vocab: 67, steps: 2, warmup: 1, threads: 1,
                breakdown: false, torch: false, jsonPath: json, precision: "auto", fusedAttention: "off", cudaGraphs: mode);
            Assert.That(code, Is.Zero);
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            Assert.That(doc.RootElement.GetProperty("cuda_graph").GetString(), Is.EqualTo(expected));
            Assert.That(doc.RootElement.GetProperty("sequences_per_s").GetDouble(), Is.GreaterThan(0));
        }
        finally
        {
            File.Delete(json);
        }
    }
}
