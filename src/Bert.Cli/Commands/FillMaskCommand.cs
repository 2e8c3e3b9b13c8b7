using System.CommandLine;
using System.Globalization;
using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;

namespace Bert.Cli.Commands;

/// <summary>`bert fill-mask --checkpoint DIR "the man went to the [MASK] ."`: the most probable tokens
/// for each [MASK] with their probabilities, as transformers' fill-mask pipeline gives them.</summary>
public static class FillMaskCommand
{
    public static Command Create()
    {
        var text = new Argument<string>("text") { Description = "text with one or more [MASK] tokens" };
        var checkpoint = new Option<string>("--checkpoint") { Description = "pretrained checkpoint (a run's checkpoint root, a step-N directory, or a HuggingFace model directory)", DefaultValueFactory = _ => FinetuneCommand.DefaultCheckpoint };
        var topK = new Option<int>("--top-k") { Description = "candidates per [MASK]", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto (GPU when present), cpu or cuda", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("fill-mask", "predict the tokens behind [MASK] with a pretrained model's masked-LM head") { text, checkpoint, topK, threads, device };
        cmd.SetAction(r => Run(r.GetValue(checkpoint)!, r.GetValue(text)!, r.GetValue(topK), r.GetValue(device)!, r.GetValue(threads), Console.Out));
        return cmd;
    }

    public static int Run(string checkpoint, string text, int topK, string device, int threads, TextWriter output)
    {
        if (topK < 1) throw new UserException($"--top-k {topK}: must be positive");
        if (!text.Contains(MaskFiller.MaskText, StringComparison.Ordinal))
            throw new UserException($"the text has no {MaskFiller.MaskText} token to fill: \"{text}\"");
        try
        {
            var source = FinetuneCommand.OpenCheckpoint(checkpoint);
            var vocabulary = source.LoadVocabulary();
            var tokenizer = new BertTokenizer(vocabulary, source.LowerCase(vocabulary));
            var (ids, positions) = MaskFiller.Encode(tokenizer, text);
            if (ids.Count > source.Config.MaxPositions)
                throw new UserException($"the text is {ids.Count} tokens with [CLS] and [SEP]; the model takes at most {source.Config.MaxPositions}");
            using var backend = Backends.Create(device, threads);
            using var model = PretrainedModels.CreatePretraining(source, backend, 1, ids.Count, positions.Count, requireMlmHead: true, out _);
            var predictions = MaskFiller.Fill(model, tokenizer, text, topK);
            var inv = CultureInfo.InvariantCulture;
            for (int m = 0; m < predictions.Count; m++)
            {
                if (predictions.Count > 1) output.WriteLine($"[MASK] {m + 1} of {predictions.Count}:");
                int width = Math.Max(5, predictions[m].Max(p => p.Token.Length));
                output.WriteLine($"{"score",-8}  {"token".PadRight(width)}  sequence");
                foreach (var p in predictions[m])
                    output.WriteLine(string.Create(inv, $"{p.Score,-8:F4}  {p.Token.PadRight(width)}  {p.Sequence}"));
            }
            return ExitCodes.Ok;
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }
}
