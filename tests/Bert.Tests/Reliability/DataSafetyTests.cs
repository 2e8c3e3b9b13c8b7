using Bert.Cli;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;
using Bert.Tests.IO;
using Bert.Tests.Reliability.Fuzz;
using NUnit.Framework;

namespace Bert.Tests.Reliability;

/// <summary>Issue 17's data-loss cases: the same-step re-save window, the run-directory lock, outputs
/// that overlap inputs, atomic writes through symlinks and onto non-regular files, the "latest" pointer.</summary>
[NonParallelizable] // Program.Run writes to the console
public class DataSafetyTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("safety");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private static string[] Entries(string root) =>
        Directory.GetFileSystemEntries(root).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal).ToArray()!;

    private static CheckpointContent Changed(long step)
    {
        var c = FuzzSamples.Checkpoint(step);
        var p = c.Parameters.ToArray();
        p[0] += 1f;
        return new CheckpointContent { Step = step, Config = c.Config, Table = c.Table, Parameters = p, AdamM = c.AdamM, AdamV = c.AdamV, TrainerState = c.TrainerState };
    }

    private static float FirstParameter(string root)
    {
        var c = CheckpointReader.Open(root);
        var expected = FuzzSamples.Checkpoint(c.Step);
        var p = new float[expected.Parameters.Length];
        c.ReadParameters(expected.Table, p);
        return p[0];
    }

    [Test]
    public void AnIdenticalReSaveNeverMovesTheCompleteCopy()
    {
        string root = _dir["run"];
        var options = new CheckpointWriterOptions { KeepLast = 1 };
        new CheckpointWriter(root, options).Save(FuzzSamples.Checkpoint(20));
        var fs = new FaultInjectingFileSystem();
        new CheckpointWriter(root, options, fs).Save(FuzzSamples.Checkpoint(20));
        string final = Path.Combine(root, "step-000020");
        Assert.That(fs.Log.Where(l => l.Contains("rename-dir " + final + " ", StringComparison.Ordinal)), Is.Empty,
            "the only complete copy is never renamed:\n" + string.Join("\n", fs.Log));
        Assert.That(Entries(root), Is.EqualTo(new[] { "latest", "step-000020" }));
        Assert.That(CheckpointReader.Open(root).Step, Is.EqualTo(20));
    }

    [Test]
    public void ADamagedCopyOfTheSameStepIsReplacedNotKept()
    {
        string root = _dir["run"];
        var options = new CheckpointWriterOptions { KeepLast = 1 };
        string dir = new CheckpointWriter(root, options).Save(FuzzSamples.Checkpoint(20));
        var model = Path.Combine(dir, CheckpointWriter.ModelFile);
        var bytes = File.ReadAllBytes(model);
        bytes[^3] ^= 0x10;
        File.WriteAllBytes(model, bytes);
        new CheckpointWriter(root, options).Save(FuzzSamples.Checkpoint(20));
        Assert.DoesNotThrow(() => CheckpointReader.Open(root), "the re-save wrote a good copy");
    }

    [Test]
    public void ACrashAtAnyPointOfAReSaveWithKeepOneLeavesACompleteCheckpoint()
    {
        var options = new CheckpointWriterOptions { KeepLast = 1 };
        string probeRoot = _dir["probe"];
        new CheckpointWriter(probeRoot, options).Save(FuzzSamples.Checkpoint(20));
        var probe = new FaultInjectingFileSystem();
        new CheckpointWriter(probeRoot, options, probe).Save(Changed(20));
        int operations = probe.Operations;
        Assert.That(probe.Log.Any(l => l.Contains(".prev", StringComparison.Ordinal)), "the re-save of other content sets the old copy aside");
        float before = FirstParameter(probeRoot);

        for (int crashAt = 0; crashAt < operations; crashAt++)
        {
            string root = _dir[$"crash-{crashAt}"];
            new CheckpointWriter(root, options).Save(FuzzSamples.Checkpoint(20));
            float old = FirstParameter(root);
            var fs = new FaultInjectingFileSystem { CrashAtOperation = crashAt };
            Assert.Throws<SimulatedCrashException>(() => new CheckpointWriter(root, options, fs).Save(Changed(20)));
            string why = $"crash at #{crashAt}: {fs.Log[^1]}";

            // Step 20 is loadable, old or new, whatever the crash interrupted.
            var c = CheckpointReader.Open(root);
            Assert.That(c.Step, Is.EqualTo(20), why);
            Assert.That(FirstParameter(root), Is.EqualTo(old).Or.EqualTo(before), why);

            // The next save recovers and cleans up: one step directory, no temp or set-aside entries.
            new CheckpointWriter(root, options).Save(FuzzSamples.Checkpoint(30));
            Assert.That(Entries(root), Is.EqualTo(new[] { "latest", "step-000030" }), why);
            Directory.Delete(root, recursive: true);
        }
    }

    [Test]
    public void TheLatestPointerOpensWhereverACheckpointIsRead()
    {
        string root = _dir["run"];
        FuzzSamples.WriteCheckpoint(root, 3);
        FuzzSamples.WriteCheckpoint(root, 5);
        string latest = Path.Combine(root, CheckpointWriter.LatestFile);
        Assert.That(CheckpointReader.Open(latest).Step, Is.EqualTo(5));
        Assert.That(CheckpointReader.FindLatest(latest), Is.EqualTo(Path.Combine(root, "step-000005")));
        Assert.That(PretrainedSource.Open(latest).Step, Is.EqualTo(5));
        File.WriteAllText(latest, "../../etc\n");
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(latest))!;
        Assert.That(e.Message, Does.Contain("latest").And.Contain("../../etc"));
    }

    [Test]
    public void ASecondLockOnARunDirectoryNamesTheHolder()
    {
        string run = _dir["run"];
        Directory.CreateDirectory(run);
        using (var first = RunDirectoryLock.Acquire(run, "bert pretrain"))
        {
            var e = Assert.Throws<DirectoryLockedException>(() => RunDirectoryLock.Acquire(run, "bert pretrain"))!;
            Assert.That(e.Message, Does.Contain(run).And.Contain($"pid {Environment.ProcessId}").And.Contain("bert pretrain"));

            // The CLI refuses a second run on the same --out with that message and exit 4.
            var (code, message) = Cli("pretrain", "--out", run, "--device", "cpu");
            Assert.That(code, Is.EqualTo(ExitCodes.Io), message);
            Assert.That(message, Does.StartWith("bert: error: ").And.Contain($"pid {Environment.ProcessId}"));
        }
        using (RunDirectoryLock.Acquire(run, "bert pretrain")) { }  // released
        Assert.That(Directory.Exists(run), "a directory the lock did not create stays");
        string fresh = Path.Combine(_dir.Path, "fresh", "run");
        using (RunDirectoryLock.Acquire(fresh, "bert prepare")) Assert.That(File.Exists(Path.Combine(fresh, RunDirectoryLock.OwnerFile)));
        Assert.That(Directory.Exists(fresh), Is.False, "a directory created by the lock and left empty is removed");
    }

    [Test]
    public void TheLockIsHeldAcrossProcesses()
    {
        if (OperatingSystem.IsWindows() || !File.Exists("/usr/bin/flock")) Assert.Ignore("needs util-linux flock");
        string run = _dir["run"];
        using var held = RunDirectoryLock.Acquire(run, "bert pretrain");
        var psi = new System.Diagnostics.ProcessStartInfo("/usr/bin/flock", ["-n", "-x", Path.Combine(run, RunDirectoryLock.LockFile), "true"]);
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(1), "another process cannot take the lock while it is held");
    }

    [Test]
    public void ExportOntoItsOwnCheckpointIsRefusedAndTheWeightsStay()
    {
        string root = _dir["ckpt"];
        string step = FuzzSamples.WriteCheckpoint(root, 4);
        string model = Path.Combine(step, CheckpointWriter.ModelFile);
        var before = File.ReadAllBytes(model);
        foreach (var output in new[] { step, root, Path.Combine(step, "sub") })
        {
            var (code, message) = Cli("export", "--checkpoint", root, "--out", output, "--dtype", "bf16");
            Assert.That(code, Is.EqualTo(ExitCodes.Usage), message);
            Assert.That(message, Does.Contain("--out").And.Contain("overwrite"));
        }
        Assert.That(File.ReadAllBytes(model), Is.EqualTo(before));
        Assert.That(Directory.Exists(Path.Combine(step, "sub")), Is.False);

        // Through a symlink too.
        string link = Path.Combine(_dir.Path, "link");
        Directory.CreateSymbolicLink(link, step);
        var (c2, m2) = Cli("export", "--checkpoint", root, "--out", link);
        Assert.That(c2, Is.EqualTo(ExitCodes.Usage), m2);
        Assert.That(File.ReadAllBytes(model), Is.EqualTo(before));
    }

    [Test]
    public void ExportThroughTheLatestPointerOntoItsCheckpointIsRefused()
    {
        // Found trying issue 17 again: `--checkpoint RUN/checkpoints/latest --out RUN/checkpoints/step-N` passed the
        // overlap check (a pointer file is not the directory) and overwrote the checkpoint's model.safetensors.
        string root = _dir["ckpt"];
        string step = FuzzSamples.WriteCheckpoint(root, 4);
        string latest = Path.Combine(root, CheckpointWriter.LatestFile);
        Assert.That(File.Exists(latest), Is.True);
        string model = Path.Combine(step, CheckpointWriter.ModelFile);
        var before = File.ReadAllBytes(model);
        foreach (var output in new[] { step, Path.Combine(step, "sub") })
        {
            var (code, message) = Cli("export", "--checkpoint", latest, "--out", output, "--dtype", "bf16");
            Assert.That(code, Is.EqualTo(ExitCodes.Usage), message);
            Assert.That(message, Does.Contain("--checkpoint " + latest).And.Contain("overwrite"));
        }
        Assert.That(File.ReadAllBytes(model), Is.EqualTo(before));
        Assert.That(Directory.Exists(Path.Combine(step, "sub")), Is.False);
        // Beside the checkpoints is fine.
        var (ok, okMessage) = Cli("export", "--checkpoint", latest, "--out", _dir["exported"]);
        Assert.That(ok, Is.EqualTo(ExitCodes.Ok), okMessage);
    }

    [Test]
    public void AnAtomicWriteGoesThroughASymlinkAndRefusesDevices()
    {
        string target = _dir["target.txt"];
        File.WriteAllText(target, "old");
        string link = Path.Combine(_dir.Path, "link.txt");
        File.CreateSymbolicLink(link, target);
        AtomicFile.Write(PhysicalFileSystem.Instance, link, s => s.Write("new"u8));
        Assert.That(new FileInfo(link).LinkTarget, Is.EqualTo(target), "the link stays a link");
        Assert.That(File.ReadAllText(target), Is.EqualTo("new"));

        if (File.Exists("/dev/full"))
        {
            var e = Assert.Throws<IOException>(() => AtomicFile.Write(PhysicalFileSystem.Instance, "/dev/full", s => s.Write("x"u8)))!;
            Assert.That(e.Message, Does.Contain("/dev/full").And.Contain("not a regular file"));
        }
        var d = Assert.Throws<IOException>(() => AtomicFile.Write(PhysicalFileSystem.Instance, _dir.Path, s => s.Write("x"u8)))!;
        Assert.That(d.Message, Does.Contain("is a directory"));
    }

    internal static (int Code, string Message) Cli(params string[] args)
    {
        var oldOut = Console.Out;
        var oldErr = Console.Error;
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        try
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
            return (Program.Run(args), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}

/// <summary>Messages of failed writes name the file the user asked for, never a temp file, and a failed
/// write leaves no temp file; a plot that cannot be written does not fail a finished run.</summary>
public class WriteFailureTests
{
    [Test]
    public void AWriteIntoAMissingDirectoryNamesTheTargetAndIsAnIoError()
    {
        using var dir = new TempDirectory("writes");
        string target = Path.Combine(dir.Path, "missing", "out.npy");
        var e = Assert.Throws<IOException>(() => Bert.Runtime.FineTuning.NpyFile.Write(target, new float[4], 2, 2))!;
        Assert.That(e, Is.Not.InstanceOf<DirectoryNotFoundException>(), "exit 4 (an output), not 3 (a missing input)");
        Assert.That(e.Message, Does.Contain(target).And.Not.Contain(AtomicFile.TempMarker));
        Assert.That(Bert.Cli.CliErrors.Translate(e)!.ExitCode, Is.EqualTo(ExitCodes.Io));
    }

    [Test]
    public void AnOutputWhereNoFileCanBeCreatedIsAnIoErrorNamingTheTarget()
    {
        // Found trying issue 17 again: `embed --out /proc/e.npy` exited 3 (a missing input) with .NET's
        // "Could not find file '/proc/e.npy.tmp-…'", and `export --out /proc/x` exited 3 likewise.
        if (!Directory.Exists("/proc/self")) Assert.Ignore("needs Linux's /proc, a directory that takes no new files");
        string target = "/proc/bert-test-" + Guid.NewGuid().ToString("N")[..8] + ".npy";
        var e = Assert.Throws<IOException>(() => Bert.Runtime.FineTuning.NpyFile.Write(target, new float[4], 2, 2))!;
        Assert.That(e, Is.Not.InstanceOf<FileNotFoundException>(), "exit 4 (an output), not 3 (a missing input)");
        Assert.That(e.Message, Does.Contain(target).And.Not.Contain(AtomicFile.TempMarker));
        Assert.That(Bert.Cli.CliErrors.Translate(e)!.ExitCode, Is.EqualTo(ExitCodes.Io));

        using var dir = new TempDirectory("writes");
        string root = dir["ckpt"];
        FuzzSamples.WriteCheckpoint(root, 2);
        string output = "/proc/bert-test-" + Guid.NewGuid().ToString("N")[..8];
        var (code, message) = DataSafetyTests.Cli("export", "--checkpoint", root, "--out", output);
        Assert.That(code, Is.EqualTo(ExitCodes.Io), message);
        Assert.That(message, Does.Contain("--out " + output).And.Contain("cannot create the output directory"));
    }

    [Test]
    public void APermissionFailureNamesTheTarget()
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Ignore("Unix permissions");
            return;
        }
        if (Environment.UserName == "root") Assert.Ignore("root ignores directory permissions");
        using var dir = new TempDirectory("writes");
        string locked = dir["locked"];
        Directory.CreateDirectory(locked);
        File.SetUnixFileMode(locked, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        string target = Path.Combine(locked, "x.txt");
        var e = Assert.Throws<UnauthorizedAccessException>(() => AtomicFile.Write(PhysicalFileSystem.Instance, target, s => s.Write("x"u8)))!;
        Assert.That(e.Message, Does.Contain(target).And.Not.Contain(AtomicFile.TempMarker));
    }

    [Test]
    public void APlotThatCannotBeWrittenWarnsAndLeavesNoTempFile()
    {
        using var dir = new TempDirectory("writes");
        string metrics = dir["metrics.jsonl"];
        File.WriteAllText(metrics, "{\"kind\":\"train\",\"step\":1,\"phase\":\"seq128\",\"seq_length\":128,\"loss\":5.0,\"mlm_loss\":4.0,\"nsp_loss\":1.0,\"mlm_accuracy\":0.1,\"nsp_accuracy\":0.5,\"lr\":0.0001,\"grad_norm\":1.0,\"sequences\":8,\"tokens\":100,\"seconds\":0.1}\n");
        var oldErr = Console.Error;
        var err = new StringWriter();
        Console.SetError(err);
        try
        {
            Bert.Cli.TrainingPlot.Render(metrics, "/dev/full", "t");               // not a regular file
            Bert.Cli.TrainingPlot.Render(metrics, Path.Combine(dir.Path, "no", "loss.png"), "t");  // missing directory
        }
        finally
        {
            Console.SetError(oldErr);
        }
        Assert.That(err.ToString(), Does.Contain("warning: plot not written").And.Contain("/dev/full").And.Contain("loss.png"));
        Assert.That(Directory.GetFiles(dir.Path).Where(f => f.Contains(AtomicFile.TempMarker)), Is.Empty);
        Bert.Cli.TrainingPlot.Render(metrics, dir["loss.png"], "t");
        Assert.That(File.ReadAllBytes(dir["loss.png"])[1..4], Is.EqualTo("PNG"u8.ToArray()));
    }

    [Test]
    public void TrimmingMetricsOnResumeIsAtomic()
    {
        using var dir = new TempDirectory("writes");
        string path = dir["metrics.jsonl"];
        File.WriteAllText(path, "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"step\":2}\n{\"kind\":\"train\",\"step\":3}\n");
        using (new Bert.Runtime.Training.MetricsLog(path, 2)) { }
        Assert.That(File.ReadAllText(path), Is.EqualTo("{\"kind\":\"train\",\"step\":1}\n"));
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1), "no temp file left");
    }
}

public class ProgressEtaTests
{
    [Test]
    public void AResumedRunsEarlierStepsAreNotCountedAsProgress()
    {
        var r = new Bert.Cli.RateEstimator();
        var t = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        r.Add(t, 580);                       // resumed at step 580 of 600
        Assert.That(r.Remaining(600, 580), Is.Null);
        r.Add(t.AddSeconds(1), 581);         // one step a second
        Assert.That(r.Remaining(600, 581)!.Value.TotalSeconds, Is.EqualTo(19).Within(1e-9));
    }

    [Test]
    public void ASlowerPhaseShowsWithinTheWindow()
    {
        var r = new Bert.Cli.RateEstimator(windowSeconds: 60);
        var t = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        int step = 0;
        for (int s = 0; s <= 300; s++) r.Add(t.AddSeconds(s), step += 10);   // 10 steps/s
        for (int s = 301; s <= 400; s++) r.Add(t.AddSeconds(s), step += 1);   // then 1 step/s
        double left = r.Remaining(step + 100, step)!.Value.TotalSeconds;
        Assert.That(left, Is.EqualTo(100).Within(2), "the last minute's rate, not the run's average");
    }
}
