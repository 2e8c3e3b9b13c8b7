using System.CommandLine;
using System.Globalization;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.Distributed;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert pretrain`: MLM + NSP pretraining with the 128/512 mixed-length schedule, AdamW with warmup
/// and linear decay, crash-safe checkpoints and exact resume. With no arguments it is the embedded
/// default job: the Brown corpus (prepared on first use), a WordPiece vocabulary learned from it,
/// the tiny preset, the GPU when there is one and the CPU otherwise.
/// </summary>
public static class PretrainCommand
{
    /// <summary>The options' defaults: one place, the settings record's initializers.</summary>
    private static readonly PretrainSettings D = new();

    public static Command Create()
    {
        var runConfig = new Option<string?>("--config") { Description = "a JSON file of options (keys are option names: {\"steps\": 1000, \"lr\": 1e-4, ...}); options on the command line override it" };
        var preset = new Option<string?>("--preset") { Description = "model preset: " + string.Join(", ", ModelPresets.Names) + " (default: tiny's sizes with dropout 0)" };
        var config = new Option<string?>("--model-config")
        {
            Description = "a HuggingFace BERT config.json giving the model's sizes (any: layers, hidden, heads, intermediate, positions, segments, activation, dropouts); vocab_size follows the vocabulary",
        };
        var steps = new Option<long>("--steps") { Description = "optimizer steps in all (both phases)", DefaultValueFactory = _ => D.Steps };
        var batch = new Option<int>("--batch") { Description = "sequences per optimizer step in the short phase (BERT: 256 at S=128)", DefaultValueFactory = _ => D.Batch };
        var micro = new Option<int?>("--micro-batch") { Description = "sequences per forward/backward in the short phase; gradients accumulate to --batch (default: --batch)" };
        var batchLong = new Option<int>("--batch-long") { Description = "sequences per optimizer step in the long phase", DefaultValueFactory = _ => D.BatchLong };
        var microLong = new Option<int?>("--micro-batch-long") { Description = "sequences per forward/backward in the long phase (default: --batch-long)" };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (BERT: 1e-4)", DefaultValueFactory = _ => D.LearningRate };
        var warmup = new Option<long?>("--warmup") { Description = "linear warmup steps (BERT: 10000 of 1M; default 10% of --steps)" };
        var longFraction = new Option<double>("--long-fraction") { Description = "fraction of steps at the long sequence length (BERT: 0.1)", DefaultValueFactory = _ => D.LongFraction };
        var seq = new Option<int>("--seq") { Description = "short phase sequence length (BERT: 128; the default job: 32)", DefaultValueFactory = _ => D.Seq };
        var seqLong = new Option<int>("--seq-long") { Description = "long phase sequence length (BERT: 512; the default job: 128)", DefaultValueFactory = _ => D.SeqLong };
        var data = new Option<string[]?>("--data")
        {
            Description = "dataset roots holding seqS/ directories made by `bert prepare`, trained on together (default: the Brown corpus)",
            AllowMultipleArgumentsPerToken = true,
        };
        var heldOut = new Option<string?>("--heldout") { Description = "held-out dataset root (seqS/ directories) for the final evaluation" };
        var vocab = new Option<string?>("--vocab") { Description = "vocab.txt the datasets were made with (required with --data); with --corpus, a vocabulary to use instead of learning one" };
        var corpus = new Option<string[]?>("--corpus")
        {
            Description = "text files (one sentence per line, blank line between documents): learn a vocabulary, write datasets at --seq and --seq-long under OUT/corpus/ (every 20th document held out), then train",
            AllowMultipleArgumentsPerToken = true,
        };
        var output = new Option<string>("--out") { Description = "run directory: checkpoints/, metrics.jsonl, loss.png", DefaultValueFactory = _ => D.Output };
        var resume = new Option<bool>("--resume") { Description = "continue from the newest complete checkpoint in --out" };
        var seed = new Option<ulong>("--seed") { Description = "seed of initialization, dropout and data order", DefaultValueFactory = _ => D.Seed };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => D.Threads };
        var device = new Option<string>("--device") { Description = "auto (GPU when present), cpu or cuda", DefaultValueFactory = _ => D.Device };
        var precision = Backends.PrecisionOption();
        var fusedAttention = Backends.FusedAttentionOption();
        var cudaGraphs = Backends.CudaGraphsOption();
        var checkpointEvery = new Option<long>("--checkpoint-every") { Description = "steps between checkpoints (0: only at the end)", DefaultValueFactory = _ => D.CheckpointEvery };
        var keep = new Option<int>("--keep") { Description = "checkpoints kept", DefaultValueFactory = _ => D.Keep };
        var evalSequences = new Option<long>("--eval-sequences") { Description = "held-out sequences evaluated at the end (0: none)", DefaultValueFactory = _ => D.EvalSequences };
        var dataRoot = new Option<string>("--data-root") { Description = "where setup.sh put the corpora (default corpus cache)", DefaultValueFactory = _ => D.DataRoot };
        var vocabSize = new Option<int>("--vocab-size") { Description = "vocabulary learned for the default corpus", DefaultValueFactory = _ => D.VocabSize };
        var distTimeout = new Option<double>("--dist-timeout")
        {
            Description = "data-parallel runs: seconds one collective may wait for the other ranks before the job is aborted (a rank died or hangs)",
            DefaultValueFactory = _ => D.DistTimeoutSeconds,
        };
        var checkReplicas = new Option<long>("--check-replicas")
        {
            Description = "data-parallel runs: compare hashes of every rank's weights and moments every N steps (0: at the start and at each checkpoint)",
            DefaultValueFactory = _ => D.CheckReplicasEvery,
        };
        var shardOptimizer = new Option<bool>("--shard-optimizer")
        {
            Description = "data-parallel runs: each rank keeps only its shard of the AdamW moments (ZeRO stage 1: gradients reduce-scattered, weights all-gathered)",
        };
        var tensorBoard = new Option<bool>("--tensorboard") { Description = "also write the metrics as TensorBoard event files under OUT/tensorboard/ (--tensorboard false: off)", DefaultValueFactory = _ => D.TensorBoard };

        var cmd = new Command("pretrain", "pretrain BERT (MLM + NSP); with no options, the default job on the Brown corpus")
        {
            runConfig, preset, config, steps, batch, micro, batchLong, microLong, lr, warmup, longFraction, seq, seqLong, data, heldOut, vocab, corpus,
            output, resume, seed, threads, device, precision, checkpointEvery, keep, evalSequences, dataRoot, vocabSize, tensorBoard,
            distTimeout, checkReplicas, shardOptimizer, fusedAttention, cudaGraphs,
        };
        cmd.SetAction((r, ct) => Task.FromResult(Run(new PretrainSettings
        {
            Preset = r.GetValue(preset),
            ModelConfig = r.GetValue(config),
            Steps = r.GetValue(steps),
            Batch = r.GetValue(batch),
            MicroBatch = r.GetValue(micro) ?? r.GetValue(batch),
            BatchLong = r.GetValue(batchLong),
            MicroBatchLong = r.GetValue(microLong) ?? r.GetValue(batchLong),
            LearningRate = r.GetValue(lr),
            Warmup = r.GetValue(warmup),
            LongFraction = r.GetValue(longFraction),
            Seq = r.GetValue(seq),
            SeqLong = r.GetValue(seqLong),
            Data = r.GetValue(data) is { Length: > 0 } roots ? string.Join(Path.PathSeparator, roots) : null,
            HeldOut = r.GetValue(heldOut),
            Vocab = r.GetValue(vocab),
            Corpus = r.GetValue(corpus),
            Output = r.GetValue(output)!,
            OutputIsDefault = r.GetResult(output) is not { Implicit: false },
            Resume = r.GetValue(resume),
            Seed = r.GetValue(seed),
            Threads = r.GetValue(threads),
            Device = r.GetValue(device)!,
            Precision = r.GetValue(precision)!,
            FusedAttention = r.GetValue(fusedAttention)!,
            CudaGraphs = r.GetValue(cudaGraphs)!,
            CheckpointEvery = r.GetValue(checkpointEvery),
            Keep = r.GetValue(keep),
            EvalSequences = r.GetValue(evalSequences),
            DataRoot = r.GetValue(dataRoot)!,
            VocabSize = r.GetValue(vocabSize),
            TensorBoard = r.GetValue(tensorBoard),
            DistTimeoutSeconds = r.GetValue(distTimeout),
            CheckReplicasEvery = r.GetValue(checkReplicas),
            ShardOptimizer = r.GetValue(shardOptimizer),
        }, ct)));
        return cmd;
    }

    public static int Run(PretrainSettings s, CancellationToken ct)
    {
        try
        {
            return RunCore(s, ct);
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }

    /// <summary>" with fused attention" when the backend runs it for this model, for the run's first line.</summary>
    internal static string FusedNote(IBackend backend, int batch, int seq, BertConfig config) =>
        Backends.AttentionKind(backend, batch, seq, config) == "fused" ? " with fused attention" : "";

    /// <summary>What the default job's model is called in messages and the run fingerprint.</summary>
    internal const string DefaultModelName = "tiny, dropout 0";

    /// <summary>The model's configuration: --model-config's config.json (its sizes; the heads are BertForPreTraining's)
    /// or the --preset, by default <see cref="ModelPresets.TinyNoDropout"/>, and the name printed for it.</summary>
    internal static (BertConfig Config, string Name) ModelOf(PretrainSettings s)
    {
        if (s.ModelConfig is { } path)
        {
            if (!File.Exists(path)) throw new UserException($"--model-config {path}: no such file", ExitCodes.BadInput);
            var config = BertForPreTraining.ResolveConfig(ConfigJson.Read(path).Model);
            string name = ModelPresets.NameOf(config) is { } preset ? preset
                : string.Create(CultureInfo.InvariantCulture, $"L{config.Layers} H{config.Hidden} A{config.Heads} I{config.Intermediate}");
            return (config, name);
        }
        if (s.Preset is null) return (ModelPresets.TinyNoDropout, DefaultModelName);
        string presetName = s.Preset;
        if (!ModelPresets.TryGet(presetName, out var p))
            throw new UserException($"--preset {presetName}: unknown preset; choose one of {string.Join(", ", ModelPresets.Names)}");
        return (p.Config, p.Name);
    }

    private static int RunCore(PretrainSettings s, CancellationToken ct)
    {
        s.Validate();
        // Data-parallel: every rank runs this command; rank 0 alone prepares data and writes the run directory.
        var launch = DistributedLaunch.FromEnvironment();
        bool lead = launch.Rank == 0;
        var log = lead ? Console.Out : TextWriter.Null;
        if (!lead) ProgressDisplay.Quiet = true;
        s = ContinueOrNumber(s, log);
        // One process per run directory: a second run (or a --resume while this one runs) is refused.
        using var runLock = lead ? RunDirectoryLock.Acquire(s.Output, "bert pretrain") : null;
        var (modelConfig, modelName) = ModelOf(s);
        int seqShort = s.Seq, seqLong = s.SeqLong;
        int predShort = PretrainingDataOptions.DefaultMaxPredictions(seqShort), predLong = PretrainingDataOptions.DefaultMaxPredictions(seqLong);
        var phases = PhasePlan.Create(s.Steps, s.LongFraction, (seqShort, predShort, s.Batch, s.MicroBatch), (seqLong, predLong, s.BatchLong, s.MicroBatchLong));
        if (phases.FirstOrDefault(p => p.SeqLength > modelConfig.MaxPositions) is { } tooLong)
            throw new UserException($"{(tooLong.SeqLength == seqShort ? "--seq" : "--seq-long")} {tooLong.SeqLength}: the {modelName} model has {modelConfig.MaxPositions} positions");

        // ---- device, ranks ---------------------------------------------------------------------
        using var backend = Backends.Create(s.Device, DistributedRun.Threads(s.Threads, launch), s.Precision, s.FusedAttention, modelConfig.HeadDim,
            DistributedRun.DeviceOrdinal(launch, s.Device));
        using var comm = DistributedRun.Open(launch, backend, TimeSpan.FromSeconds(s.DistTimeoutSeconds));
        if (comm.Size > 1)
        {
            // A rank's forward pass holds at most its share of the batch: the micro-batch shrinks to it.
            s = s with { MicroBatch = Math.Min(s.MicroBatch, Math.Max(1, s.Batch / comm.Size)), MicroBatchLong = Math.Min(s.MicroBatchLong, Math.Max(1, s.BatchLong / comm.Size)) };
            phases = PhasePlan.Create(s.Steps, s.LongFraction, (seqShort, predShort, s.Batch, s.MicroBatch), (seqLong, predLong, s.BatchLong, s.MicroBatchLong));
            if (phases.FirstOrDefault(p => p.Accumulation % comm.Size != 0) is { } uneven)
                throw new UserException(string.Create(CultureInfo.InvariantCulture,
                    $"{(uneven.SeqLength == seqShort ? "--batch" : "--batch-long")} {uneven.BatchSize}: {comm.Size} ranks need a multiple of ranks × micro-batch " +
                    $"({comm.Size} × {uneven.MicroBatch}); pass {(uneven.SeqLength == seqShort ? "--micro-batch" : "--micro-batch-long")} {uneven.BatchSize / comm.Size} or less"));
            DistributedRun.CheckSameSettings(comm, string.Join(";", s.Fingerprint(null).Select(kv => $"{kv.Key}={kv.Value}")) + $";out={Path.GetFullPath(s.Output)};resume={s.Resume}");
        }

        // ---- data ------------------------------------------------------------------------------
        // Rank 0 prepares (or finds) the datasets; the others wait for it, then open what it wrote.
        if (!lead) comm.Barrier("waiting for rank 0's data preparation", Timeout.InfiniteTimeSpan);
        var (vocabulary, trainRoots, heldOutDirs) = ResolveData(s, phases, ct);
        if (lead) comm.Barrier("waiting for rank 0's data preparation", Timeout.InfiniteTimeSpan);
        var datasets = new Dictionary<string, PretrainingDataset>();
        var heldOutSets = new Dictionary<string, PretrainingDataset>();
        try
        {
            foreach (var p in phases)
            {
                var d = PretrainingDataset.Open(trainRoots[p.SeqLength], vocabulary);
                datasets[p.Name] = d;
                CheckShape(d, p);
                if (heldOutDirs.TryGetValue(p.SeqLength, out var h))
                {
                    var held = PretrainingDataset.Open(h, vocabulary);
                    heldOutSets[p.Name] = held;
                    CheckShape(held, p);
                }
            }

            // ---- model ------------------------------------------------------------------------
            int maxMicro = phases.Max(p => p.MicroBatch), maxSeq = phases.Max(p => p.SeqLength), maxPred = phases.Max(p => p.MaxPredictions);
            using var model = new BertForPreTraining(backend, maxMicro, maxSeq, maxPred, modelConfig with { VocabSize = vocabulary.Count });
            var schedule = LearningRateSchedule.Create(s.LearningRate, s.Warmup ?? s.Steps / 10, s.Steps);
            var settings = s.Fingerprint(vocabulary);

            // Every check that can refuse the run comes before the first write into --out.
            var checkpoints = new TrainingCheckpoints(Path.Combine(s.Output, "checkpoints"), s.Keep);
            ResumePoint? resume = null;
            if (s.Resume)
            {
                if (checkpoints.Complete.Count == 0)
                    throw new UserException($"--resume: no complete checkpoint under {checkpoints.Root}", ExitCodes.BadInput);
                try
                {
                    resume = checkpoints.Load(model, settings);
                }
                catch (TensorMismatchException e)
                {
                    throw new UserException($"--resume: the checkpoint is not a {modelName} model with a vocabulary of {vocabulary.Count}: {e.Message}",
                        ExitCodes.BadInput);
                }
            }
            else
            {
                if (checkpoints.Complete.Count > 0)
                    throw new UserException($"{checkpoints.Root}: holds checkpoints of an earlier run; pass --resume to continue it or choose another --out", ExitCodes.Usage);
                model.InitializeParameters(s.Seed);
            }
            if (lead)
            {
                try
                {
                    Directory.CreateDirectory(s.Output);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new UserException($"--out {s.Output}: cannot create the run directory ({e.Message})", ExitCodes.Io);
                }
            }

            using var trainer = new Trainer(model, phases, datasets, schedule, new AdamWOptions(), s.Seed, resume?.State, comm, s.ShardOptimizer,
                graphs: Backends.ParseCudaGraphs(s.CudaGraphs, s.Device), log: line => log.WriteLine($"bert pretrain: {line}"));
            resume?.RestoreOptimizer(trainer.Optimizer);
            trainer.SynchronizeReplicas();

            var inv = CultureInfo.InvariantCulture;
            string plan = string.Join(", ", phases.Select(p => string.Create(inv, $"{p.Steps} at S={p.SeqLength} (batch {p.BatchSize}, micro {p.MicroBatch}, P={p.MaxPredictions})")));
            if (lead) RunConfig.WriteTo(s.Output);
            log.WriteLine(string.Create(inv,
                $"bert pretrain: {modelName} ({model.ParameterTotal:N0} parameters, vocab {vocabulary.Count}) on {backend.Name}{FusedNote(backend, maxMicro, maxSeq, modelConfig)}; {s.Steps} steps: {plan}; lr {s.LearningRate:G3}, warmup {schedule.WarmupSteps}")
                + (comm.Size > 1 ? string.Create(inv, $"; {comm.Size} ranks over {comm.Name}, {s.Batch / comm.Size} sequences each per step") : "")
                + (trainer.Optimizer.Shard is { } shard ? string.Create(inv, $"; AdamW moments sharded (ZeRO-1), {shard.Block:N0} parameters per rank") : "")
                + (resume is null ? "" : $"; resuming at step {resume.Step} from {resume.Directory}"));

            string metricsPath = Path.Combine(s.Output, "metrics.jsonl");
            using var metrics = lead ? new MetricsLog(metricsPath, trainer.Step, s.TensorBoard ? Path.Combine(s.Output, "tensorboard") : null) : null;
            using var stopper = new StopSignals("bert pretrain");
            double seqPerSec = 0;
            bool stopped = false;
            ProgressDisplay.Run("pretrain", s.Steps, report =>
            {
                report(trainer.Step, "");
                while (!trainer.Finished)
                {
                    // One process stops before the step; ranks share the request in the step's reduction and stop together after it.
                    if (comm.Size == 1 && (stopper.Requested || ct.IsCancellationRequested)) { stopped = true; break; }
                    var r = trainer.RunStep(stopper.Requested || ct.IsCancellationRequested);
                    metrics?.Write(r);
                    seqPerSec = seqPerSec == 0 ? r.Sequences / r.Seconds : 0.9 * seqPerSec + 0.1 * r.Sequences / r.Seconds;
                    report(trainer.Step, string.Create(CultureInfo.InvariantCulture,
                        $"step {trainer.Step}/{s.Steps} {r.Phase} loss {r.Loss:F3} mlm-acc {r.MlmAccuracy:P1} nsp-acc {r.NspAccuracy:P1} {seqPerSec:F1} seq/s"));
                    bool save = s.CheckpointEvery > 0 && trainer.Step % s.CheckpointEvery == 0 && !trainer.Finished;
                    if (comm.Size > 1 && (save || (s.CheckReplicasEvery > 0 && trainer.Step % s.CheckReplicasEvery == 0)))
                        trainer.CheckReplicas($"after step {trainer.Step}");
                    // Not cancellable: a stop request ends the loop and the final save follows anyway.
                    if (save) checkpoints.Save(trainer, vocabulary, settings); // every rank: sharded moments are gathered
                    if (trainer.StopRequestedByAnyRank) { stopped = !trainer.Finished; break; }
                }
                return 0;
            });
            if (comm.Size > 1) trainer.CheckReplicas($"after step {trainer.Step}");
            if (s.CudaGraphs != "off")
                log.WriteLine($"bert pretrain: cuda graphs {trainer.GraphState} ({trainer.GraphCaptures} captured: one per phase's micro-batch shape and per update)");
            string? last = checkpoints.Save(trainer, vocabulary, settings);
            if (!lead)
            {
                // The others have nothing to write; they end with the lead (whose evaluation runs alone).
                return stopped && stopper.Requested ? stopper.ExitCode : ExitCodes.Ok;
            }
            Console.WriteLine($"checkpoint: {last}");
            if (!trainer.Finished || stopped)
            {
                Console.WriteLine($"stopped at step {trainer.Step} of {s.Steps}; continue with the same options and --resume");
                return stopper.Requested ? stopper.ExitCode : ExitCodes.Ok;
            }

            foreach (var (name, set) in s.EvalSequences > 0 ? heldOutSets : [])
            {
                var e = trainer.Evaluate(set, s.EvalSequences, maxMicro);
                metrics!.WriteEval(trainer.Step, $"heldout-{name}", e);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"held-out {name}: loss {e.Loss:F4} (MLM {e.MlmLoss:F4}, NSP {e.NspLoss:F4}), MLM accuracy {e.MlmAccuracy:P2}, NSP accuracy {e.NspAccuracy:P2} over {e.Sequences} sequences"));
            }
            string png = Path.Combine(s.Output, "loss.png");
            TrainingPlot.Render(metricsPath, png, $"bert pretrain {modelName} on {backend.Name}");
            Console.WriteLine($"metrics: {metricsPath}; plot: {png}" + (s.TensorBoard ? $"; tensorboard: {Path.Combine(s.Output, "tensorboard")}" : ""));
            return ExitCodes.Ok;
        }
        finally
        {
            foreach (var d in datasets.Values) d.Dispose();
            foreach (var d in heldOutSets.Values) d.Dispose();
        }
    }

    /// <summary>
    /// The README's main job run a second time: without --out (and without --resume), an unfinished run
    /// in the default directory is resumed, and when it is finished the run goes to the next free
    /// numbered directory ("runs/pretrain-2", ...), so the headline command always works again.
    /// With an explicit --out nothing changes: an occupied directory is refused as before.
    /// </summary>
    internal static PretrainSettings ContinueOrNumber(PretrainSettings s, TextWriter log)
    {
        if (!s.OutputIsDefault || s.Resume) return s;
        for (int n = 1; n < 10_000; n++)
        {
            string dir = n == 1 ? s.Output : $"{s.Output}-{n}";
            var complete = CheckpointReader.ListComplete(PhysicalFileSystem.Instance, Path.GetFullPath(Path.Combine(dir, "checkpoints")));
            if (complete.Count == 0)
            {
                if (n > 1) log.WriteLine($"bert pretrain: {s.Output} holds a finished run; this run goes to {dir} (pass --out to choose the directory)");
                return s with { Output = dir };
            }
            if (complete[0].Step < s.Steps)
            {
                log.WriteLine($"bert pretrain: {dir} holds an unfinished run (step {complete[0].Step} of {s.Steps}); continuing it (pass --out to start another)");
                return s with { Output = dir, Resume = true };
            }
        }
        throw new UserException($"--out: {s.Output} and its numbered siblings all hold finished runs; pass --out", ExitCodes.Usage);
    }

    private static void CheckShape(PretrainingDataset d, Phase p)
    {
        if (d.SeqLength != p.SeqLength)
            throw new UserException($"{d.Directory}: dataset has seq_length {d.SeqLength}, phase {p.Name} needs {p.SeqLength} (prepare it with --seq {p.SeqLength})", ExitCodes.BadInput);
        if (d.MaxPredictions != p.MaxPredictions)
            throw new UserException($"{d.Directory}: dataset has max_predictions {d.MaxPredictions}, phase {p.Name} needs {p.MaxPredictions} (prepare it with --max-predictions {p.MaxPredictions})", ExitCodes.BadInput);
    }

    /// <summary>The vocabulary, the training dataset directories per sequence length (several --data roots are
    /// trained on together) and the held-out directory per sequence length.</summary>
    private static (Vocabulary, Dictionary<int, string[]>, Dictionary<int, string>) ResolveData(PretrainSettings s, IReadOnlyList<Phase> phases, CancellationToken ct)
    {
        var lengths = phases.Select(p => p.SeqLength).Distinct().ToArray();
        if (s.Corpus is { Count: > 0 } corpusFiles)
        {
            CorpusPretrainingFiles files = null!;
            ProgressDisplay.Run("preparing " + string.Join(" ", corpusFiles.Select(Path.GetFileName)), 1.0, report =>
            {
                var progress = new Progress<PrepareProgress>(p => report(p.Fraction, p.Stage));
                files = CorpusPretrainingData.Prepare(corpusFiles, Path.Combine(s.Output, "corpus"), s.Vocab, lengths, s.VocabSize,
                    progress: progress, cancellationToken: ct);
                return 0;
            });
            Console.WriteLine($"bert pretrain: {files.TrainDocuments} training and {files.HeldOutDocuments} held-out documents; vocabulary {files.VocabPath}");
            return (Vocabulary.Load(files.VocabPath), files.Datasets.ToDictionary(kv => kv.Key, kv => new[] { kv.Value }), new Dictionary<int, string>(files.HeldOutDatasets));
        }
        if (s.Data is null)
        {
            BrownPretrainingFiles files = null!;
            ProgressDisplay.Run("preparing the Brown corpus", 1.0, report =>
            {
                var progress = new Progress<PrepareProgress>(p => report(p.Fraction, p.Stage));
                files = BrownPretrainingData.Prepare(s.DataRoot, lengths, s.VocabSize, progress: progress, cancellationToken: ct);
                return 0;
            });
            return (Vocabulary.Load(files.VocabPath), files.Datasets.ToDictionary(kv => kv.Key, kv => new[] { kv.Value }), new Dictionary<int, string>(files.HeldOutDatasets));
        }
        if (s.Vocab is null) throw new UserException("--data needs --vocab (the vocab.txt the datasets were made with)");
        var vocabulary = Vocabulary.Load(s.Vocab);
        var roots = s.Data.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        var train = lengths.ToDictionary(l => l, l => roots.Select(r => DatasetAt("--data", r, l)).ToArray());
        var held = s.HeldOut is null ? new Dictionary<int, string>()
            : lengths.ToDictionary(l => l, l => DatasetAt("--heldout", s.HeldOut, l));
        return (vocabulary, train, held);
    }

    /// <summary>The seqS/ directory of a dataset root; when it is missing, an error naming the lengths the root has
    /// (datasets made for BERT's 128/512 need --seq 128 --seq-long 512: the defaults are the default job's 32/128).</summary>
    private static string DatasetAt(string option, string root, int seqLength)
    {
        string dir = PretrainingDataBuilder.DatasetDirectory(root, seqLength);
        if (Directory.Exists(dir) || !Directory.Exists(root)) return dir;
        var have = Directory.GetDirectories(root, "seq*").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        throw new UserException(
            $"{option} {root}: {dir} not found (the root has {(have.Length == 0 ? "no seqS/ dataset" : string.Join(", ", have))}); " +
            "pass --seq and --seq-long matching the lengths it was prepared at (the defaults, 32 and 128, are the default job's)", ExitCodes.BadInput);
    }

}

/// <summary>Every knob of `bert pretrain`.</summary>
public sealed record PretrainSettings
{
    /// <summary>--preset; null: the tiny sizes without dropout (<see cref="ModelPresets.TinyNoDropout"/>), unless <see cref="ModelConfig"/> is given.</summary>
    public string? Preset { get; init; }
    /// <summary>--model-config: a HuggingFace config.json with the model's sizes.</summary>
    public string? ModelConfig { get; init; }
    public long Steps { get; init; } = 5500;
    public int Batch { get; init; } = 32;
    public int MicroBatch { get; init; } = 32;
    public int BatchLong { get; init; } = 32;
    public int MicroBatchLong { get; init; } = 32;
    public double LearningRate { get; init; } = 1e-3;
    public long? Warmup { get; init; }
    public double LongFraction { get; init; } = 0.15;
    public int Seq { get; init; } = 32;
    public int SeqLong { get; init; } = 128;
    /// <summary>--data: dataset roots, separated by <see cref="Path.PathSeparator"/> when several.</summary>
    public string? Data { get; init; }
    public string? HeldOut { get; init; }
    public string? Vocab { get; init; }
    /// <summary>--corpus: text files to learn a vocabulary from and make datasets of, in the run directory.</summary>
    public IReadOnlyList<string>? Corpus { get; init; }
    public string Output { get; init; } = Path.Combine("runs", "pretrain");
    /// <summary>--out was not given: a second run of the default job continues or numbers its directory.</summary>
    public bool OutputIsDefault { get; init; }
    public bool Resume { get; init; }
    public ulong Seed { get; init; } = 42;
    public int Threads { get; init; }
    public string Device { get; init; } = "auto";
    public string Precision { get; init; } = "auto";
    /// <summary>--fused-attention: off, on or auto (see <see cref="Backends.FusedAttentionOption"/>).</summary>
    public string FusedAttention { get; init; } = "off";
    /// <summary>--cuda-graphs: off, on or auto (see <see cref="Backends.CudaGraphsOption"/>).</summary>
    public string CudaGraphs { get; init; } = "off";
    public long CheckpointEvery { get; init; } = 100;
    public int Keep { get; init; } = 3;
    public long EvalSequences { get; init; } = 2000;
    public string DataRoot { get; init; } = "data";
    public int VocabSize { get; init; } = 8000;
    /// <summary>--tensorboard: also write TensorBoard event files under Output/tensorboard/.</summary>
    public bool TensorBoard { get; init; } = true;
    /// <summary>--dist-timeout: seconds one collective may wait before a data-parallel job is aborted.</summary>
    public double DistTimeoutSeconds { get; init; } = 600;
    /// <summary>--check-replicas: steps between comparisons of the ranks' weights (0: at the start and at checkpoints).</summary>
    public long CheckReplicasEvery { get; init; }
    /// <summary>--shard-optimizer: ZeRO stage 1 over the ranks (ignored in a world of one).</summary>
    public bool ShardOptimizer { get; init; }

    /// <summary>More worker threads than this only thrash (and creating 100,000 aborts the runtime).</summary>
    public static int MaxThreads => Math.Max(256, 4 * Environment.ProcessorCount);

    public void Validate()
    {
        static void Positive(string option, double value)
        {
            if (!(value > 0) || double.IsInfinity(value)) throw new UserException($"{option} {value.ToString(CultureInfo.InvariantCulture)}: must be positive");
        }
        if (Preset is not null && ModelConfig is not null)
            throw new UserException($"--preset {Preset} and --model-config {ModelConfig}: give one (a preset's sizes or a config.json's)");
        Positive("--steps", Steps);
        Positive("--batch", Batch);
        Positive("--micro-batch", MicroBatch);
        Positive("--batch-long", BatchLong);
        Positive("--micro-batch-long", MicroBatchLong);
        Positive("--lr", LearningRate);
        Positive("--keep", Keep);
        if (EvalSequences < 0) throw new UserException($"--eval-sequences {EvalSequences}: must be 0 (no held-out evaluation) or positive");
        if (Batch % MicroBatch != 0) throw new UserException($"--micro-batch {MicroBatch}: must divide --batch {Batch}");
        if (BatchLong % MicroBatchLong != 0) throw new UserException($"--micro-batch-long {MicroBatchLong}: must divide --batch-long {BatchLong}");
        if (Warmup is < 0 || Warmup > Steps) throw new UserException($"--warmup {Warmup}: must be in [0, {Steps}]");
        if (!(LongFraction >= 0 && LongFraction <= 1)) throw new UserException($"--long-fraction {LongFraction.ToString(CultureInfo.InvariantCulture)}: must be in [0, 1]");
        if (Seq < 8 || SeqLong < 8) throw new UserException($"--seq {Seq} / --seq-long {SeqLong}: sequence lengths must be at least 8");
        if (LongFraction > 0 && SeqLong <= Seq)
            throw new UserException($"--seq {Seq} / --seq-long {SeqLong}: the long phase's sequence length (--seq-long) must be longer than the short one's (--seq); for one sequence length, pass --long-fraction 0");
        if (LearningRate > 1e3)
            throw new UserException($"--lr {LearningRate.ToString(CultureInfo.InvariantCulture)}: must be at most 1000 (BERT uses 1e-4)");
        if (Threads > MaxThreads)
            throw new UserException($"--threads {Threads}: at most {MaxThreads} (this machine has {Environment.ProcessorCount} cores; 0 uses all of them)");
        if (Threads < 0) throw new UserException($"--threads {Threads}: must be 0 (all cores) or positive");
        if (CheckpointEvery < 0) throw new UserException($"--checkpoint-every {CheckpointEvery}: must be non-negative");
        if (!(DistTimeoutSeconds > 0) || DistTimeoutSeconds > 7 * 24 * 3600)
            throw new UserException($"--dist-timeout {DistTimeoutSeconds.ToString(CultureInfo.InvariantCulture)}: must be in (0, 604800] seconds");
        if (CheckReplicasEvery < 0) throw new UserException($"--check-replicas {CheckReplicasEvery}: must be 0 (start and checkpoints) or positive");
        if (Corpus is { Count: > 0 } && (Data is not null || HeldOut is not null))
            throw new UserException("--corpus makes its own datasets; give either --corpus or --data/--heldout, not both");
        if (Device is not ("auto" or "cpu" or "cuda")) throw new UserException($"--device {Device}: choose auto, cpu or cuda");
        Backends.ValidatePrecision(Device, Precision);
        Backends.ValidateFusedAttention(Device, Precision, FusedAttention);
        Backends.ParseCudaGraphs(CudaGraphs, Device);
    }

    /// <summary>Settings a resumed run must share with the run it continues.</summary>
    public IReadOnlyDictionary<string, string> Fingerprint(Vocabulary? vocabulary)
    {
        var settings = new Dictionary<string, string>
    {
        ["preset"] = ModelConfig is null ? Preset ?? PretrainCommand.DefaultModelName : "config " + Path.GetFullPath(ModelConfig),
        ["steps"] = Steps.ToString(CultureInfo.InvariantCulture),
        // The global batch sizes only: the micro-batch splits a step's batch (differently on another number of
        // ranks) without changing what the step computes, so a resume may change it. (Checkpoints before
        // 2026-12-05 stored "batch" as "B/micro"; keys missing on either side are not compared.)
        ["batch_size"] = Batch.ToString(CultureInfo.InvariantCulture),
        ["batch_size_long"] = BatchLong.ToString(CultureInfo.InvariantCulture),
        ["lr"] = LearningRate.ToString("R", CultureInfo.InvariantCulture),
        ["warmup"] = (Warmup ?? Steps / 10).ToString(CultureInfo.InvariantCulture),
        ["long_fraction"] = LongFraction.ToString("R", CultureInfo.InvariantCulture),
        ["seq"] = $"{Seq}/{SeqLong}",
        ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
    };
        if (vocabulary is not null) settings["vocab_hash"] = vocabulary.Hash.ToString("x16", CultureInfo.InvariantCulture);
        return settings;
    }
}
