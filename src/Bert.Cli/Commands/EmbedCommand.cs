using System.CommandLine;
using System.Globalization;
using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;

namespace Bert.Cli.Commands;

/// <summary>`bert embed --checkpoint DIR --input FILE --out FILE.npy [--pooling cls|mean]`: one vector per
/// input line, written as a float32 [N, H] NumPy .npy file (row i = line i), atomically.</summary>
public static class EmbedCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "pretrained or fine-tuned checkpoint (a run's checkpoint root, a step-N directory, or a HuggingFace model directory)", DefaultValueFactory = _ => FinetuneCommand.DefaultCheckpoint };
        var input = new Option<string>("--input") { Description = "UTF-8 text file, one text per line (empty lines included)", Required = true };
        var output = new Option<string>("--out") { Description = "output .npy file: float32 [lines, hidden], numpy.load reads it", Required = true };
        var pooling = new Option<string>("--pooling") { Description = "cls (the final hidden state of [CLS]) or mean (mean over the tokens)", DefaultValueFactory = _ => "cls" };
        var maxSeq = new Option<int>("--max-seq") { Description = "tokens per text with [CLS] and [SEP]; longer texts are truncated", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "texts per forward pass", DefaultValueFactory = _ => 32 };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto (GPU when present), cpu or cuda", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("embed", "sentence vectors from a checkpoint's encoder, one per input line, as a .npy file")
        {
            checkpoint, input, output, pooling, maxSeq, batch, threads, device,
        };
        cmd.SetAction((r, ct) => Task.FromResult(Run(r.GetValue(checkpoint)!, r.GetValue(input)!, r.GetValue(output)!, r.GetValue(pooling)!,
            r.GetValue(maxSeq), r.GetValue(batch), r.GetValue(device)!, r.GetValue(threads), Console.Out, ct)));
        return cmd;
    }

    public static int Run(string checkpoint, string input, string output, string pooling, int maxSeq, int batch, string device, int threads,
        TextWriter log, CancellationToken ct)
    {
        var mode = pooling switch
        {
            "cls" => Pooling.Cls,
            "mean" => Pooling.Mean,
            _ => throw new UserException($"--pooling {pooling}: choose cls or mean"),
        };
        if (!string.Equals(Path.GetExtension(output), ".npy", StringComparison.OrdinalIgnoreCase))
            throw new UserException($"--out {output}: the output is a NumPy .npy file; name it *.npy");
        if (maxSeq < 2) throw new UserException($"--max-seq {maxSeq}: must be at least 2");
        if (batch < 1) throw new UserException($"--batch {batch}: must be positive");
        if (!File.Exists(input)) throw new UserException($"--input {input}: file not found", ExitCodes.BadInput);
        OutputPaths.RefuseOverlap("--out", output, ("--input", input), ("--checkpoint", checkpoint));
        try
        {
            var lines = FineTuningData.ReadLines(input);
            var source = FinetuneCommand.OpenCheckpoint(checkpoint);
            if (maxSeq > source.Config.MaxPositions) throw new UserException($"--max-seq {maxSeq}: the model has {source.Config.MaxPositions} positions");
            var vocabulary = source.LoadVocabulary();
            var tokenizer = new BertTokenizer(vocabulary, source.LowerCase(vocabulary));
            using var backend = Backends.Create(device, threads);
            using var model = PretrainedModels.CreatePretraining(source, backend, batch, maxSeq, 0, requireMlmHead: false, out _);
            int h = model.Config.Hidden;
            var vectors = ProgressDisplay.Run("embed", lines.Count, report =>
                Embedder.Embed(model, tokenizer, lines, mode, maxSeq, batch, done => report(done, $"{done}/{lines.Count} lines"), ct));
            NpyFile.Write(output, vectors, lines.Count, h);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {output}: float32 [{lines.Count}, {h}] ({pooling} pooling, {model.Config.Name} from {source.Directory})"));
            return ExitCodes.Ok;
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }
}
