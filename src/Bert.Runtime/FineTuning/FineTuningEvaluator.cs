using System.Globalization;

namespace Bert.Runtime.FineTuning;

/// <summary>One split of a task: its examples and their features.</summary>
public sealed class TaskSplit
{
    private TaskSplit(Features features, IReadOnlyList<ClassificationExample>? classification,
        IReadOnlyList<TaggedSentence>? sentences, IReadOnlyList<SpanExample>? spans)
    {
        Features = features;
        ClassificationExamples = classification;
        Sentences = sentences;
        Spans = spans;
    }

    public Features Features { get; }
    public IReadOnlyList<ClassificationExample>? ClassificationExamples { get; }
    public IReadOnlyList<TaggedSentence>? Sentences { get; }
    public IReadOnlyList<SpanExample>? Spans { get; }
    public int Examples => Features.Examples;

    public static TaskSplit ForClassification(IReadOnlyList<ClassificationExample> examples, Features f) => new(f, examples, null, null);
    public static TaskSplit ForTokens(IReadOnlyList<TaggedSentence> sentences, Features f) => new(f, null, sentences, null);
    public static TaskSplit ForSpans(IReadOnlyList<SpanExample> examples, Features f) => new(f, null, null, examples);
}

/// <summary>Scores on a held-out split. <see cref="Accuracy"/> is the exact-match rate for spans.</summary>
/// <param name="Loss">Mean cross-entropy (span: the mean of start and end).</param>
public sealed record EvaluationResult(FineTuningTask Task, double Loss, double Accuracy, double F1, int Examples)
{
    /// <summary>What picks the best checkpoint: accuracy for classification, F1 for tokens and spans.</summary>
    public double Selection => Task == FineTuningTask.Classification ? Accuracy : F1;

    public string SelectionName => Task == FineTuningTask.Classification ? "accuracy" : "F1";

    public string AccuracyName => Task == FineTuningTask.Span ? "exact match" : "accuracy";

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"loss {Loss:F4}, {AccuracyName} {Accuracy:P2}, F1 {F1:P2} over {Examples} examples");
}

/// <summary>What the model predicted for each example of a split.</summary>
public sealed record SplitPredictions(int[]? Classes, string[][]? Tags, string[]? Answers);

/// <summary>
/// Forward-only evaluation (dropout off, no labels on the device: the heads produce logits, which are
/// read back and scored on the host). The head has exactly the task's classes.
/// </summary>
public static class FineTuningEvaluator
{
    /// <summary>Longest answer considered, in word pieces (run_squad.py's max_answer_length).</summary>
    public const int MaxAnswerPieces = 30;

    public static (EvaluationResult Result, SplitPredictions Predictions) Evaluate(BertModelBase model, TaskSplit split,
        IReadOnlyList<string> labelNames, int batchSize, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(split);
        var f = split.Features;
        int heads = f.Task switch
        {
            FineTuningTask.Classification => model.Config.ClassificationLabels,
            FineTuningTask.TokenClassification => model.Config.TokenClassificationLabels,
            _ => model.Config.HasSpanHead ? 2 : 0,
        };
        if (heads == 0) throw new ArgumentException($"{model.Config.Name} has no {f.Task} head", nameof(model));
        if (f.Task != FineTuningTask.Span && labelNames.Count > heads)
            throw new ArgumentException($"{labelNames.Count} classes but the head of {model.Config.Name} has {heads}", nameof(labelNames));
        var logits = Predict(model, f, batchSize, cancellationToken);
        return f.Task switch
        {
            FineTuningTask.Classification => ScoreClassification(f, logits, heads, labelNames.Count),
            FineTuningTask.TokenClassification => ScoreTokens(f, split.Sentences!, logits, heads, labelNames),
            _ => ScoreSpans(f, split.Spans!, logits),
        };
    }

    /// <summary>The logits of every row: classification F32[Count, C]; token classification
    /// F32[Count·Stride, C]; span start logits F32[Count·Stride] followed by end logits F32[Count·Stride].</summary>
    public static float[] Predict(BertModelBase model, Features f, int batchSize, CancellationToken cancellationToken = default)
    {
        int b = Math.Min(batchSize, model.MaxBatch);
        int classes = f.Task == FineTuningTask.Classification ? model.Config.ClassificationLabels : model.Config.TokenClassificationLabels;
        long length = f.Task switch
        {
            FineTuningTask.Classification => (long)f.Count * classes,
            FineTuningTask.TokenClassification => (long)f.Count * f.Stride * classes,
            _ => 2L * f.Count * f.Stride,
        };
        var result = new float[length];
        if (f.Task == FineTuningTask.Span) Array.Fill(result, float.NegativeInfinity);
        var rows = new int[b];
        var scratch = new float[Math.Max((long)b * f.Stride * Math.Max(classes, 2), 1)];
        bool wasTraining = model.Training;
        model.Training = false;
        try
        {
            using var device = new FineTuningBatch(model.Backend, b, Math.Min(model.MaxSeq, f.Stride));
            for (int start = 0; start < f.Count; start += b)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = Math.Min(b, f.Count - start);
                for (int i = 0; i < n; i++) rows[i] = start + i;
                int seq = FineTuningBatch.SeqOf(f, rows.AsSpan(0, n));
                var batch = device.Upload(f, rows.AsSpan(0, n), seq, withLabels: false);
                model.Forward(batch);
                switch (f.Task)
                {
                    case FineTuningTask.Classification:
                        model.Backend.Download<float>(result.AsSpan(start * classes, n * classes), model.ClassifierLogits);
                        break;
                    case FineTuningTask.TokenClassification:
                        model.Backend.Download<float>(scratch.AsSpan(0, n * seq * classes), model.ClassifierLogits);
                        for (int i = 0; i < n; i++)
                            scratch.AsSpan(i * seq * classes, seq * classes).CopyTo(result.AsSpan((start + i) * f.Stride * classes));
                        break;
                    default:
                        model.Backend.Download<float>(scratch.AsSpan(0, 2 * n * seq), model.SpanLogits);
                        long endOffset = (long)f.Count * f.Stride;
                        for (int i = 0; i < n; i++)
                        {
                            int len = f.Lengths[start + i];
                            scratch.AsSpan(i * seq, len).CopyTo(result.AsSpan((start + i) * f.Stride));
                            scratch.AsSpan(n * seq + i * seq, len).CopyTo(result.AsSpan((int)(endOffset + (start + i) * f.Stride)));
                        }
                        break;
                }
            }
        }
        finally
        {
            model.Training = wasTraining;
        }
        return result;
    }

    /// <summary>Per example: the argmax of its rows' mean logits (one row unless a long text was cut into windows).</summary>
    internal static (EvaluationResult, SplitPredictions) ScoreClassification(Features f, float[] logits, int heads, int classes)
    {
        var sums = new double[f.Examples * classes];
        var gold = new int[f.Examples];
        double loss = 0;
        for (int r = 0; r < f.Count; r++)
        {
            var row = logits.AsSpan(r * heads, heads);
            int e = f.Example[r];
            for (int c = 0; c < classes; c++) sums[e * classes + c] += row[c];
            gold[e] = f.Labels![r];
            loss += CrossEntropy(row, f.Labels[r]);
        }
        var predicted = new int[f.Examples];
        for (int e = 0; e < f.Examples; e++)
        {
            var s = sums.AsSpan(e * classes, classes);
            int best = 0;
            for (int c = 1; c < classes; c++)
                if (s[c] > s[best]) best = c;
            predicted[e] = best;
        }
        var (accuracy, f1) = FineTuningMetrics.Classification(gold, predicted, classes);
        return (new EvaluationResult(f.Task, f.Count > 0 ? loss / f.Count : 0, accuracy, f1, f.Examples), new SplitPredictions(predicted, null, null));
    }

    private static (EvaluationResult, SplitPredictions) ScoreTokens(Features f, IReadOnlyList<TaggedSentence> sentences, float[] logits,
        int heads, IReadOnlyList<string> tagNames)
    {
        var predicted = sentences.Select(s => new string[s.Words.Length]).ToArray();
        double loss = 0, weight = 0;
        for (int r = 0; r < f.Count; r++)
        {
            var sentence = predicted[f.Example[r]];
            for (int t = 0; t < f.Lengths[r]; t++)
            {
                int i = r * f.Stride + t;
                int w = f.WordAt![i];
                if (w < 0) continue;
                var row = logits.AsSpan(i * heads, heads);
                sentence[w] = tagNames[ArgMax(row[..tagNames.Count])];
                loss += f.LabelWeights![i] * CrossEntropy(row, f.Labels![i]);
                weight += f.LabelWeights[i];
            }
        }
        var gold = sentences.Select(s => s.Tags).ToArray();
        var (accuracy, f1) = FineTuningMetrics.Tokens(gold, predicted);
        return (new EvaluationResult(f.Task, weight > 0 ? loss / weight : 0, accuracy, f1, sentences.Count), new SplitPredictions(null, predicted, null));
    }

    private static (EvaluationResult, SplitPredictions) ScoreSpans(Features f, IReadOnlyList<SpanExample> examples, float[] logits)
    {
        int endOffset = f.Count * f.Stride;
        double loss = 0;
        for (int r = 0; r < f.Count; r++)
        {
            int o = r * f.Stride, len = f.Lengths[r];
            loss += 0.5 * (CrossEntropy(logits.AsSpan(o, len), f.StartPositions![r]) + CrossEntropy(logits.AsSpan(endOffset + o, len), f.EndPositions![r]));
        }
        var answers = BestAnswers(f, examples.Select(x => x.Context).ToArray(), logits).Select(a => a.Text).ToArray();
        var (em, f1) = FineTuningMetrics.Squad(examples.Select(x => x.AnswerText).ToArray(), answers);
        return (new EvaluationResult(f.Task, f.Count > 0 ? loss / f.Count : 0, em, f1, examples.Count), new SplitPredictions(null, null, answers));
    }

    /// <summary>Per example, the answer span of the highest start + end logit over its windows (run_squad.py's
    /// rule: a span of whole context words, at most <see cref="MaxAnswerPieces"/> pieces, each start in the
    /// window where it has the most context): its text, its first character in the context and the score
    /// (start + end logit). An example whose windows hold no context gives an empty answer at −1.</summary>
    public static (string Text, int Start, double Score)[] BestAnswers(Features f, IReadOnlyList<string> contexts, float[] logits)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(contexts);
        ArgumentNullException.ThrowIfNull(logits);
        int endOffset = f.Count * f.Stride;
        var best = new (double Score, int Row, int Start, int End)[contexts.Count];
        Array.Fill(best, (double.NegativeInfinity, -1, 0, 0));
        for (int r = 0; r < f.Count; r++)
        {
            int o = r * f.Stride, len = f.Lengths[r];
            var start = logits.AsSpan(o, len);
            var end = logits.AsSpan(endOffset + o, len);
            ref var b = ref best[f.Example[r]];
            for (int s = 0; s < len; s++)
            {
                if (f.WordAt![o + s] < 0 || !f.MaxContext![o + s]) continue;
                for (int e = s; e < len && e < s + MaxAnswerPieces; e++)
                {
                    if (f.WordAt[o + e] < 0) break;
                    double score = start[s] + end[e];
                    if (score > b.Score) b = (score, r, s, e);
                }
            }
        }
        var answers = new (string, int, double)[contexts.Count];
        for (int i = 0; i < contexts.Count; i++)
        {
            var (score, row, s, e) = best[i];
            if (row < 0)
            {
                answers[i] = ("", -1, double.NegativeInfinity);
                continue;
            }
            var words = SpanWords.Split(contexts[i]);
            int first = f.WordAt![row * f.Stride + s], last = f.WordAt[row * f.Stride + e];
            answers[i] = (contexts[i][words.Start[first]..words.End[last]], words.Start[first], score);
        }
        return answers;
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int c = 1; c < row.Length; c++)
            if (row[c] > row[best]) best = c;
        return best;
    }

    /// <summary>−log softmax(row)[label], in double.</summary>
    private static double CrossEntropy(ReadOnlySpan<float> row, int label)
    {
        double max = double.NegativeInfinity;
        foreach (float x in row) max = Math.Max(max, x);
        double sum = 0;
        foreach (float x in row) sum += Math.Exp(x - max);
        return Math.Log(sum) + max - row[label];
    }
}
