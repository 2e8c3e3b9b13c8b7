using System.CommandLine;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Spectre.Console;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert prepare --corpus PATH… --vocab PATH --seq 128 --out DIR`: corpus files (files, directories, globs,
/// .gz) → pretraining shards in DIR/seq128 (instances, masks, NSP pairs as google-research/bert
/// create_pretraining_data.py) and DIR/seq128/stats.json, streamed in bounded memory.
/// </summary>
public static class PrepareCommand
{
    public static Command Create()
    {
        var corpus = new Option<string[]>("--corpus")
        {
            Description = "corpus files, directories or globs (e.g. 'wiki/**/*.txt.gz'; .gz is read decompressed), in order; 'brown' (training split) or 'brown-heldout' for the Brown corpus",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var vocab = new Option<string>("--vocab") { Description = "vocab.txt (one token per line)", Required = true };
        var seq = new Option<int>("--seq") { Description = "sequence length S", DefaultValueFactory = _ => 128 };
        var output = new Option<string>("--out") { Description = "output root; shards go to OUT/seqS/", Required = true };
        var dupe = new Option<int>("--dupe") { Description = "passes over the corpus with different masks", DefaultValueFactory = _ => 5 };
        var seed = new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 12345UL };
        var wholeWord = new Option<bool>("--whole-word") { Description = "whole-word masking" };
        var maxPredictions = new Option<int?>("--max-predictions") { Description = "masked positions per instance (default 20 at S=128, 80 at S=512)" };
        var shortSeq = new Option<double>("--short-seq-prob") { Description = "probability of a shorter target length", DefaultValueFactory = _ => 0.1 };
        var mlmProb = new Option<double>("--masked-lm-prob") { Description = "fraction of tokens to predict", DefaultValueFactory = _ => 0.15 };
        var format = new Option<CorpusFormat>("--format") { Description = "documents or paragraphs", DefaultValueFactory = _ => CorpusFormat.Documents };
        var cased = new Option<bool>("--cased") { Description = "keep case and accents (cased vocabulary)" };
        var shardSize = new Option<int>("--shard-size") { Description = "instances per shard file", DefaultValueFactory = _ => 65536 };
        var dataRoot = new Option<string>("--data-root") { Description = "where setup.sh put the corpora", DefaultValueFactory = _ => "data" };
        var threads = new Option<int>("--threads") { Description = "threads for tokenizing and instance creation (0: all cores); the shards are the same for any number", DefaultValueFactory = _ => 0 };
        var window = new Option<int>("--window-mb") { Description = "MB of text (millions of characters) read, tokenized and turned into instances at a time; memory grows with it, not with the corpus", DefaultValueFactory = _ => 16 };
        var cmd = new Command("prepare", "tokenize a corpus and write pretraining shards")
        {
            corpus, vocab, seq, output, dupe, seed, wholeWord, maxPredictions, shortSeq, mlmProb, format, cased, shardSize, dataRoot, threads, window,
        };
        cmd.SetAction((r, ct) => Task.FromResult(DataCommands.Run(() =>
        {
            var options = new PretrainingDataOptions
            {
                SeqLength = r.GetValue(seq),
                MaxPredictions = r.GetValue(maxPredictions),
                DupeFactor = r.GetValue(dupe),
                Seed = r.GetValue(seed),
                WholeWordMask = r.GetValue(wholeWord),
                ShortSeqProb = r.GetValue(shortSeq),
                MaskedLmProb = r.GetValue(mlmProb),
                LowerCase = !r.GetValue(cased),
                InstancesPerShard = r.GetValue(shardSize),
                MaxDegreeOfParallelism = r.GetValue(threads) == 0 ? -1 : r.GetValue(threads),
                WindowChars = (long)r.GetValue(window) << 20,
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentOutOfRangeException e)
            {
                string option = e.ParamName switch
                {
                    nameof(PretrainingDataOptions.SeqLength) => "--seq",
                    nameof(PretrainingDataOptions.MaxPredictions) => "--max-predictions",
                    nameof(PretrainingDataOptions.DupeFactor) => "--dupe",
                    nameof(PretrainingDataOptions.ShortSeqProb) => "--short-seq-prob",
                    nameof(PretrainingDataOptions.MaskedLmProb) => "--masked-lm-prob",
                    nameof(PretrainingDataOptions.InstancesPerShard) => "--shard-size",
                    nameof(PretrainingDataOptions.MaxDegreeOfParallelism) => "--threads",
                    nameof(PretrainingDataOptions.WindowChars) => "--window-mb",
                    _ => e.ParamName ?? "option",
                };
                throw new UserException($"{option} {e.ActualValue}: {DataCommands.Reason(e)}");
            }
            var files = CorpusInputs.Expand(r.GetValue(corpus)!.Select(c => DataCommands.ResolveCorpus(c, r.GetValue(dataRoot)!, ct)));
            OutputPaths.RefuseOverlap("--out", r.GetValue(output)!, [.. files.Select(f => ("--corpus", (string?)f)), ("--vocab", r.GetValue(vocab))]);
            var vocabulary = Vocabulary.Load(r.GetValue(vocab)!);
            using var outLock = RunDirectoryLock.Acquire(r.GetValue(output)!, "bert prepare");
            string outDir = PretrainingDataBuilder.DatasetDirectory(r.GetValue(output)!, options.SeqLength);
            long total = CorpusInputs.TotalBytes(files);
            var stats = ProgressDisplay.Run("prepare", Math.Max(total, 1) / 1e6, report =>
                PretrainingDataBuilder.Build(files, r.GetValue(format), vocabulary, options, outDir, new SyncProgress<PrepareProgress>(p =>
                {
                    if (p.Stage == PrepareProgress.Stream)
                        report(p.BytesRead / 1e6, $"{p.BytesRead / 1e6:0.0} of {p.TotalBytes / 1e6:0.0} MB read, {p.InstancesWritten:N0} instances");
                }), ct));
            Console.WriteLine($"wrote {outDir}");
            Console.WriteLine(stats!.Summary());
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}

/// <summary>Reports on the caller's thread, so progress lines never arrive after the summary
/// (<see cref="Progress{T}"/> posts to the thread pool).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>What the data commands share: corpus names, progress display, error mapping.</summary>
internal static class DataCommands
{
    /// <summary>'brown' / 'brown-heldout' (converted on first use under the data root), or a file, directory or glob.</summary>
    public static string ResolveCorpus(string corpus, string dataRoot, CancellationToken ct)
    {
        if (File.Exists(corpus) || Directory.Exists(corpus) || corpus.IndexOfAny(['*', '?']) >= 0) return corpus;
        if (corpus is "brown" or "brown-heldout")
        {
            var files = BrownCorpus.Prepare(dataRoot, ct);
            return corpus == "brown" ? files.TrainPath : files.HeldOutPath;
        }
        throw new UserException($"--corpus {corpus}: no such file or directory (or use 'brown' / 'brown-heldout')", ExitCodes.BadInput);
    }

    /// <summary>An argument exception's message without the "(Parameter 'x')" and "Actual value" suffixes.</summary>
    public static string Reason(ArgumentException e)
    {
        string m = e.Message.Split(Environment.NewLine)[0];
        int cut = m.IndexOf(" (Parameter '", StringComparison.Ordinal);
        return cut >= 0 ? m[..cut] : m;
    }

    /// <summary>Runs <paramref name="work"/> with one progress bar per stage on an interactive
    /// terminal, or one line per finished stage otherwise.</summary>
    public static void WithProgress(string[] stages, Action<Action<string, double>> work)
    {
        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            var finished = new HashSet<string>();
            var gate = new object();
            work((stage, fraction) =>
            {
                if (fraction < 1) return;
                lock (gate)
                    if (finished.Add(stage)) Console.WriteLine($"  {stage} done");
            });
            return;
        }
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var tasks = stages.ToDictionary(s => s, s => ctx.AddTask(s, autoStart: false, maxValue: 1.0));
                work((stage, fraction) =>
                {
                    if (!tasks.TryGetValue(stage, out var t)) return;
                    lock (t)
                    {
                        if (!t.IsStarted) t.StartTask();
                        t.Value = Math.Max(t.Value, Math.Min(1.0, fraction));
                    }
                });
                foreach (var t in tasks.Values) t.Value = 1.0;
            });
    }

    /// <summary>Runs a data command, reporting its errors itself (so the exit code survives whatever the
    /// invocation's exception handler does), mapped as <see cref="CliErrors"/> maps every command's.</summary>
    public static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("bert: error: cancelled; nothing was written");
            return ExitCodes.Io;
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            Console.Error.WriteLine($"bert: error: {user.Message}");
            return user.ExitCode;
        }
    }
}
