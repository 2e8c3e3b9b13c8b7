using System.Diagnostics;
using System.Text.Json.Nodes;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.Bench;

/// <summary>bench/gpu/summarize.py turns one run-all.sh log folder into issue 12's summary.json: checked on the
/// committed H100 run of 2026-11-22 (ba784ca), whose numbers are known from its raw logs.</summary>
[TestFixture]
public class GpuSummaryTests
{
    private const string Python = "/usr/bin/python3";
    private static string Script => Path.Combine(TestPaths.RepoRoot, "bench", "gpu", "summarize.py");

    private static (int Code, string Out, string Err) Summarize(string folder)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Script);
        psi.ArgumentList.Add(folder);
        psi.ArgumentList.Add("--commit");
        psi.ArgumentList.Add("ba784ca");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr);
    }

    [Test]
    public void TheCommittedH100RunSummarizesToTheNumbersInItsLogs()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found");
        using var dir = TestPaths.NewTempDirectory();
        foreach (var f in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "bench", "results", "gpu", "2026-11-22-ba784ca")))
            File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        // A variant beside the default build (as the flash stage writes) is reported as its own row.
        var variant = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "bench-base-128-bf16.json")))!.AsObject();
        variant["sequences_per_s"] = 6000.0;
        File.WriteAllText(Path.Combine(dir.Path, "flash-bench-base-128-on.json"), variant.ToJsonString());

        var (code, stdout, stderr) = Summarize(dir.Path);
        Assert.That(code, Is.EqualTo(0), stderr);
        var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "summary.json")))!.AsArray().Select(r => r!.AsObject()).ToArray();
        Assert.That(rows.Select(r => (string)r["model"]! + (int)r["seq"]! + (string)r["variant"]!),
            Is.EqualTo(new[] { "base128default", "base128flash-bench-base-128-on", "base512default", "large128default", "large512default" }));
        var base128 = rows[0];
        string[] fields = ["model", "seq", "predictions", "batch", "bert_seq_per_s", "mfu", "peak_memory_gib", "peer_eager_seq_per_s", "peer_compile_seq_per_s", "gpu"];
        Assert.Multiple(() =>
        {
            foreach (var f in fields) Assert.That(base128.ContainsKey(f), f);
            Assert.That((double)base128["bert_seq_per_s"]!, Is.EqualTo(3142.84).Within(0.01));
            Assert.That((double)base128["peer_eager_seq_per_s"]!, Is.EqualTo(2449.52).Within(0.01));
            Assert.That((double)base128["peer_compile_seq_per_s"]!, Is.EqualTo(3719.94).Within(0.01));
            Assert.That((double)base128["speedup_vs_peer"]!, Is.EqualTo(3142.84 / 3719.94).Within(1e-4), "against the faster peer");
            Assert.That((double)base128["peak_memory_gib"]!, Is.EqualTo(15440084992 / Math.Pow(2, 30)).Within(1e-9));
            Assert.That((string)base128["gpu"]!, Is.EqualTo("NVIDIA H100 80GB HBM3"));
            Assert.That((double)rows[1]["speedup_vs_peer"]!, Is.EqualTo(6000 / 3719.94).Within(1e-4));
            Assert.That(rows[3]["peer_compile_seq_per_s"], Is.Null, "BERT-large was not compiled in that run");
            Assert.That((double)rows[3]["peer_eager_seq_per_s"]!, Is.GreaterThan(0));
            Assert.That(stdout, Does.Contain("| base | 128 | 20 | 256 | default | 3,143 | 22.2% |"));
            Assert.That(File.ReadAllText(Path.Combine(dir.Path, "summary.md")), Is.EqualTo(stdout));
        });
    }

    [Test]
    public void AFolderWithoutBenchResultsIsAClearError()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found");
        using var dir = TestPaths.NewTempDirectory();
        var (code, _, stderr) = Summarize(dir.Path);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr.Trim(), Does.Contain(dir.Path).And.Contain("no bert bench JSON files"));
    }
}
