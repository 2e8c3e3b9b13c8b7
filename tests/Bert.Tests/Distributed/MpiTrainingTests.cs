using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Bert.Cli;
using Bert.Runtime.IO;
using Bert.Tests.Reliability;
using Bert.Tests.Training;
using NUnit.Framework;

namespace Bert.Tests.Distributed;

/// <summary>
/// Data-parallel `bert pretrain` on the CPU backend for real: Open MPI's mpirun starting 2 and 4 ranks of the built
/// bert.dll, one thread per rank, on the synthetic datasets (both phases). Every run checks the ranks' weights,
/// AdamW moments and data cursors after every step (--check-replicas 1: a mismatch fails the run). Open MPI comes
/// from scripts/setup.sh (openmpi-bin); without mpirun these tests fail rather than skip, as CI must run them.
/// </summary>
[NonParallelizable]
public class MpiTrainingTests
{
    private const int Steps = 8;

    /// <summary>Gradients summed over ranks are the single process's accumulated gradients up to the order of
    /// the float sums (one rank adds micro-batch 2's gradient into micro-batch 1's inside the GEMMs; two ranks add
    /// the two finished sums), the accumulation tests' tolerance: after <see cref="Steps"/> AdamW steps at lr 1e-3
    /// every weight agrees within this.</summary>
    private const float WeightTolerance = 2e-5f;

    private static string[] Args(string output, int batch, int micro, params string[] extra)
    {
        var args = new List<string>
        {
            "pretrain", "--data", TrainingData.DataRoot, "--vocab", TrainingData.VocabPath, "--preset", "tiny",
            "--steps", Steps.ToString(), "--batch", batch.ToString(), "--micro-batch", micro.ToString(),
            "--batch-long", "4", "--micro-batch-long", "1", "--seq", "32", "--seq-long", "64", "--long-fraction", "0.25",
            "--warmup", "2", "--lr", "0.001", "--checkpoint-every", "4", "--eval-sequences", "0", "--threads", "1",
            "--device", "cpu", "--seed", "9", "--check-replicas", "1", "--tensorboard", "false", "--out", output,
        };
        args.AddRange(extra);
        return args.ToArray();
    }

    internal static string Mpirun()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "mpirun"))) return Path.Combine(dir, "mpirun");
        Assert.Fail("mpirun not found: install Open MPI (scripts/setup.sh installs openmpi-bin)");
        return "";
    }

    internal sealed record Result(int Code, string Out, string Err);

    /// <summary>Runs bert.dll under mpirun with <paramref name="ranks"/> ranks (1: directly, no launcher).</summary>
    internal static Result Run(int ranks, string[] args, TimeSpan? timeout = null, Action<Process>? whileRunning = null)
    {
        var info = ranks == 1 ? new ProcessStartInfo(CrashTestHarness.DotnetHost()) : new ProcessStartInfo(Mpirun());
        if (ranks > 1)
            foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", ranks.ToString(), CrashTestHarness.DotnetHost() })
                info.ArgumentList.Add(a);
        info.ArgumentList.Add(CrashTestHarness.BertDll);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.RedirectStandardOutput = info.RedirectStandardError = true;
        info.UseShellExecute = false;
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["CI"] = "1"; // plain progress lines
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var p = new Process { StartInfo = info };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        whileRunning?.Invoke(p);
        if (!p.WaitForExit(timeout ?? TimeSpan.FromMinutes(4)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{info.FileName} {string.Join(' ', info.ArgumentList)} did not finish in time; stderr: {stderr}");
        }
        p.WaitForExit();
        lock (stdout) lock (stderr) return new Result(p.ExitCode, stdout.ToString(), stderr.ToString());
    }

    private static Dictionary<string, float[]> Tensors(string checkpoint, string file)
    {
        using var f = SafetensorsFile.Open(Path.Combine(checkpoint, file));
        return f.Tensors.ToDictionary(t => t.Name, t => t.ReadAsFloat32());
    }

    private static string Final(string run) => Path.Combine(run, "checkpoints", CheckpointWriter.DirectoryName(Steps));

    private static void AssertOk(Result r, string what) =>
        Assert.That(r.Code, Is.EqualTo(0), $"{what}: exit {r.Code}\n{r.Out}\n{r.Err}");

    /// <summary>Largest |a − b| over every tensor of two checkpoints' <paramref name="file"/>.</summary>
    private static (double Max, string Where) Difference(string a, string b, string file)
    {
        var (x, y) = (Tensors(a, file), Tensors(b, file));
        Assert.That(y.Keys, Is.EquivalentTo(x.Keys), file);
        double max = 0;
        string where = "";
        foreach (var (name, xs) in x)
        {
            var ys = y[name];
            for (int i = 0; i < xs.Length; i++)
                if (Math.Abs(xs[i] - ys[i]) > max) (max, where) = (Math.Abs(xs[i] - ys[i]), $"{name}[{i}]");
        }
        return (max, where);
    }

    [TestCase(2)]
    [TestCase(4)]
    public void RanksHoldIdenticalReplicasAndMatchOneProcessAccumulating(int ranks)
    {
        // The global batch of 8 in micro-batches of 8/ranks: each rank runs one micro-batch per step at S=32 and
        // 4/ranks at S=64; the single process runs all of them, accumulating.
        string many = TrainingData.NewDirectory($"mpi-{ranks}"), one = TrainingData.NewDirectory($"mpi-{ranks}-single");
        var r = Run(ranks, Args(many, 8, 8 / ranks));
        AssertOk(r, $"{ranks} ranks");
        Assert.That(r.Out, Does.Contain($"{ranks} ranks over Open MPI"));
        AssertOk(Run(1, Args(one, 8, 8 / ranks)), "one process");
        var (weights, where) = Difference(Final(one), Final(many), "model.safetensors");
        var (moments, whereM) = Difference(Final(one), Final(many), "optimizer.safetensors");
        TestContext.Out.WriteLine($"{ranks} ranks vs one process accumulating, after {Steps} steps: max |Δweight| {weights:G3} at {where}, max |Δmoment| {moments:G3} at {whereM}");
        Assert.That(weights, Is.LessThanOrEqualTo(WeightTolerance), where);
        // The metrics each step (losses, token counts) agree, and the data cursors are the same.
        var a = File.ReadAllLines(Path.Combine(one, "metrics.jsonl"));
        var b = File.ReadAllLines(Path.Combine(many, "metrics.jsonl"));
        Assert.That(b, Has.Length.EqualTo(a.Length));
        Assert.That(File.ReadAllBytes(Path.Combine(Final(many), "trainer-state.bin")), Is.EqualTo(File.ReadAllBytes(Path.Combine(Final(one), "trainer-state.bin"))),
            "step, seed and data cursors do not depend on the number of ranks");
    }

    [Test]
    public void TheSameRunTwiceIsBitwiseIdentical()
    {
        string first = TrainingData.NewDirectory("mpi-twice-1"), second = TrainingData.NewDirectory("mpi-twice-2");
        AssertOk(Run(2, Args(first, 8, 4)), "first");
        AssertOk(Run(2, Args(second, 8, 4)), "second");
        foreach (var file in new[] { "model.safetensors", "optimizer.safetensors" })
            Assert.That(File.ReadAllBytes(Path.Combine(Final(second), file)), Is.EqualTo(File.ReadAllBytes(Path.Combine(Final(first), file))), file);
        static IEnumerable<string> Metrics(string run) => File.ReadAllLines(Path.Combine(run, "metrics.jsonl"))
            .Select(l => System.Text.RegularExpressions.Regex.Replace(l, "\"seconds\":[^,}]*", ""));
        Assert.That(Metrics(second), Is.EqualTo(Metrics(first)));
    }

    [TestCase(2, 1)]
    [TestCase(1, 2)]
    public void ResumesWithAnotherNumberOfRanks(int before, int after)
    {
        // A straight run on `before` ranks; a copy of its run directory cut back to the step-4 checkpoint resumes on `after`.
        string straight = TrainingData.NewDirectory($"mpi-resume-{before}"), cut = TrainingData.NewDirectory($"mpi-resume-{before}-{after}");
        AssertOk(Run(before, Args(straight, 8, 4)), "straight run");
        string mid = Path.Combine(cut, "checkpoints", CheckpointWriter.DirectoryName(4));
        CopyDirectory(Path.Combine(straight, "checkpoints", CheckpointWriter.DirectoryName(4)), mid);
        var r = Run(after, Args(cut, 8, 4, "--resume"));
        AssertOk(r, $"resume on {after}");
        Assert.That(r.Out, Does.Contain("resuming at step 4"));
        var (max, where) = Difference(Final(straight), Final(cut), "model.safetensors");
        TestContext.Out.WriteLine($"resume {before} → {after} ranks vs straight: max |Δweight| {max:G3} at {where}");
        Assert.That(max, Is.LessThanOrEqualTo(WeightTolerance), where);
    }

    [Test]
    public void ShardedOptimizerStateTrainsAsOneProcessAndItsCheckpointsResumeUnsharded()
    {
        // ZeRO-1 on 2 ranks (moments sharded, gradients reduce-scattered, weights all-gathered; --check-replicas 1
        // compares the weights every step) against one process accumulating; then the sharded run's step-4
        // checkpoint (whole moments, gathered) resumes in one unsharded process and must end where the sharded run did.
        string sharded = TrainingData.NewDirectory("mpi-zero1"), one = TrainingData.NewDirectory("mpi-zero1-single"),
            cut = TrainingData.NewDirectory("mpi-zero1-resume");
        var r = Run(2, Args(sharded, 8, 4, "--shard-optimizer"));
        AssertOk(r, "2 ranks, sharded");
        Assert.That(r.Out, Does.Contain("AdamW moments sharded (ZeRO-1)"));
        AssertOk(Run(1, Args(one, 8, 4)), "one process");
        var (weights, where) = Difference(Final(one), Final(sharded), "model.safetensors");
        var (moments, whereM) = Difference(Final(one), Final(sharded), "optimizer.safetensors");
        TestContext.Out.WriteLine($"sharded 2 ranks vs one process: max |Δweight| {weights:G3} at {where}, max |Δmoment| {moments:G3} at {whereM}");
        Assert.That(weights, Is.LessThanOrEqualTo(WeightTolerance), where);
        Assert.That(moments, Is.LessThanOrEqualTo(WeightTolerance), "the checkpoint holds the whole gathered moments: " + whereM);

        CopyDirectory(Path.Combine(sharded, "checkpoints", CheckpointWriter.DirectoryName(4)), Path.Combine(cut, "checkpoints", CheckpointWriter.DirectoryName(4)));
        var resumed = Run(1, Args(cut, 8, 4, "--resume"));
        AssertOk(resumed, "unsharded resume of the sharded checkpoint");
        var (after, whereAfter) = Difference(Final(sharded), Final(cut), "model.safetensors");
        TestContext.Out.WriteLine($"sharded → unsharded resume vs the sharded run: max |Δweight| {after:G3} at {whereAfter}");
        Assert.That(after, Is.LessThanOrEqualTo(WeightTolerance), whereAfter);
    }

    [Test]
    public void KillingOneRankEndsTheJobAndLeavesTheNewestCheckpointIntact()
    {
        string dir = TrainingData.NewDirectory("mpi-kill");
        var args = Args(dir, 8, 4).ToList();
        args[args.IndexOf("--steps") + 1] = "4000";
        args[args.IndexOf("--checkpoint-every") + 1] = "2";
        string checkpoints = Path.Combine(dir, "checkpoints");
        var r = Run(2, args.ToArray(), TimeSpan.FromMinutes(3), mpirun =>
        {
            // Once a checkpoint exists, kill -9 one of the two ranks (a child process of mpirun).
            var clock = Stopwatch.StartNew();
            while (CheckpointReader.ListComplete(PhysicalFileSystem.Instance, checkpoints).Count == 0)
            {
                if (mpirun.HasExited || clock.Elapsed > TimeSpan.FromMinutes(2)) return;
                Thread.Sleep(100);
            }
            var ranks = Children(mpirun.Id);
            Assert.That(ranks, Has.Count.EqualTo(2), "mpirun's rank processes");
            Process.GetProcessById(ranks[^1]).Kill();
        });
        Assert.That(r.Code, Is.Not.EqualTo(0), $"the job must fail when a rank dies\n{r.Out}\n{r.Err}");
        var complete = CheckpointReader.ListComplete(PhysicalFileSystem.Instance, checkpoints);
        Assert.That(complete, Is.Not.Empty);
        // The newest checkpoint is whole: `bert eval` loads it (manifest and checksums verified) and evaluates it.
        var eval = Run(1, ["eval", "--checkpoint", checkpoints, "--data", TrainingData.HeldOutRoot, "--vocab", TrainingData.VocabPath,
            "--max-sequences", "8", "--threads", "1", "--device", "cpu"]);
        AssertOk(eval, "bert eval of the newest checkpoint");
    }

    [Test]
    public void AHangingRankEndsTheJobAfterTheTimeout()
    {
        string dir = TrainingData.NewDirectory("mpi-hang");
        var args = Args(dir, 8, 4, "--dist-timeout", "5").ToList();
        args[args.IndexOf("--steps") + 1] = "4000";
        string checkpoints = Path.Combine(dir, "checkpoints");
        var clock = new Stopwatch();
        var r = Run(2, args.ToArray(), TimeSpan.FromMinutes(3), mpirun =>
        {
            while (CheckpointReader.ListComplete(PhysicalFileSystem.Instance, checkpoints).Count == 0 && !mpirun.HasExited) Thread.Sleep(100);
            var ranks = Children(mpirun.Id);
            Assert.That(ranks, Has.Count.EqualTo(2));
            Signal(ranks[^1], "STOP"); // the rank hangs (stopped), the other waits in a collective
            clock.Start();
        });
        clock.Stop();
        Assert.That(r.Code, Is.Not.EqualTo(0));
        Assert.That(r.Err, Does.Contain("did not finish within 5 s: another rank died or hangs"), r.Err);
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(90)), "ended by the timeout, not by the test's limit");
        Assert.That(CheckpointReader.ListComplete(PhysicalFileSystem.Instance, checkpoints), Is.Not.Empty);
    }

    [Test]
    public void AnUnevenBatchIsAClearError()
    {
        string dir = TrainingData.NewDirectory("mpi-uneven");
        var r = Run(4, Args(dir, 6, 6));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(r.Err, Does.Contain("--batch 6: 4 ranks need a multiple of ranks × micro-batch"));
    }

    [Test]
    public void DistCheckAllReducesCorrectlyAndPrintsBusBandwidth()
    {
        var r = Run(3, ["dist-check", "--min-bytes", "64", "--max-bytes", "65536", "--iterations", "3"]);
        AssertOk(r, "dist-check");
        var rows = r.Out.Split('\n').Where(l => l.Length > 0 && char.IsDigit(l.TrimStart()[0])).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(r.Out, Does.Contain("# bert dist-check: 3 rank(s) over Open MPI"));
            Assert.That(rows.Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0])), Is.EqualTo(new long[] { 64, 256, 1024, 4096, 16384, 65536 }));
            Assert.That(rows.All(l => l.TrimEnd().EndsWith(" 0")), "no wrong element in any row");
            Assert.That(r.Out, Does.Contain("# wrong elements: 0"));
        });
    }

    /// <summary>PIDs of the direct children of <paramref name="pid"/> (from /proc).</summary>
    internal static List<int> Children(int pid)
    {
        var children = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int child)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1]) == pid && stat.Contains("(dotnet)")) children.Add(child);
            }
            catch (IOException) { }
        }
        children.Sort();
        return children;
    }

    private static void Signal(int pid, string signal)
    {
        using var kill = Process.Start("kill", $"-{signal} {pid}");
        kill.WaitForExit();
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }
}
