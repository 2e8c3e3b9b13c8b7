using System.CommandLine;
using System.Globalization;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert eval --checkpoint DIR --data DIR [--vocab FILE]`: the masked-LM and next-sentence loss and
/// accuracies of a pretraining checkpoint over datasets made by `bert prepare`, dropout off, in
/// index order. The model is built at the checkpoint's config.json sizes (any); the
/// vocabulary is the checkpoint's vocab.txt unless --vocab names another file.
/// </summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "a checkpoint directory (step-N) or a run's checkpoint root (the newest complete one is used)",
            Required = true,
        };
        var data = new Option<string>("--data")
        {
            Description = "a dataset directory (shard-*.bin) or a root holding seqS/ dataset directories (each is evaluated)",
            Required = true,
        };
        var vocab = new Option<string?>("--vocab") { Description = "vocab.txt the datasets were made with (default: the checkpoint's vocab.txt)" };
        var batch = new Option<int>("--batch") { Description = "sequences per forward pass", DefaultValueFactory = _ => 32 };
        var maxSequences = new Option<long>("--max-sequences") { Description = "evaluate only the first N instances of each dataset (0: all)", DefaultValueFactory = _ => 0 };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto (GPU when present), cpu or cuda", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("eval", "masked-LM and next-sentence loss and accuracy of a pretraining checkpoint on datasets")
        {
            checkpoint, data, vocab, batch, maxSequences, threads, device,
        };
        cmd.SetAction(r => Run(new EvalSettings
        {
            Checkpoint = r.GetValue(checkpoint)!,
            Data = r.GetValue(data)!,
            Vocab = r.GetValue(vocab),
            Batch = r.GetValue(batch),
            MaxSequences = r.GetValue(maxSequences),
            Threads = r.GetValue(threads),
            Device = r.GetValue(device)!,
        }, Console.Out));
        return cmd;
    }

    /// <summary>Evaluates and writes one line per dataset to <paramref name="log"/>; returns the exit code.</summary>
    public static int Run(EvalSettings s, TextWriter log)
    {
        try
        {
            return RunCore(s, log);
        }
        catch (Exception e) when (e is DataFormatException or InvalidDataException)
        {
            throw new UserException(e.Message, ExitCodes.BadInput);
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }

    private static int RunCore(EvalSettings s, TextWriter log)
    {
        if (s.Batch < 1) throw new UserException($"--batch {s.Batch}: must be positive");
        if (s.MaxSequences < 0) throw new UserException($"--max-sequences {s.MaxSequences}: must be 0 (all) or positive");
        if (s.Threads < 0) throw new UserException($"--threads {s.Threads}: must be 0 (all cores) or positive");

        var ckpt = CheckpointReader.Open(s.Checkpoint);
        string configPath = Path.Combine(ckpt.Directory, ConfigJson.FileName);
        var config = ckpt.Config;
        if (!config.HasMlmHead || !config.HasNspHead)
        {
            var missing = new List<string>();
            if (!config.HasMlmHead) missing.Add("masked-LM");
            if (!config.HasNspHead) missing.Add("next-sentence");
            throw new UserException($"{configPath}: architectures: {ConfigJson.Architecture(config)} has no {string.Join(" or ", missing)} head; " +
                                    "`bert eval` needs a BertForPreTraining checkpoint", ExitCodes.BadInput);
        }

        var vocabulary = LoadVocabulary(s.Vocab, ckpt);
        if (vocabulary.Count != config.VocabSize)
            throw new UserException($"{vocabulary.Source}: the vocabulary has {vocabulary.Count} tokens but {configPath} has vocab_size {config.VocabSize}", ExitCodes.BadInput);

        var datasets = new List<PretrainingDataset>();
        try
        {
            foreach (var dir in DatasetDirectories(s.Data))
                datasets.Add(PretrainingDataset.Open(dir, vocabulary));
            foreach (var d in datasets)
                if (d.SeqLength > config.MaxPositions)
                    throw new UserException($"{d.Directory}: seq_length {d.SeqLength} exceeds the model's max_position_embeddings {config.MaxPositions} ({configPath})", ExitCodes.BadInput);

            using var backend = Backends.Create(s.Device, s.Threads);
            int batch = (int)Math.Min(s.Batch, Math.Max(1, datasets.Max(d => d.Count)));
            using var model = new BertForPreTraining(backend, batch, datasets.Max(d => d.SeqLength), datasets.Max(d => d.MaxPredictions), config);
            var host = new float[model.ParameterTotal];
            ckpt.ReadParameters(model.ParameterTable, host);
            RefuseNonFinite(host, model.ParameterTable, ckpt.Directory);
            backend.Upload<float>(model.Parameters, host);

            var inv = CultureInfo.InvariantCulture;
            log.WriteLine(string.Create(inv,
                $"bert eval: {ckpt.Directory} (step {ckpt.Step}, {ModelPresets.NameOf(config) ?? $"L{config.Layers} H{config.Hidden} A{config.Heads}"}, vocab {vocabulary.Count}) on {backend.Name}"));
            foreach (var d in datasets)
            {
                long n = s.MaxSequences == 0 ? d.Count : Math.Min(s.MaxSequences, d.Count);
                var e = Evaluator.Run(model, d, n, batch);
                log.WriteLine(string.Create(inv,
                    $"{d.Directory}: loss {e.Loss:F4} (MLM {e.MlmLoss:F4}, NSP {e.NspLoss:F4}), MLM accuracy {e.MlmAccuracy:P2}, " +
                    $"NSP accuracy {e.NspAccuracy:P2} over {e.Sequences} sequences ({e.MlmPredictions:F0} masked tokens)"));
            }
            return ExitCodes.Ok;
        }
        finally
        {
            foreach (var d in datasets) d.Dispose();
        }
    }

    /// <summary>A checkpoint holding NaN or ±Inf weights evaluates to NaN losses: it is refused with
    /// the tensor and element named, exit 5 (the divergence code), instead of reporting numbers.</summary>
    internal static void RefuseNonFinite(ReadOnlySpan<float> parameters, IReadOnlyList<ParameterInfo> table, string directory)
    {
        foreach (var p in table)
        {
            var values = parameters.Slice((int)p.Offset, (int)p.Count);
            int bad = values.IndexOfAnyExcept(0f) < 0 ? -1 : FirstNonFinite(values);
            if (bad >= 0)
                throw new UserException(string.Create(CultureInfo.InvariantCulture,
                    $"{directory}: model.safetensors: {p.Name}[{bad}] = {values[bad]}: the checkpoint holds non-finite weights (a diverged run); evaluate an earlier checkpoint"),
                    ExitCodes.NonFinite);
        }
    }

    private static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    private static Vocabulary LoadVocabulary(string? path, Checkpoint ckpt)
    {
        if (path is not null) return Vocabulary.Load(path);
        if (!ckpt.HasFile(TrainingCheckpoints.VocabularyFile))
            throw new UserException($"{ckpt.Directory}: the checkpoint stores no {TrainingCheckpoints.VocabularyFile}; pass --vocab", ExitCodes.BadInput);
        // The file was verified against the manifest when the checkpoint was opened.
        return Vocabulary.Load(Path.Combine(ckpt.Directory, TrainingCheckpoints.VocabularyFile));
    }

    /// <summary>DIR itself when it holds shards, else its seqS/ sub-directories in length order.</summary>
    private static List<string> DatasetDirectories(string path)
    {
        string full = Path.GetFullPath(path);
        if (!Directory.Exists(full))
            throw new UserException($"--data {full}: directory not found", ExitCodes.BadInput);
        if (Directory.EnumerateFiles(full, "shard-*.bin").Any()) return [full];
        var found = Directory.EnumerateDirectories(full, "seq*")
            .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d).AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out int len), Len: len))
            .Where(x => x.Ok && Directory.EnumerateFiles(x.Dir, "shard-*.bin").Any())
            .OrderBy(x => x.Len).Select(x => x.Dir).ToList();
        if (found.Count == 0)
            throw new UserException($"--data {full}: no shard-*.bin here and no seqS/ directory holding any (make datasets with `bert prepare`)", ExitCodes.BadInput);
        return found;
    }
}

/// <summary>The options of `bert eval`.</summary>
public sealed record EvalSettings
{
    public required string Checkpoint { get; init; }
    public required string Data { get; init; }
    public string? Vocab { get; init; }
    public int Batch { get; init; } = 32;
    /// <summary>0: every instance.</summary>
    public long MaxSequences { get; init; }
    public int Threads { get; init; }
    public string Device { get; init; } = "auto";
}
