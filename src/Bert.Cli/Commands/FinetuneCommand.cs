using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert finetune --task classify|tokens|span --checkpoint DIR --data FILE --out DIR`: fine-tunes a
/// pretrained checkpoint on a labelled task (BERT's recipe: AdamW, warmup then linear decay, a few
/// epochs), evaluates on the validation split after every epoch, keeps the best checkpoint, and scores
/// it on the test split when there is one. `--data spam` is the built-in SpamAssassin ham/spam task.
/// </summary>
public static class FinetuneCommand
{
    public const string DefaultCheckpoint = "runs/pretrain/checkpoints";

    public static Command Create()
    {
        var task = new Option<string>("--task") { Description = "classify (sequence classification), tokens (token classification) or span (extractive QA)", Required = true };
        var checkpoint = new Option<string>("--checkpoint") { Description = "pretrained checkpoint (a run's checkpoint root, a step-N directory, or a HuggingFace model directory)", DefaultValueFactory = _ => DefaultCheckpoint };
        var data = new Option<string>("--data") { Description = "training data: classify .tsv/.jsonl, tokens CoNLL, span .jsonl; or `spam` (the SpamAssassin corpus)", Required = true };
        var validation = new Option<string?>("--validation") { Description = "validation data (default: every 10th training example, see --validation-fraction)" };
        var test = new Option<string?>("--test") { Description = "test data, scored once with the best checkpoint at the end" };
        var validationFraction = new Option<double>("--validation-fraction") { Description = "share of --data held out for validation when --validation is not given", DefaultValueFactory = _ => 0.1 };
        var output = new Option<string>("--out") { Description = "run directory: best/, metrics.jsonl, finetune.png, results.json", DefaultValueFactory = _ => Path.Combine("runs", "finetune") };
        var epochs = new Option<int>("--epochs") { Description = "passes over the training data (BERT: 2-4)", DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch") { Description = "rows per optimizer step (BERT: 32)", DefaultValueFactory = _ => 32 };
        var micro = new Option<int?>("--micro-batch") { Description = "rows per forward/backward; gradients accumulate to --batch (default: --batch)" };
        var lr = new Option<double?>("--lr") { Description = "peak learning rate (default: 5e-5, BERT's range is 2e-5..5e-5; 2e-4 for tiny and mini, which need more)" };
        var warmup = new Option<double>("--warmup") { Description = "fraction of the steps spent warming up", DefaultValueFactory = _ => 0.1 };
        var weightDecay = new Option<float>("--weight-decay") { Description = "AdamW weight decay (not on LayerNorm weights and biases)", DefaultValueFactory = _ => 0.01f };
        var maxSeq = new Option<int>("--max-seq") { Description = "tokens per row, [CLS] and [SEP] included (longer texts are truncated; long sentences and contexts are split)", DefaultValueFactory = _ => 128 };
        var tailTokens = new Option<int?>("--tail-tokens") { Description = "classify: a truncated text keeps its last N tokens besides its first max-seq−2−N (head+tail truncation; default 0: the head only)" };
        var windows = new Option<int?>("--windows") { Description = "classify: cut a long text into up to N windows of max-seq tokens (the last one its end), train on each and average their logits (default 1: truncate; 4 with --data spam)" };
        var docStride = new Option<int>("--doc-stride") { Description = "span: word pieces between the starts of two context windows", DefaultValueFactory = _ => 128 };
        var seed = new Option<ulong>("--seed") { Description = "seed of the head's initialization, data order and dropout", DefaultValueFactory = _ => 42UL };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto (GPU when present), cpu or cuda", DefaultValueFactory = _ => "auto" };
        var fusedAttention = Backends.FusedAttentionOption();
        var dataRoot = new Option<string>("--data-root") { Description = "where setup.sh put the corpora (for --data spam)", DefaultValueFactory = _ => "data" };
        var tensorBoard = new Option<bool>("--tensorboard") { Description = "also write the metrics as TensorBoard event files under OUT/tensorboard/ (--tensorboard false: off)", DefaultValueFactory = _ => true };

        var runConfig = new Option<string?>("--config") { Description = "a JSON file of options (keys are option names: {\"epochs\": 3, \"lr\": 2e-5, ...}); options on the command line override it" };
        var cmd = new Command("finetune", "fine-tune a pretrained checkpoint: sequence classification, token classification or span extraction")
        {
            runConfig, task, checkpoint, data, validation, test, validationFraction, output, epochs, batch, micro, lr, warmup, weightDecay,
            maxSeq, tailTokens, windows, docStride, seed, threads, device, dataRoot, tensorBoard, fusedAttention,
        };
        cmd.SetAction((r, ct) => Task.FromResult(Run(new FinetuneSettings
        {
            Task = r.GetValue(task)!,
            Checkpoint = r.GetValue(checkpoint)!,
            Data = r.GetValue(data)!,
            Validation = r.GetValue(validation),
            Test = r.GetValue(test),
            ValidationFraction = r.GetValue(validationFraction),
            Output = r.GetValue(output)!,
            Epochs = r.GetValue(epochs),
            Batch = r.GetValue(batch),
            MicroBatch = r.GetValue(micro),
            LearningRate = r.GetValue(lr),
            Warmup = r.GetValue(warmup),
            WeightDecay = r.GetValue(weightDecay),
            MaxSeq = r.GetValue(maxSeq),
            TailTokens = r.GetValue(tailTokens),
            Windows = r.GetValue(windows),
            DocStride = r.GetValue(docStride),
            Seed = r.GetValue(seed),
            Threads = r.GetValue(threads),
            Device = r.GetValue(device)!,
            FusedAttention = r.GetValue(fusedAttention)!,
            DataRoot = r.GetValue(dataRoot)!,
            TensorBoard = r.GetValue(tensorBoard),
        }, Console.Out, ct)));
        return cmd;
    }

    /// <summary>The peak learning rate when --lr is not given: 5e-5 (the top of BERT's 2e-5..5e-5), but
    /// 2e-4 for the two smallest presets, whose few, narrow layers move too slowly at BERT's rates in
    /// a few epochs (measured on the SpamAssassin task; see docs/finetune.md).</summary>
    /// <summary>2e-4 for models of hidden size 256 and less (BERT-Tiny and -Mini, as the BERT authors' small-model
    /// fine-tuning recipes use), 5e-5 otherwise.</summary>
    public static double DefaultLearningRate(BertConfig config) => config.Hidden <= 256 ? 2e-4 : 5e-5;

    public static int Run(FinetuneSettings s, TextWriter log, CancellationToken ct)
    {
        try
        {
            return RunCore(s, log, ct);
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }

    private static int RunCore(FinetuneSettings s, TextWriter log, CancellationToken ct)
    {
        var inv = CultureInfo.InvariantCulture;
        if (!FineTuningTasks.TryParse(s.Task, out var task))
            throw new UserException($"--task {s.Task}: choose classify, tokens or span");
        s.Validate();
        if (s.Data == "spam" && task != FineTuningTask.Classification)
            throw new UserException($"--data spam is a classification task; use it with --task classify (not {s.Task})");

        // ---- pretrained model and tokenizer ---------------------------------------------------
        OutputPaths.RefuseOverlap("--out", s.Output, ("--checkpoint", s.Checkpoint), ("--data", s.Data == "spam" ? null : s.Data));
        var source = OpenCheckpoint(s.Checkpoint);
        var vocabulary = source.LoadVocabulary();
        bool lowerCase = source.LowerCase(vocabulary);
        var tokenizer = new BertTokenizer(vocabulary, lowerCase);
        if (s.MaxSeq > source.Config.MaxPositions)
            throw new UserException($"--max-seq {s.MaxSeq}: the model has {source.Config.MaxPositions} positions");

        // ---- data ---------------------------------------------------------------------------
        var data = LoadData(s, task, tokenizer, log, ct);
        int classes = task == FineTuningTask.Span ? 2 : data.LabelNames.Count;
        if (classes > BertConfig.MaxLabels)
            throw new UserException($"{data.TrainOrigin}: {classes} classes; at most {BertConfig.MaxLabels} are supported", ExitCodes.BadInput);

        string outDir = Path.GetFullPath(s.Output);
        using var runLock = RunDirectoryLock.Acquire(outDir, "bert finetune");
        string bestRoot = Path.Combine(outDir, "best");
        if (CheckpointReader.ListComplete(PhysicalFileSystem.Instance, bestRoot).Count > 0)
            throw new UserException($"--out {s.Output}: holds a fine-tuned model of an earlier run ({bestRoot}); choose another --out or remove it");
        Directory.CreateDirectory(outDir);

        // ---- model --------------------------------------------------------------------------
        int microBatch = s.MicroBatch ?? s.Batch;
        using var backend = Backends.Create(s.Device, s.Threads, fusedAttention: s.FusedAttention, headDim: source.Config.HeadDim);
        using var model = task.CreateModel(source.Config, classes, backend, Math.Max(microBatch, EvalBatch(microBatch)), s.MaxSeq);
        var load = PretrainedLoader.Load(model, source.WeightsPath, s.Seed);
        RunConfig.WriteTo(outDir);
        log.WriteLine(string.Create(inv,
            $"bert finetune: {task.CliName()} with {model.Config.Name} ({model.ParameterTotal:N0} parameters, vocab {vocabulary.Count}, {(lowerCase ? "uncased" : "cased")}) on {backend.Name}")
            + PretrainCommand.FusedNote(backend, microBatch, s.MaxSeq, model.Config));
        log.WriteLine($"from {source.Directory}" + (source.Step is { } st ? $" (step {st})" : ""));
        log.WriteLine(load.Describe());
        if (task != FineTuningTask.Span)
            log.WriteLine($"classes: {string.Join(", ", data.LabelNames)}");
        log.WriteLine(Describe("train", data.Train) + "; " + Describe("validation", data.Validation) + (data.Test is null ? "" : "; " + Describe("test", data.Test)));

        var options = new FineTuningOptions
        {
            Epochs = s.Epochs,
            BatchSize = s.Batch,
            MicroBatch = microBatch,
            LearningRate = s.LearningRate ?? DefaultLearningRate(source.Config),
            WarmupFraction = s.Warmup,
            Adam = new AdamWOptions { WeightDecay = s.WeightDecay },
            Seed = s.Seed,
        };
        using var tuner = new FineTuner(model, data.Train.Features, options);
        log.WriteLine(string.Create(inv,
            $"{s.Epochs} epochs × {tuner.StepsPerEpoch} steps of {s.Batch} rows (micro-batch {microBatch}), lr {options.LearningRate:G3} (warmup {tuner.Schedule.WarmupSteps} steps, then linear decay), weight decay {s.WeightDecay:G3}, max-seq {s.MaxSeq}"));

        // ---- training -----------------------------------------------------------------------
        string metricsPath = Path.Combine(outDir, "metrics.jsonl");
        var writer = new CheckpointWriter(bestRoot, new CheckpointWriterOptions { KeepLast = 1 });
        var epochs = new List<(int Epoch, long Step, double TrainLoss, EvaluationResult Validation)>();
        EvaluationResult? best = null;
        int bestEpoch = 0;
        string? bestDir = null;
        using var stopper = new StopSignals("bert finetune");
        try
        {
            using var metrics = new FineTuningLog(metricsPath, s.TensorBoard ? Path.Combine(outDir, "tensorboard") : null);
            ProgressDisplay.Run("finetune", tuner.TotalSteps, report =>
            {
                double epochLoss = 0;
                int epochSteps = 0;
                report(0, "");
                while (!tuner.Finished && !stopper.Requested && !ct.IsCancellationRequested)
                {
                    var r = tuner.RunStep();
                    metrics.WriteStep(r);
                    epochLoss += r.Loss;
                    epochSteps++;
                    report(tuner.Step, string.Create(inv,
                        $"epoch {r.Epoch + 1}/{s.Epochs} step {tuner.Step}/{tuner.TotalSteps} loss {r.Loss:F4} acc {r.Accuracy:P1} lr {r.LearningRate:G3}"));
                    if (!tuner.EpochEnded) continue;
                    int epoch = (int)(tuner.Step / tuner.StepsPerEpoch);
                    var (v, _) = FineTuningEvaluator.Evaluate(model, data.Validation, data.LabelNames, EvalBatch(microBatch), ct);
                    metrics.WriteEval("validation", epoch, tuner.Step, v);
                    epochs.Add((epoch, tuner.Step, epochLoss / Math.Max(1, epochSteps), v));
                    bool better = best is null || v.Selection > best.Selection;
                    if (better)
                    {
                        best = v;
                        bestEpoch = epoch;
                        bestDir = FineTunedCheckpoint.Save(writer, model, tuner.Step, task == FineTuningTask.Span ? null : data.LabelNames,
                            vocabulary, lowerCase, cancellationToken: CancellationToken.None);
                    }
                    Say(log, string.Create(inv,
                        $"epoch {epoch}: train loss {epochLoss / Math.Max(1, epochSteps):F4}; validation {v.Describe()}{(better ? " (best so far, saved)" : "")}"));
                    epochLoss = 0;
                    epochSteps = 0;
                }
                return 0;
            });

            if (best is null || bestDir is null)
            {
                log.WriteLine($"stopped at step {tuner.Step} of {tuner.TotalSteps}, before the first epoch ended; nothing saved");
                return ExitCodes.Ok;
            }
            log.WriteLine(string.Create(inv, $"best: epoch {bestEpoch}, validation {best.SelectionName} {best.Selection:P2} → {bestDir}"));

            // ---- test with the best weights ---------------------------------------------------
            EvaluationResult? testResult = null;
            PretrainedLoader.Load(model, Path.Combine(bestDir, HfInterop.WeightsFile), s.Seed);
            var scored = data.Test ?? data.Validation;
            var (result, predictions) = FineTuningEvaluator.Evaluate(model, scored, data.LabelNames, EvalBatch(microBatch), ct);
            if (data.Test is not null)
            {
                testResult = result;
                metrics.WriteEval("test", bestEpoch, tuner.Step, testResult);
                log.WriteLine($"test (best checkpoint): {testResult.Describe()}");
            }
            WritePredictions(Path.Combine(outDir, "predictions.tsv"), scored, predictions, data.LabelNames);
            WriteResults(Path.Combine(outDir, "results.json"), s, task, source, model, data, options, epochs, bestEpoch, bestDir, testResult);
        }
        catch (NonFiniteException e)
        {
            throw new UserException(e.Message, ExitCodes.NonFinite);
        }
        string png = Path.Combine(outDir, "finetune.png");
        FineTuningPlot.Render(metricsPath, png, $"bert finetune {task.CliName()} ({model.Config.Name}) on {backend.Name}");
        log.WriteLine($"metrics: {metricsPath}; {(s.TensorBoard ? $"tensorboard: {Path.Combine(outDir, "tensorboard")}; " : "")}plot: {png}; results: {Path.Combine(outDir, "results.json")}; predictions of the best checkpoint on the {(data.Test is null ? "validation" : "test")} split: {Path.Combine(outDir, "predictions.tsv")}");
        if (!tuner.Finished) log.WriteLine($"stopped at step {tuner.Step} of {tuner.TotalSteps}");
        return !tuner.Finished && stopper.Requested ? stopper.ExitCode : ExitCodes.Ok;
    }

    /// <summary>A line printed while the progress bar runs: through Spectre's console on a terminal, so
    /// it appears above the live bar instead of tearing it.</summary>
    private static void Say(TextWriter log, string line)
    {
        if (ReferenceEquals(log, Console.Out) && ProgressDisplay.Interactive) Spectre.Console.AnsiConsole.WriteLine(line);
        else log.WriteLine(line);
    }

    /// <summary>--windows for --data spam when not given.</summary>
    public const int SpamWindows = 4;

    private static int EvalBatch(int microBatch) => Math.Max(microBatch, 32);

    internal static PretrainedSource OpenCheckpoint(string path)
    {
        string full;
        try
        {
            full = CheckpointReader.ResolvePointer(PhysicalFileSystem.Instance, HfCache.Resolve(path) ?? Path.GetFullPath(path));
        }
        catch (DirectoryNotFoundException e)
        {
            throw new UserException($"--checkpoint {path}: {e.Message}", ExitCodes.BadInput);
        }
        bool isDefault = Path.GetFullPath(DefaultCheckpoint) == full;
        if (!Directory.Exists(full) || (isDefault && CheckpointReader.FindLatest(full) is null))
            throw new UserException(isDefault
                ? $"--checkpoint {path}: no pretrained model at {full}; run `bert pretrain` first (with no options it pretrains the default model " +
                  "into runs/pretrain), or pass --checkpoint DIR"
                : $"--checkpoint {path}: directory not found ({full}), nor a model id in the HuggingFace cache ({HfCache.HubDirectory()})", ExitCodes.BadInput);
        return PretrainedSource.Open(full);
    }

    private static string Describe(string name, TaskSplit split) =>
        $"{name} {split.Examples} examples" + (split.Features.Count != split.Examples ? $" ({split.Features.Count} rows)" : "")
        + (split.Features.Truncated > 0 ? $", {split.Features.Truncated} truncated" : "");

    private sealed record LoadedData(TaskSplit Train, TaskSplit Validation, TaskSplit? Test, IReadOnlyList<string> LabelNames, string TrainOrigin,
        int Windows = 1);

    private static LoadedData LoadData(FinetuneSettings s, FineTuningTask task, BertTokenizer tokenizer, TextWriter log, CancellationToken ct)
    {
        switch (task)
        {
            case FineTuningTask.Classification:
            {
                List<ClassificationExample> train, validation;
                List<ClassificationExample>? test = null;
                IReadOnlyList<string> labels;
                string origin = s.Data;
                int windows = s.Windows ?? 1;
                if (s.Data == "spam")
                {
                    // Most messages are longer than a row: the built-in task reads up to four windows of each.
                    windows = s.Windows ?? SpamWindows;
                    var spam = SpamAssassinCorpus.Load(s.DataRoot, ct);
                    (train, validation, test, labels) = (spam.Train, spam.Validation, spam.Test, spam.LabelNames);
                    origin = SpamAssassinCorpus.DataDirectory(s.DataRoot);
                    log.WriteLine($"data: SpamAssassin corpus ({origin}), headers stripped; deterministic split by group: 70% train, 10% validation, 20% test; up to {windows} windows per message");
                }
                else
                {
                    var all = FineTuningData.ReadClassification(s.Data);
                    (train, validation) = s.Validation is null ? LabelSets.Holdout(all, s.ValidationFraction) : (all, FineTuningData.ReadClassification(s.Validation));
                    if (s.Test is not null) test = FineTuningData.ReadClassification(s.Test);
                    labels = LabelSets.FromLabels(train.Select(e => e.Label));
                }
                if (labels.Count < 2)
                    throw new UserException($"{origin}: the training data has a single class ('{labels[0]}'); classification needs at least two", ExitCodes.BadInput);
                var index = LabelSets.Index(labels);
                TaskSplit Make(List<ClassificationExample> x) =>
                    TaskSplit.ForClassification(x, Featurizer.Classification(x, index, tokenizer, s.MaxSeq, s.TailTokens ?? 0, windows));
                return new LoadedData(Make(train), Make(validation), test is null ? null : Make(test), labels, origin, windows);
            }
            case FineTuningTask.TokenClassification:
            {
                var all = FineTuningData.ReadTokens(s.Data);
                var (train, validation) = s.Validation is null ? LabelSets.Holdout(all, s.ValidationFraction) : (all, FineTuningData.ReadTokens(s.Validation));
                var test = s.Test is null ? null : FineTuningData.ReadTokens(s.Test);
                var tags = LabelSets.FromLabels(train.SelectMany(x => x.Tags));
                var index = LabelSets.Index(tags);
                TaskSplit Make(List<TaggedSentence> x) => TaskSplit.ForTokens(x, Featurizer.Tokens(x, index, tokenizer, s.MaxSeq));
                return new LoadedData(Make(train), Make(validation), test is null ? null : Make(test), tags, s.Data);
            }
            default:
            {
                var all = FineTuningData.ReadSpans(s.Data);
                var (train, validation) = s.Validation is null ? LabelSets.Holdout(all, s.ValidationFraction) : (all, FineTuningData.ReadSpans(s.Validation));
                var test = s.Test is null ? null : FineTuningData.ReadSpans(s.Test);
                TaskSplit Make(List<SpanExample> x) => TaskSplit.ForSpans(x, Featurizer.Span(x, tokenizer, s.MaxSeq, s.DocStride));
                return new LoadedData(Make(train), Make(validation), test is null ? null : Make(test), ["start", "end"], s.Data);
            }
        }
    }

    /// <summary>predictions.tsv: a header line, then one line per example: its origin (file:line), the gold
    /// value and the prediction (classification: class names; tokens: tags separated by spaces; span: answer texts).</summary>
    private static void WritePredictions(string path, TaskSplit split, SplitPredictions predictions, IReadOnlyList<string> labels)
    {
        static string Clean(string s) => s.Replace('\t', ' ').Replace('\n', ' ').Replace('\r', ' ');
        var sb = new System.Text.StringBuilder("origin\tgold\tpredicted\n");
        if (split.ClassificationExamples is { } cls)
            for (int i = 0; i < cls.Count; i++)
                sb.Append(cls[i].Origin).Append('\t').Append(Clean(cls[i].Label)).Append('\t').Append(Clean(labels[predictions.Classes![i]])).Append('\n');
        else if (split.Sentences is { } sentences)
            for (int i = 0; i < sentences.Count; i++)
                sb.Append(sentences[i].Origin).Append('\t').Append(string.Join(' ', sentences[i].Tags)).Append('\t').Append(string.Join(' ', predictions.Tags![i])).Append('\n');
        else
            for (int i = 0; i < split.Spans!.Count; i++)
                sb.Append(split.Spans[i].Origin).Append('\t').Append(Clean(split.Spans[i].AnswerText)).Append('\t').Append(Clean(predictions.Answers![i])).Append('\n');
        var bytes = System.Text.Encoding.UTF8.GetBytes(sb.ToString());
        Bert.Runtime.IO.AtomicFile.Write(PhysicalFileSystem.Instance, path, stream => stream.Write(bytes));
    }

    private static void WriteResults(string path, FinetuneSettings s, FineTuningTask task, PretrainedSource source, BertModelBase model,
        LoadedData data, FineTuningOptions options, List<(int Epoch, long Step, double TrainLoss, EvaluationResult Validation)> epochs,
        int bestEpoch, string bestDir, EvaluationResult? test)
    {
        static void Scores(Utf8JsonWriter w, EvaluationResult e)
        {
            w.WriteNumber("loss", e.Loss);
            w.WriteNumber(e.Task == FineTuningTask.Span ? "exact_match" : "accuracy", e.Accuracy);
            w.WriteNumber("f1", e.F1);
            w.WriteNumber("examples", e.Examples);
        }
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("task", task.CliName());
            w.WriteString("model", model.Config.Name);
            w.WriteString("checkpoint", source.Directory);
            w.WriteString("data", data.TrainOrigin);
            if (task != FineTuningTask.Span)
            {
                w.WriteStartArray("labels");
                foreach (var l in data.LabelNames) w.WriteStringValue(l);
                w.WriteEndArray();
            }
            w.WriteNumber("train_examples", data.Train.Examples);
            w.WriteNumber("validation_examples", data.Validation.Examples);
            if (data.Test is not null) w.WriteNumber("test_examples", data.Test.Examples);
            w.WriteNumber("epochs", options.Epochs);
            w.WriteNumber("batch", options.BatchSize);
            w.WriteNumber("lr", options.LearningRate);
            w.WriteNumber("warmup", options.WarmupFraction);
            w.WriteNumber("weight_decay", options.Adam.WeightDecay);
            w.WriteNumber("max_seq", s.MaxSeq);
            if (task == FineTuningTask.Classification)
            {
                w.WriteNumber("tail_tokens", s.TailTokens ?? 0);
                w.WriteNumber("windows", data.Windows);
            }
            if (task == FineTuningTask.Span) w.WriteNumber("doc_stride", s.DocStride);
            w.WriteString("seed", s.Seed.ToString(CultureInfo.InvariantCulture));
            w.WriteStartArray("per_epoch");
            foreach (var (epoch, step, trainLoss, v) in epochs)
            {
                w.WriteStartObject();
                w.WriteNumber("epoch", epoch);
                w.WriteNumber("step", step);
                w.WriteNumber("train_loss", trainLoss);
                w.WriteStartObject("validation");
                Scores(w, v);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("best_epoch", bestEpoch);
            w.WriteString("best_checkpoint", bestDir);
            if (test is not null)
            {
                w.WriteStartObject("test");
                Scores(w, test);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        Bert.Runtime.IO.AtomicFile.Write(PhysicalFileSystem.Instance, path, stream => stream.Write(ms.ToArray()));
    }
}

/// <summary>Every knob of `bert finetune`.</summary>
public sealed record FinetuneSettings
{
    public string Task { get; init; } = "classify";
    public string Checkpoint { get; init; } = FinetuneCommand.DefaultCheckpoint;
    public string Data { get; init; } = "spam";
    public string? Validation { get; init; }
    public string? Test { get; init; }
    public double ValidationFraction { get; init; } = 0.1;
    public string Output { get; init; } = Path.Combine("runs", "finetune");
    public int Epochs { get; init; } = 3;
    public int Batch { get; init; } = 32;
    public int? MicroBatch { get; init; }
    public double? LearningRate { get; init; }
    public double Warmup { get; init; } = 0.1;
    public float WeightDecay { get; init; } = 0.01f;
    public int MaxSeq { get; init; } = 128;
    /// <summary>Head+tail truncation of single texts (classify); null: 0, the head only.</summary>
    public int? TailTokens { get; init; }
    /// <summary>Windows per long text (classify); null: 1, truncation.</summary>
    public int? Windows { get; init; }
    public int DocStride { get; init; } = 128;
    public ulong Seed { get; init; } = 42;
    public int Threads { get; init; }
    public string Device { get; init; } = "auto";
    /// <summary>--fused-attention: off, on or auto (see <see cref="Backends.FusedAttentionOption"/>).</summary>
    public string FusedAttention { get; init; } = "off";
    public string DataRoot { get; init; } = "data";
    /// <summary>--tensorboard: also write TensorBoard event files under Output/tensorboard/.</summary>
    public bool TensorBoard { get; init; } = true;

    public void Validate()
    {
        var inv = CultureInfo.InvariantCulture;
        if (Epochs < 1) throw new UserException($"--epochs {Epochs}: must be positive");
        if (Batch < 1) throw new UserException($"--batch {Batch}: must be positive");
        if (MicroBatch is < 1) throw new UserException($"--micro-batch {MicroBatch}: must be positive");
        if (MicroBatch > Batch) throw new UserException($"--micro-batch {MicroBatch}: must not exceed --batch {Batch}");
        if (LearningRate is { } lr && (!(lr > 0) || double.IsInfinity(lr))) throw new UserException($"--lr {lr.ToString(inv)}: must be positive");
        if (!(Warmup >= 0 && Warmup <= 1)) throw new UserException($"--warmup {Warmup.ToString(inv)}: must be a fraction in [0, 1]");
        if (!(WeightDecay >= 0) || float.IsInfinity(WeightDecay)) throw new UserException($"--weight-decay {WeightDecay.ToString(inv)}: must be non-negative");
        if (!(ValidationFraction > 0 && ValidationFraction < 1)) throw new UserException($"--validation-fraction {ValidationFraction.ToString(inv)}: must be in (0, 1)");
        if (MaxSeq < 8) throw new UserException($"--max-seq {MaxSeq}: must be at least 8");
        if (TailTokens is { } tail && (tail < 0 || tail > MaxSeq - 2)) throw new UserException($"--tail-tokens {tail}: must be in [0, {MaxSeq - 2}] (max-seq − 2)");
        if (Windows is < 1) throw new UserException($"--windows {Windows}: must be positive");
        if (DocStride < 1) throw new UserException($"--doc-stride {DocStride}: must be positive");
        if (Threads < 0) throw new UserException($"--threads {Threads}: must be 0 (all cores) or positive");
        if (Device is not ("auto" or "cpu" or "cuda")) throw new UserException($"--device {Device}: choose auto, cpu or cuda");
        Backends.ValidateFusedAttention(Device, "auto", FusedAttention);
        if (Data != "spam" && !File.Exists(Data)) throw new UserException($"--data {Data}: file not found (or `spam` for the built-in SpamAssassin task)", ExitCodes.BadInput);
        if (Validation is not null && !File.Exists(Validation)) throw new UserException($"--validation {Validation}: file not found", ExitCodes.BadInput);
        if (Test is not null && !File.Exists(Test)) throw new UserException($"--test {Test}: file not found", ExitCodes.BadInput);
        if (Data == "spam" && (Validation is not null || Test is not null))
            throw new UserException("--data spam brings its own validation and test splits; drop --validation/--test");
    }
}
