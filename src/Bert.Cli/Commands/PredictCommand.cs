using System.CommandLine;
using System.Globalization;
using System.Text;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert predict --checkpoint DIR --input FILE [--out FILE]`: run a fine-tuned model (or any HuggingFace
/// BertForSequenceClassification / BertForTokenClassification / BertForQuestionAnswering directory) over
/// an input file, with labels by name from config.json's id2label. What the input holds depends on the
/// model: a text per line for a classifier (a tab separates a second segment), a sentence per line for a
/// tagger (words separated by spaces), JSONL {"question", "context"} for a span model. Output is TSV,
/// to --out (written atomically) or standard output.
/// </summary>
public static class PredictCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "a fine-tuned model: `bert finetune`'s OUT/best, a step-N directory, or a HuggingFace model directory", Required = true };
        var input = new Option<string>("--input") { Description = "UTF-8 input: texts (classifier), sentences (tagger) or JSONL questions with contexts (span model), one per line", Required = true };
        var output = new Option<string?>("--out") { Description = "TSV output file (default: standard output)" };
        var maxSeq = new Option<int>("--max-seq") { Description = "tokens per row with [CLS] and [SEP] (0: the model's positions, at most 512)", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "rows per forward pass", DefaultValueFactory = _ => 32 };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto (GPU when present), cpu or cuda", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("predict", "labels, tags or answers from a fine-tuned model for every line of a file")
        {
            checkpoint, input, output, maxSeq, batch, threads, device,
        };
        cmd.SetAction((r, ct) => Task.FromResult(Run(r.GetValue(checkpoint)!, r.GetValue(input)!, r.GetValue(output), r.GetValue(maxSeq),
            r.GetValue(batch), r.GetValue(device)!, r.GetValue(threads), Console.Out, Console.Error, ct)));
        return cmd;
    }

    public static int Run(string checkpoint, string input, string? output, int maxSeq, int batch, string device, int threads,
        TextWriter stdout, TextWriter log, CancellationToken ct)
    {
        if (maxSeq != 0 && maxSeq < 8) throw new UserException($"--max-seq {maxSeq}: must be 0 (the model's positions) or at least 8");
        if (batch < 1) throw new UserException($"--batch {batch}: must be positive");
        if (!File.Exists(input)) throw new UserException($"--input {input}: file not found", ExitCodes.BadInput);
        if (output is not null) OutputPaths.RefuseOverlap("--out", output, ("--input", input), ("--checkpoint", checkpoint));
        try
        {
            var source = FinetuneCommand.OpenCheckpoint(checkpoint);
            var config = source.Config;
            if (config.ClassificationLabels == 0 && config.TokenClassificationLabels == 0 && !config.HasSpanHead)
                throw new UserException($"{Path.Combine(source.Directory, ConfigJson.FileName)}: architectures: {ConfigJson.Architecture(config)} has no " +
                                        "fine-tuned head; `bert predict` needs a classifier, a tagger or a span model (use `bert fill-mask` or `bert embed`)",
                                        ExitCodes.BadInput);
            if (maxSeq > config.MaxPositions) throw new UserException($"--max-seq {maxSeq}: the model has {config.MaxPositions} positions");
            using var backend = Backends.Create(device, threads);
            using var predictor = BertPredictor.Load(source.Directory, backend, maxSeq, batch, ct);
            var text = new StringBuilder();
            int rows;
            if (config.ClassificationLabels > 0)
            {
                var lines = FineTuningData.ReadLines(input);
                var texts = lines.Select(l => l.Split('\t', 2)).ToList();
                var predictions = ProgressDisplay.Run("predict", 1, _ => predictor.Classify(texts.Select(t => t[0]).ToList(), texts.Select(t => t.Length > 1 ? t[1] : null).ToList(), ct));
                text.Append("label\tscore\ttext\n");
                for (int i = 0; i < lines.Count; i++)
                    text.Append(predictions[i].Label).Append('\t').Append(predictions[i].Score.ToString("F4", CultureInfo.InvariantCulture)).Append('\t').Append(lines[i]).Append('\n');
                rows = lines.Count;
            }
            else if (config.TokenClassificationLabels > 0)
            {
                var lines = FineTuningData.ReadLines(input);
                var tagged = ProgressDisplay.Run("predict", 1, _ => predictor.Tag(lines, ct));
                text.Append("tagged\n");
                foreach (var sentence in tagged) text.Append(string.Join(' ', sentence.Select(w => w.Word + "/" + w.Tag))).Append('\n');
                rows = lines.Count;
            }
            else
            {
                var questions = FineTuningData.ReadQuestions(input);
                var answers = ProgressDisplay.Run("predict", 1, _ => predictor.Answer(questions, ct));
                text.Append("answer\tstart\tscore\tquestion\n");
                for (int i = 0; i < questions.Count; i++)
                    text.Append(Tsv(answers[i].Text)).Append('\t').Append(answers[i].Start.ToString(CultureInfo.InvariantCulture)).Append('\t')
                        .Append(answers[i].Score.ToString("F4", CultureInfo.InvariantCulture)).Append('\t').Append(Tsv(questions[i].Question)).Append('\n');
                rows = questions.Count;
            }
            if (output is null) stdout.Write(text.ToString());
            else AtomicFile.Write(PhysicalFileSystem.Instance, output, s => s.Write(Encoding.UTF8.GetBytes(text.ToString())));
            string destination = output is null ? "" : " -> " + output;
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"bert predict: {rows} {(config.HasSpanHead ? "questions" : "lines")} with {predictor.Architecture} (L{config.Layers} H{config.Hidden}, {predictor.Labels.Count} labels) from {source.Directory}{destination}"));
            return ExitCodes.Ok;
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }

    /// <summary>A field without the tabs and newlines that would break the TSV.</summary>
    private static string Tsv(string s) => s.Replace('\t', ' ').Replace('\n', ' ').Replace('\r', ' ');
}
