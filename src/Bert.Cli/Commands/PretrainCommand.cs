using System.CommandLine;
using System.Globalization;
using Bert.Runtime;
using Bert.Runtime.Data;
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
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "model preset: " + string.Join(", ", ModelPresets.Names), DefaultValueFactory = _ => "tiny" };
        var steps = new Option<long>("--steps") { Description = "optimizer steps in all (both phases)", DefaultValueFactory = _ => 600 };
        var batch = new Option<int>("--batch") { Description = "sequences per optimizer step at S=128 (256 at full scale)", DefaultValueFactory = _ => 32 };
        var micro = new Option<int?>("--micro-batch") { Description = "sequences per forward/backward at S=128; gradients accumulate to --batch (default: --batch)" };
        var batchLong = new Option<int>("--batch-long") { Description = "sequences per optimizer step at S=512", DefaultValueFactory = _ => 8 };
        var microLong = new Option<int?>("--micro-batch-long") { Description = "sequences per forward/backward at S=512 (default: --batch-long)" };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (BERT: 1e-4)", DefaultValueFactory = _ => 1e-3 };
        var warmup = new Option<long?>("--warmup") { Description = "linear warmup steps (BERT: 10000 of 1M; default 10% of --steps)" };
        var longFraction = new Option<double>("--long-fraction") { Description = "fraction of steps at the long sequence length (BERT: 0.1)", DefaultValueFactory = _ => 0.1 };
        var seq = new Option<int>("--seq") { Description = "short phase sequence length", DefaultValueFactory = _ => 128 };
        var seqLong = new Option<int>("--seq-long") { Description = "long phase sequence length", DefaultValueFactory = _ => 512 };
        var data = new Option<string?>("--data") { Description = "dataset root holding seqS/ directories made by `bert prepare` (default: the Brown corpus)" };
        var heldOut = new Option<string?>("--heldout") { Description = "held-out dataset root (seqS/ directories) for the final evaluation" };
        var vocab = new Option<string?>("--vocab") { Description = "vocab.txt the datasets were made with (required with --data)" };
        var output = new Option<string>("--out") { Description = "run directory: checkpoints/, metrics.jsonl, loss.png", DefaultValueFactory = _ => Path.Combine("runs", "pretrain") };
        var resume = new Option<bool>("--resume") { Description = "continue from the newest complete checkpoint in --out" };
        var seed = new Option<ulong>("--seed") { Description = "seed of initialization, dropout and data order", DefaultValueFactory = _ => 42UL };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto (GPU when present), cpu or cuda", DefaultValueFactory = _ => "auto" };
        var checkpointEvery = new Option<long>("--checkpoint-every") { Description = "steps between checkpoints (0: only at the end)", DefaultValueFactory = _ => 100 };
        var keep = new Option<int>("--keep") { Description = "checkpoints kept", DefaultValueFactory = _ => 3 };
        var evalSequences = new Option<long>("--eval-sequences") { Description = "held-out sequences evaluated at the end", DefaultValueFactory = _ => 2000 };
        var dataRoot = new Option<string>("--data-root") { Description = "where setup.sh put the corpora (default corpus cache)", DefaultValueFactory = _ => "data" };
        var vocabSize = new Option<int>("--vocab-size") { Description = "vocabulary learned for the default corpus", DefaultValueFactory = _ => 8000 };

        var cmd = new Command("pretrain", "pretrain BERT (MLM + NSP); with no options, the default job on the Brown corpus")
        {
            preset, steps, batch, micro, batchLong, microLong, lr, warmup, longFraction, seq, seqLong, data, heldOut, vocab,
            output, resume, seed, threads, device, checkpointEvery, keep, evalSequences, dataRoot, vocabSize,
        };
        cmd.SetAction((r, ct) => Task.FromResult(Run(new PretrainSettings
        {
            Preset = r.GetValue(preset)!,
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
            Data = r.GetValue(data),
            HeldOut = r.GetValue(heldOut),
            Vocab = r.GetValue(vocab),
            Output = r.GetValue(output)!,
            Resume = r.GetValue(resume),
            Seed = r.GetValue(seed),
            Threads = r.GetValue(threads),
            Device = r.GetValue(device)!,
            CheckpointEvery = r.GetValue(checkpointEvery),
            Keep = r.GetValue(keep),
            EvalSequences = r.GetValue(evalSequences),
            DataRoot = r.GetValue(dataRoot)!,
            VocabSize = r.GetValue(vocabSize),
        }, ct)));
        return cmd;
    }

    public static int Run(PretrainSettings s, CancellationToken ct)
    {
        s.Validate();
        if (!ModelPresets.TryGet(s.Preset, out var preset))
            throw new UserException($"--preset {s.Preset}: unknown preset; choose one of {string.Join(", ", ModelPresets.Names)}");
        int seqShort = s.Seq, seqLong = s.SeqLong;
        int predShort = PretrainingDataOptions.DefaultMaxPredictions(seqShort), predLong = PretrainingDataOptions.DefaultMaxPredictions(seqLong);
        var phases = PhasePlan.Create(s.Steps, s.LongFraction, (seqShort, predShort, s.Batch, s.MicroBatch), (seqLong, predLong, s.BatchLong, s.MicroBatchLong));
        if (phases.Any(p => p.SeqLength > preset.Config.MaxPositions))
            throw new UserException($"--seq-long {seqLong}: the {preset.Name} preset has {preset.Config.MaxPositions} positions");

        // ---- data ------------------------------------------------------------------------------
        var (vocabulary, trainDirs, heldOutDirs) = ResolveData(s, phases, ct);
        var datasets = new Dictionary<string, PretrainingDataset>();
        var heldOutSets = new Dictionary<string, PretrainingDataset>();
        try
        {
            foreach (var p in phases)
            {
                var d = PretrainingDataset.Open(trainDirs[p.SeqLength], vocabulary);
                datasets[p.Name] = d;
                if (d.MaxPredictions != p.MaxPredictions)
                    throw new UserException($"{d.Directory}: dataset has max_predictions {d.MaxPredictions}, phase {p.Name} needs {p.MaxPredictions} (prepare it with --max-predictions {p.MaxPredictions})", ExitCodes.BadInput);
                if (heldOutDirs.TryGetValue(p.SeqLength, out var h)) heldOutSets[p.Name] = PretrainingDataset.Open(h, vocabulary);
            }

            // ---- device and model ------------------------------------------------------------
            using var backend = Backends.Create(s.Device, s.Threads);
            int maxMicro = phases.Max(p => p.MicroBatch), maxSeq = phases.Max(p => p.SeqLength), maxPred = phases.Max(p => p.MaxPredictions);
            using var model = preset.Create(backend, maxMicro, maxSeq, maxPred, vocabulary.Count);
            var schedule = LearningRateSchedule.Create(s.LearningRate, s.Warmup ?? s.Steps / 10, s.Steps);
            var settings = s.Fingerprint(vocabulary);

            Directory.CreateDirectory(s.Output);
            string checkpointRoot = Path.Combine(s.Output, "checkpoints");
            var writer = new CheckpointWriter(checkpointRoot, new CheckpointWriterOptions { KeepLast = s.Keep });
            TrainerState? state = null;
            (float[] M, float[] V)? moments = null;
            if (s.Resume)
            {
                state = LoadCheckpoint(checkpointRoot, model, settings, out var loaded);
                moments = loaded;
            }
            else
            {
                if (CheckpointReader.ListComplete(PhysicalFileSystem.Instance, checkpointRoot).Count > 0)
                    throw new UserException($"{checkpointRoot}: holds checkpoints of an earlier run; pass --resume to continue it or choose another --out", ExitCodes.Usage);
                model.InitializeParameters(s.Seed);
            }

            using var trainer = new Trainer(model, phases, datasets, schedule, new AdamWOptions(), s.Seed, state);
            if (moments is { } mv)
            {
                backend.Upload<float>(trainer.Optimizer.M, mv.M);
                backend.Upload<float>(trainer.Optimizer.V, mv.V);
            }

            var inv = CultureInfo.InvariantCulture;
            string plan = string.Join(", ", phases.Select(p => string.Create(inv, $"{p.Steps} at S={p.SeqLength} (batch {p.BatchSize}, micro {p.MicroBatch}, P={p.MaxPredictions})")));
            Console.WriteLine(string.Create(inv,
                $"bert pretrain: {preset.Name} ({model.ParameterTotal:N0} parameters, vocab {vocabulary.Count}) on {backend.Name}; {s.Steps} steps: {plan}; lr {s.LearningRate:G3}, warmup {schedule.WarmupSteps}")
                + (state is null ? "" : $"; resuming at step {state.Step}"));

            string metricsPath = Path.Combine(s.Output, "metrics.jsonl");
            using var metrics = new MetricsLog(metricsPath, trainer.Step);
            bool stop = false;
            ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stop = true; };
            Console.CancelKeyPress += onCancel;
            try
            {
                double seqPerSec = 0;
                ProgressDisplay.Run("pretrain", s.Steps, report =>
                {
                    report(trainer.Step, "");
                    while (!trainer.Finished && !stop && !ct.IsCancellationRequested)
                    {
                        var r = trainer.RunStep();
                        metrics.Write(r);
                        seqPerSec = seqPerSec == 0 ? r.Sequences / r.Seconds : 0.9 * seqPerSec + 0.1 * r.Sequences / r.Seconds;
                        report(trainer.Step, string.Create(CultureInfo.InvariantCulture,
                            $"step {trainer.Step}/{s.Steps} {r.Phase} loss {r.Loss:F3} mlm-acc {r.MlmAccuracy:P1} nsp-acc {r.NspAccuracy:P1} {seqPerSec:F1} seq/s"));
                        if (s.CheckpointEvery > 0 && trainer.Step % s.CheckpointEvery == 0 && !trainer.Finished)
                            Save(writer, trainer, vocabulary, settings, ct);
                    }
                    return 0;
                });
            }
            catch (NonFiniteException e)
            {
                throw new UserException(e.Message, ExitCodes.NonFinite);
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
            string last = Save(writer, trainer, vocabulary, settings, CancellationToken.None);
            Console.WriteLine($"checkpoint: {last}");
            if (!trainer.Finished)
            {
                Console.WriteLine($"stopped at step {trainer.Step} of {s.Steps}; continue with --resume");
                return ExitCodes.Ok;
            }

            foreach (var (name, set) in heldOutSets)
            {
                var e = trainer.Evaluate(set, s.EvalSequences, maxMicro);
                metrics.WriteEval(trainer.Step, $"heldout-{name}", e);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"held-out {name}: loss {e.Loss:F4} (MLM {e.MlmLoss:F4}, NSP {e.NspLoss:F4}), MLM accuracy {e.MlmAccuracy:P2}, NSP accuracy {e.NspAccuracy:P2} over {e.Sequences} sequences"));
            }
            string png = Path.Combine(s.Output, "loss.png");
            TrainingPlot.Render(metricsPath, png, $"bert pretrain {preset.Name} on {backend.Name}");
            Console.WriteLine($"metrics: {metricsPath}; plot: {png}");
            return ExitCodes.Ok;
        }
        finally
        {
            foreach (var d in datasets.Values) d.Dispose();
            foreach (var d in heldOutSets.Values) d.Dispose();
        }
    }

    private static (Vocabulary, Dictionary<int, string>, Dictionary<int, string>) ResolveData(PretrainSettings s, IReadOnlyList<Phase> phases, CancellationToken ct)
    {
        var lengths = phases.Select(p => p.SeqLength).Distinct().ToArray();
        if (s.Data is null)
        {
            BrownPretrainingFiles files = null!;
            ProgressDisplay.Run("preparing the Brown corpus", 1.0, report =>
            {
                var progress = new Progress<PrepareProgress>(p => report(p.Fraction, p.Stage));
                files = BrownPretrainingData.Prepare(s.DataRoot, lengths, s.VocabSize, progress: progress, cancellationToken: ct);
                return 0;
            });
            return (Vocabulary.Load(files.VocabPath), new Dictionary<int, string>(files.Datasets), new Dictionary<int, string>(files.HeldOutDatasets));
        }
        if (s.Vocab is null) throw new UserException("--data needs --vocab (the vocab.txt the datasets were made with)");
        var vocabulary = Vocabulary.Load(s.Vocab);
        var train = lengths.ToDictionary(l => l, l => PretrainingDataBuilder.DatasetDirectory(s.Data, l));
        var held = s.HeldOut is null ? new Dictionary<int, string>()
            : lengths.ToDictionary(l => l, l => PretrainingDataBuilder.DatasetDirectory(s.HeldOut, l));
        return (vocabulary, train, held);
    }

    private static string Save(CheckpointWriter writer, Trainer trainer, Vocabulary vocabulary, IReadOnlyDictionary<string, string> settings, CancellationToken ct)
    {
        var model = trainer.Model;
        var be = model.Backend;
        var p = new float[model.ParameterTotal];
        var m = new float[model.ParameterTotal];
        var v = new float[model.ParameterTotal];
        be.Download<float>(p, model.Parameters);
        be.Download<float>(m, trainer.Optimizer.M);
        be.Download<float>(v, trainer.Optimizer.V);
        return writer.Save(new CheckpointContent
        {
            Step = trainer.Step,
            Config = model.Config,
            Table = model.ParameterTable,
            Parameters = p,
            AdamM = m,
            AdamV = v,
            TrainerState = TrainerStateJson.Write(trainer.State, settings),
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = File.ReadAllBytes(vocabulary.Source) },
        }, ct);
    }

    private static TrainerState LoadCheckpoint(string root, BertModelBase model, IReadOnlyDictionary<string, string> settings, out (float[] M, float[] V) moments)
    {
        if (CheckpointReader.FindLatest(root) is null)
            throw new UserException($"--resume: no complete checkpoint under {Path.GetFullPath(root)}", ExitCodes.BadInput);
        var ckpt = CheckpointReader.Open(root);
        var (state, saved) = TrainerStateJson.Read(ckpt.ReadTrainerState(), Path.Combine(ckpt.Directory, CheckpointWriter.TrainerStateFile));
        foreach (var (k, v) in settings)
            if (saved.TryGetValue(k, out var old) && old != v)
                throw new UserException($"--resume: {k} is {v} but the checkpoint {ckpt.Directory} was trained with {old}; resume with the same settings", ExitCodes.Usage);
        var p = new float[model.ParameterTotal];
        ckpt.ReadParameters(model.ParameterTable, p);
        model.Backend.Upload<float>(model.Parameters, p);
        moments = (new float[model.ParameterTotal], new float[model.ParameterTotal]);
        ckpt.ReadOptimizerState(model.ParameterTable, moments.M, moments.V);
        return state;
    }
}

/// <summary>Every knob of `bert pretrain`.</summary>
public sealed record PretrainSettings
{
    public string Preset { get; init; } = "tiny";
    public long Steps { get; init; } = 600;
    public int Batch { get; init; } = 32;
    public int MicroBatch { get; init; } = 32;
    public int BatchLong { get; init; } = 8;
    public int MicroBatchLong { get; init; } = 8;
    public double LearningRate { get; init; } = 1e-3;
    public long? Warmup { get; init; }
    public double LongFraction { get; init; } = 0.1;
    public int Seq { get; init; } = 128;
    public int SeqLong { get; init; } = 512;
    public string? Data { get; init; }
    public string? HeldOut { get; init; }
    public string? Vocab { get; init; }
    public string Output { get; init; } = Path.Combine("runs", "pretrain");
    public bool Resume { get; init; }
    public ulong Seed { get; init; } = 42;
    public int Threads { get; init; }
    public string Device { get; init; } = "auto";
    public long CheckpointEvery { get; init; } = 100;
    public int Keep { get; init; } = 3;
    public long EvalSequences { get; init; } = 2000;
    public string DataRoot { get; init; } = "data";
    public int VocabSize { get; init; } = 8000;

    public void Validate()
    {
        static void Positive(string option, double value)
        {
            if (!(value > 0) || double.IsInfinity(value)) throw new UserException($"{option} {value.ToString(CultureInfo.InvariantCulture)}: must be positive");
        }
        Positive("--steps", Steps);
        Positive("--batch", Batch);
        Positive("--micro-batch", MicroBatch);
        Positive("--batch-long", BatchLong);
        Positive("--micro-batch-long", MicroBatchLong);
        Positive("--lr", LearningRate);
        Positive("--keep", Keep);
        if (Batch % MicroBatch != 0) throw new UserException($"--micro-batch {MicroBatch}: must divide --batch {Batch}");
        if (BatchLong % MicroBatchLong != 0) throw new UserException($"--micro-batch-long {MicroBatchLong}: must divide --batch-long {BatchLong}");
        if (Warmup is < 0 || Warmup > Steps) throw new UserException($"--warmup {Warmup}: must be in [0, {Steps}]");
        if (!(LongFraction >= 0 && LongFraction <= 1)) throw new UserException($"--long-fraction {LongFraction.ToString(CultureInfo.InvariantCulture)}: must be in [0, 1]");
        if (Seq < 8 || SeqLong < 8) throw new UserException($"--seq {Seq} / --seq-long {SeqLong}: sequence lengths must be at least 8");
        if (Threads < 0) throw new UserException($"--threads {Threads}: must be 0 (all cores) or positive");
        if (CheckpointEvery < 0) throw new UserException($"--checkpoint-every {CheckpointEvery}: must be non-negative");
        if (Device is not ("auto" or "cpu" or "cuda")) throw new UserException($"--device {Device}: choose auto, cpu or cuda");
    }

    /// <summary>Settings a resumed run must share with the run it continues.</summary>
    public IReadOnlyDictionary<string, string> Fingerprint(Vocabulary vocabulary) => new Dictionary<string, string>
    {
        ["preset"] = Preset,
        ["steps"] = Steps.ToString(CultureInfo.InvariantCulture),
        ["batch"] = $"{Batch}/{MicroBatch}",
        ["batch_long"] = $"{BatchLong}/{MicroBatchLong}",
        ["lr"] = LearningRate.ToString("R", CultureInfo.InvariantCulture),
        ["warmup"] = (Warmup ?? Steps / 10).ToString(CultureInfo.InvariantCulture),
        ["long_fraction"] = LongFraction.ToString("R", CultureInfo.InvariantCulture),
        ["seq"] = $"{Seq}/{SeqLong}",
        ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
        ["vocab_hash"] = vocabulary.Hash.ToString("x16", CultureInfo.InvariantCulture),
    };
}
