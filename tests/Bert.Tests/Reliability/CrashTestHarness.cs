using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Runtime.Training;
using Bert.Tests.Data;

namespace Bert.Tests.Reliability;

/// <summary>What a crash test did and found.</summary>
internal sealed class CrashTestResult
{
    public int Kills { get; set; }
    /// <summary>Kills that landed while a checkpoint save was under way (temp entries appeared).</summary>
    public int KillsDuringSave { get; set; }
    /// <summary>Kills before the run had written its first checkpoint (during start-up or the first steps).</summary>
    public int KillsBeforeFirstCheckpoint { get; set; }
    /// <summary>--resume runs that loaded a checkpoint (printed "resuming at step N").</summary>
    public int Resumes { get; set; }
    /// <summary>Times the newest complete checkpoint went backwards after a kill.</summary>
    public int CheckpointsLost { get; set; }
    /// <summary>Complete-looking checkpoints (step-N with manifest.json) that failed verification.</summary>
    public int TornCheckpoints { get; set; }
    /// <summary>Temp entries of a crashed save still present after the next save.</summary>
    public int StaleTempsLeft { get; set; }
    /// <summary>Runs that reached their last step and exited normally.</summary>
    public int RunsCompleted { get; set; }
    /// <summary>Completed runs whose final weights and moments equal an uninterrupted run's, byte for byte.</summary>
    public int RunsMatchingReference { get; set; }
    public int Checkpoints { get; set; }
    public double Seconds { get; set; }
    public List<string> Problems { get; } = [];

    public bool Clean => Problems.Count == 0 && CheckpointsLost == 0 && TornCheckpoints == 0 && StaleTempsLeft == 0;

    public string Summary() => string.Create(CultureInfo.InvariantCulture,
        $"crash test: {Kills} kills ({KillsDuringSave} during a checkpoint save, {KillsBeforeFirstCheckpoint} before the first checkpoint), " +
        $"{Resumes} resumes, {Checkpoints} checkpoints verified, {CheckpointsLost} checkpoints lost, {TornCheckpoints} torn, " +
        $"{StaleTempsLeft} stale temp entries left after a save, {RunsCompleted} runs completed " +
        $"({RunsMatchingReference} bit-identical to an uninterrupted run) in {Seconds:F0} s") +
        (Problems.Count == 0 ? "" : "\nproblems:\n  " + string.Join("\n  ", Problems));
}

/// <summary>
/// Starts `bert pretrain` (the built bert.dll, through the dotnet host) on a tiny job and kills it with
/// SIGKILL at random moments: sometimes at a random time after start (start-up, data and checkpoint
/// loading), mostly at a random time after it starts training (steps and saves). After each kill it
/// checks the checkpoint root: every complete checkpoint verifies against its manifest, the newest
/// never goes backwards, and the temp entries a crashed save left are gone once a later save has
/// completed. The next run passes --resume (when a checkpoint exists) and must report resuming from
/// the newest complete checkpoint. A run that reaches its last step must leave no temp entries, and
/// its final weights and moments must equal those of an uninterrupted run with the same settings.
/// </summary>
internal sealed class CrashTestHarness
{
    public const int Steps = 24;
    private static readonly Regex Resuming = new(@"resuming at step (\d+)", RegexOptions.CultureInvariant);

    private readonly string _work;
    private readonly string _data;
    private readonly string _vocab;
    private readonly Random _random;
    private readonly TextWriter _log;
    private readonly ConditionalWeakTable<Process, StringBuilder> _stderr = new();

    public CrashTestHarness(string work, int seed, TextWriter log)
    {
        _work = work;
        _random = new Random(seed);
        _log = log;
        _data = Path.Combine(work, "data");
        _vocab = Path.Combine(work, "vocab.txt");
        SyntheticCorpus.Vocabulary.Save(_vocab);
        var vocabulary = Vocabulary.Load(_vocab);
        var corpus = SyntheticCorpus.Tokenized(24, 8, seed: 11);
        foreach (int seq in new[] { 32, 64 })
            PretrainingDataBuilder.Build(corpus, "synthetic", vocabulary,
                new PretrainingDataOptions { SeqLength = seq, DupeFactor = 2, MaxDegreeOfParallelism = 1 },
                PretrainingDataBuilder.DatasetDirectory(_data, seq));
    }

    /// <summary>The built CLI next to the test assembly (the test project references Bert.Cli).</summary>
    public static string BertDll => Path.Combine(AppContext.BaseDirectory, "bert.dll");

    public static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)) return host;
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        if (Environment.GetEnvironmentVariable("DOTNET_ROOT") is { Length: > 0 } root && File.Exists(Path.Combine(root, "dotnet")))
            return Path.Combine(root, "dotnet");
        return "dotnet";
    }

    private string[] Arguments(string output, bool resume)
    {
        var args = new List<string>
        {
            BertDll, "pretrain", "--data", _data, "--vocab", _vocab, "--seq", "32", "--seq-long", "64",
            "--batch", "4", "--batch-long", "2", "--steps", Steps.ToString(CultureInfo.InvariantCulture), "--long-fraction", "0.25",
            "--checkpoint-every", "1", "--keep", "3", "--threads", "1", "--device", "cpu", "--seed", "7", "--out", output,
        };
        if (resume) args.Add("--resume");
        return args.ToArray();
    }

    public CrashTestResult Run(int kills)
    {
        var result = new CrashTestResult();
        var clock = Stopwatch.StartNew();

        // An uninterrupted run: the reference for the final weights, and the time scale of the kills.
        string reference = Path.Combine(_work, "reference");
        var (code, _, stderr, seconds) = RunToEnd(reference, resume: false);
        if (code != 0) throw new InvalidOperationException($"the uninterrupted reference run failed with exit code {code}: {stderr}");
        var referenceFinal = FinalFiles(reference);
        double trainSeconds = Math.Max(1.0, seconds);
        _log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"reference run: {Steps} steps in {seconds:F1} s"));

        int runIndex = 0;
        string output = NewRun(ref runIndex);
        while (result.Kills < kills)
        {
            string root = Path.Combine(output, "checkpoints");
            var before = CheckpointReader.ListComplete(PhysicalFileSystem.Instance, root);
            long newestBefore = before.Count > 0 ? before[0].Step : -1;
            var tempsBefore = TempEntries(root);
            bool resume = before.Count > 0;

            var lines = new ConcurrentQueue<string>();
            using var process = Start(Arguments(output, resume), lines);
            bool exited;
            if (_random.Next(5) == 0)
            {
                // Anywhere from start-up on: process start, data and checkpoint loading, the first steps.
                exited = process.WaitForExit(TimeSpan.FromSeconds(_random.NextDouble() * trainSeconds * 0.6));
            }
            else
            {
                // During training: wait for the banner, then up to ~12 steps (with a save after each).
                var banner = Stopwatch.StartNew();
                while (!process.HasExited && !lines.Any(l => l.StartsWith("bert pretrain:", StringComparison.Ordinal)) && banner.Elapsed.TotalSeconds < 60)
                    Thread.Sleep(5);
                exited = process.WaitForExit(TimeSpan.FromSeconds(_random.NextDouble() * trainSeconds * 0.5));
            }

            if (!exited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                result.Kills++;
            }
            process.WaitForExit(); // drains the redirected output
            string stdout = string.Join("\n", lines);
            string resumedAt = Resuming.Match(stdout) is { Success: true } m ? m.Groups[1].Value : "";
            if (resume && resumedAt.Length > 0)
            {
                result.Resumes++;
                if (resumedAt != newestBefore.ToString(CultureInfo.InvariantCulture))
                    result.Problems.Add($"{output}: resumed at step {resumedAt}, but the newest complete checkpoint was step {newestBefore}");
            }

            var after = CheckpointReader.ListComplete(PhysicalFileSystem.Instance, root);
            long newestAfter = after.Count > 0 ? after[0].Step : -1;
            VerifyCheckpoints(after, result);
            if (newestAfter < newestBefore)
            {
                result.CheckpointsLost++;
                result.Problems.Add($"{output}: the newest complete checkpoint went from step {newestBefore} to {newestAfter}");
            }
            if (newestAfter > newestBefore)
            {
                // At least one save completed, and each save starts by removing what a crashed one left.
                foreach (var stale in tempsBefore.Where(t => Directory.Exists(t) || File.Exists(t)))
                {
                    result.StaleTempsLeft++;
                    result.Problems.Add($"{stale}: left by a killed save, still there after the save of step {newestAfter}");
                }
            }

            if (exited)
            {
                if (process.ExitCode != 0)
                {
                    result.Problems.Add($"{output}: `bert pretrain{(resume ? " --resume" : "")}` exited with code {process.ExitCode}: {stdout}\n{TailOfStderr(process)}");
                    output = NewRun(ref runIndex);
                    continue;
                }
                CheckFinished(output, root, referenceFinal, result);
                output = NewRun(ref runIndex);
                continue;
            }
            if (newestBefore < 0 && newestAfter < 0) result.KillsBeforeFirstCheckpoint++;
            if (TempEntries(root).Except(tempsBefore).Any()) result.KillsDuringSave++;
            _log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kill {result.Kills}: {(resume ? $"resumed at {(resumedAt.Length > 0 ? resumedAt : "(killed before loading)")}" : "fresh run")}, newest checkpoint {newestBefore} -> {newestAfter}"));
        }

        // Finish the last run without a kill: it must complete and match the uninterrupted run.
        string lastRoot = Path.Combine(output, "checkpoints");
        bool canResume = CheckpointReader.ListComplete(PhysicalFileSystem.Instance, lastRoot).Count > 0;
        var (lastCode, lastOut, lastErr, _) = RunToEnd(output, canResume);
        if (canResume && Resuming.IsMatch(lastOut)) result.Resumes++;
        if (lastCode != 0) result.Problems.Add($"{output}: the final run exited with code {lastCode}: {lastErr}");
        else CheckFinished(output, lastRoot, referenceFinal, result);
        result.Seconds = clock.Elapsed.TotalSeconds;
        return result;
    }

    private string NewRun(ref int index) => Path.Combine(_work, $"run-{index++:D3}");

    private void CheckFinished(string output, string root, Dictionary<string, byte[]> referenceFinal, CrashTestResult result)
    {
        var complete = CheckpointReader.ListComplete(PhysicalFileSystem.Instance, root);
        VerifyCheckpoints(complete, result);
        if (complete.Count == 0 || complete[0].Step != Steps)
            result.Problems.Add($"{output}: finished without a checkpoint of step {Steps}");
        foreach (var temp in TempEntries(root).Concat(TempEntries(output)))
        {
            result.StaleTempsLeft++;
            result.Problems.Add($"{temp}: temp entry left after the run finished");
        }
        result.RunsCompleted++;
        var final = FinalFiles(output);
        var differing = referenceFinal.Keys.Where(k => !final.TryGetValue(k, out var bytes) || !bytes.AsSpan().SequenceEqual(referenceFinal[k])).ToList();
        if (differing.Count == 0) result.RunsMatchingReference++;
        else result.Problems.Add($"{output}: after kills and resumes, the final {string.Join(", ", differing)} differ from the uninterrupted run's");
    }

    private static Dictionary<string, byte[]> FinalFiles(string output)
    {
        string dir = Path.Combine(output, "checkpoints", CheckpointWriter.DirectoryName(Steps));
        return new[] { CheckpointWriter.ModelFile, CheckpointWriter.OptimizerFile }
            .Where(f => File.Exists(Path.Combine(dir, f)))
            .ToDictionary(f => f, f => File.ReadAllBytes(Path.Combine(dir, f)));
    }

    private static void VerifyCheckpoints(IReadOnlyList<(long Step, string Directory)> complete, CrashTestResult result)
    {
        foreach (var (step, dir) in complete)
        {
            result.Checkpoints++;
            try
            {
                var checkpoint = CheckpointReader.Open(dir);
                if (checkpoint.Step != step)
                    throw new InvalidDataException($"manifest says step {checkpoint.Step}, the directory is step {step}");
                var (state, _) = TrainerStateJson.Read(checkpoint.ReadTrainerState(), Path.Combine(dir, CheckpointWriter.TrainerStateFile));
                if (state.Step != step)
                    throw new InvalidDataException($"trainer state says step {state.Step}, the directory is step {step}");
            }
            catch (Exception e) when (e is FileFormatException or DataFormatException or InvalidDataException or IOException)
            {
                result.TornCheckpoints++;
                result.Problems.Add($"{dir}: looks complete but does not verify: {e.Message}");
            }
        }
    }

    private static List<string> TempEntries(string directory) =>
        Directory.Exists(directory)
            ? Directory.EnumerateFileSystemEntries(directory).Where(e => Path.GetFileName(e).Contains(Bert.Runtime.IO.AtomicFile.TempMarker, StringComparison.Ordinal)).ToList()
            : [];

    private (int Code, string Stdout, string Stderr, double Seconds) RunToEnd(string output, bool resume)
    {
        var lines = new ConcurrentQueue<string>();
        var clock = Stopwatch.StartNew();
        using var process = Start(Arguments(output, resume), lines);
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"bert pretrain --out {output} did not finish in 5 minutes");
        }
        process.WaitForExit();
        return (process.ExitCode, string.Join("\n", lines), TailOfStderr(process), clock.Elapsed.TotalSeconds);
    }

    private Process Start(string[] args, ConcurrentQueue<string> stdout)
    {
        var info = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _work,
        };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        var process = new Process { StartInfo = info };
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null) stdout.Enqueue(e.Data);
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
                lock (stderr) stderr.AppendLine(e.Data);
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _stderr.Add(process, stderr);
        return process;
    }

    private string TailOfStderr(Process process)
    {
        if (!_stderr.TryGetValue(process, out var sb)) return "";
        lock (sb)
        {
            string text = sb.ToString();
            return text.Length > 4000 ? text[^4000..] : text;
        }
    }
}
