using System.Diagnostics;
using System.Runtime.InteropServices;
using Bert.Cli;
using Bert.Runtime.IO;
using Bert.Tests.Training;
using NUnit.Framework;

namespace Bert.Tests.Reliability;

/// <summary>Issue 17: one signal handler; a stopped run saves and exits with the shell's code.</summary>
public class StopSignalTests
{
    [Test]
    public void FirstSignalStopsSecondExitsAtOnceAndAnEchoIsIgnored()
    {
        var now = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        int? exited = null;
        using var s = new StopSignals("bert test", code => exited = code, () => now);
        Assert.That((s.Requested, s.ExitCode), Is.EqualTo((false, 0)));
        s.Raise(PosixSignal.SIGTERM);
        Assert.That((s.Requested, s.ExitCode), Is.EqualTo((true, 143)));
        now = now.AddMilliseconds(300);
        s.Raise(PosixSignal.SIGTERM);                     // the process group's copy
        Assert.That(exited, Is.Null);
        now = now.AddSeconds(2);
        s.Raise(PosixSignal.SIGINT);
        Assert.That(exited, Is.EqualTo(130), "a second signal quits without saving");
        Assert.That(StopSignals.CodeOf(PosixSignal.SIGHUP), Is.EqualTo(129), "SIGHUP stops like SIGTERM, with its own code");
    }

    [Test]
    public void SigtermSavesACheckpointAndExits143()
    {
        if (OperatingSystem.IsWindows()) Assert.Ignore("POSIX signals");
        string dir = TrainingData.NewDirectory("sigterm");
        string run = Path.Combine(dir, "run");
        var info = new ProcessStartInfo(CrashTestHarness.DotnetHost())
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = dir,
        };
        foreach (var a in new[]
        {
            CrashTestHarness.BertDll, "pretrain", "--data", TrainingData.DataRoot, "--vocab", TrainingData.VocabPath, "--seq", "32", "--seq-long", "64",
            "--batch", "4", "--batch-long", "2", "--steps", "100000", "--long-fraction", "0", "--checkpoint-every", "0", "--threads", "1",
            "--device", "cpu", "--out", run,
        }) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var stdout = new System.Collections.Concurrent.ConcurrentQueue<string>();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) stdout.Enqueue(e.Data); };
        var stderr = new System.Text.StringBuilder();
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (!stdout.Any(l => l.Contains("step ", StringComparison.Ordinal)) && clock.Elapsed < TimeSpan.FromSeconds(90) && !p.HasExited)
            Thread.Sleep(100);
        Assert.That(p.HasExited, Is.False, "training started: " + stderr);
        using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!) kill.WaitForExit();
        Assert.That(p.WaitForExit(TimeSpan.FromSeconds(60)), "the run stops after the current step");
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(143), stderr.ToString());
        Assert.That(stderr.ToString(), Does.Contain("stopping after this step").And.Not.Contain("Exception"));
        var saved = CheckpointReader.Open(Path.Combine(run, "checkpoints"));
        Assert.That(saved.Step, Is.GreaterThan(0), "the promised checkpoint was saved");
    }
}
