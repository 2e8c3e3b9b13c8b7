using Bert.Runtime.Data;
using Bert.Runtime.IO;

namespace Bert.Runtime.FineTuning;

/// <summary>A class for a text: the most probable class, its probability and every class's.</summary>
public sealed record ClassPrediction(string Label, double Score, IReadOnlyList<double> Probabilities);

/// <summary>A word and its predicted tag.</summary>
public sealed record TaggedWord(string Word, string Tag);

/// <summary>An extracted answer: its text, its first character in the context (−1 when none) and its
/// score (start + end logit).</summary>
public sealed record SpanAnswer(string Text, int Start, double Score);

/// <summary>
/// Inference over a saved model without planning batch sizes by hand: load a directory (a checkpoint of
/// this project, a fine-tuned model, or any HuggingFace BERT directory, whatever its sizes), then
/// classify, tag, answer, fill masks or embed lists of texts. The model is the built-in class of the
/// directory's architecture (config.json) with every weight from the directory; inputs of any count are
/// cut into batches of <see cref="BatchSize"/>, dropout off.
/// <code>
/// using var backend = new CpuBackend();
/// using var predictor = BertPredictor.Load("runs/finetune/best", backend);
/// foreach (var p in predictor.Classify(["great film", "awful film"])) Console.WriteLine($"{p.Label} {p.Score:P1}");
/// </code>
/// </summary>
public sealed class BertPredictor : IDisposable
{
    private readonly BertModelBase _model;
    private readonly BertTokenizer _tokenizer;

    private BertPredictor(BertModelBase model, BertTokenizer tokenizer, string directory, IReadOnlyList<string> labels, int maxSeq, int batchSize)
    {
        _model = model;
        _tokenizer = tokenizer;
        Directory = directory;
        Labels = labels;
        MaxSeq = maxSeq;
        BatchSize = batchSize;
    }

    /// <summary>Opens <paramref name="path"/> and builds its model on <paramref name="backend"/>.</summary>
    /// <param name="maxSeq">Longest input in tokens with [CLS] and [SEP]; longer texts are truncated (classification,
    /// embeddings) or cut into windows (tagging, answering). 0: the model's positions, at most 512.</param>
    /// <param name="batchSize">Sequences per forward pass.</param>
    /// <exception cref="CheckpointFormatException">Not a checkpoint or model directory.</exception>
    /// <exception cref="InvalidDataException">The weights lack a tensor of the model, or have another shape.</exception>
    public static BertPredictor Load(string path, IBackend backend, int maxSeq = 0, int batchSize = 32, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batch size must be positive");
        var source = PretrainedSource.Open(path, cancellationToken);
        var config = source.Config;
        int seq = maxSeq == 0 ? Math.Min(512, config.MaxPositions) : maxSeq;
        if (seq < 8 || seq > config.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, $"sequence length must be in [8, {config.MaxPositions}] (the model's positions)");
        var vocabulary = source.LoadVocabulary();
        var tokenizer = new BertTokenizer(vocabulary, source.LowerCase(vocabulary));
        var model = BertModels.Create(config, backend, batchSize, seq, config.HasMlmHead ? Math.Max(1, seq / 4) : 0);
        try
        {
            var report = PretrainedLoader.Load(model, source.WeightsPath, seed: 0);
            if (report.Initialized.Count > 0)
                throw new InvalidDataException($"{source.WeightsPath}: {report.Initialized.Count} tensors of {ConfigJson.Architecture(config)} are missing " +
                                               $"(e.g. {report.Initialized[0]}); predictions need a trained model");
            int classes = Math.Max(config.ClassificationLabels, config.TokenClassificationLabels);
            var labels = source.ConfigFile.LabelNames
                         ?? Enumerable.Range(0, classes).Select(i => "LABEL_" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            return new BertPredictor(model, tokenizer, source.Directory, labels, seq, batchSize);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The directory the model was read from.</summary>
    public string Directory { get; }

    /// <summary>The model's configuration (sizes and heads).</summary>
    public BertConfig Config => _model.Config;

    /// <summary>HuggingFace architecture: BertForSequenceClassification, BertForTokenClassification, ….</summary>
    public string Architecture => ConfigJson.Architecture(_model.Config);

    /// <summary>Class names (config.json's id2label), in class-id order; empty without a classifier.</summary>
    public IReadOnlyList<string> Labels { get; }

    public int MaxSeq { get; }

    public int BatchSize { get; }

    /// <summary>The class of each text (or text pair: <paramref name="pairs"/>[i] is the second segment), with
    /// softmax probabilities. A sequence classifier only.</summary>
    public IReadOnlyList<ClassPrediction> Classify(IReadOnlyList<string> texts, IReadOnlyList<string?>? pairs = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        Require(Config.ClassificationLabels > 0, "a sequence classifier (BertForSequenceClassification)");
        if (pairs is not null && pairs.Count != texts.Count)
            throw new ArgumentException($"{pairs.Count} second segments for {texts.Count} texts", nameof(pairs));
        int classes = Config.ClassificationLabels;
        // Labels are not known: every example carries class 0, which only the unused loss would read.
        var examples = texts.Select((t, i) => new ClassificationExample(t, pairs?[i], Labels[0], $"text {i + 1}")).ToList();
        var features = Featurizer.Classification(examples, new Dictionary<string, int> { [Labels[0]] = 0 }, _tokenizer, MaxSeq);
        var logits = FineTuningEvaluator.Predict(_model, features, BatchSize, cancellationToken);
        var result = new ClassPrediction[texts.Count];
        for (int e = 0; e < texts.Count; e++)
        {
            var row = logits.AsSpan(e * classes, classes);
            double max = double.NegativeInfinity;
            foreach (float v in row) max = Math.Max(max, v);
            var p = new double[classes];
            double sum = 0;
            for (int c = 0; c < classes; c++) sum += p[c] = Math.Exp(row[c] - max);
            int best = 0;
            for (int c = 0; c < classes; c++)
            {
                p[c] /= sum;
                if (p[c] > p[best]) best = c;
            }
            result[e] = new ClassPrediction(Labels[best], p[best], p);
        }
        return result;
    }

    /// <summary>A tag for each word of each sentence (words: the sentence split at whitespace). A token
    /// classifier only; a sentence longer than <see cref="MaxSeq"/> is cut into rows at word boundaries.</summary>
    public IReadOnlyList<IReadOnlyList<TaggedWord>> Tag(IReadOnlyList<string> sentences, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        Require(Config.TokenClassificationLabels > 0, "a token classifier (BertForTokenClassification)");
        int classes = Config.TokenClassificationLabels;
        var tagged = sentences.Select((s, i) =>
        {
            var words = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return new TaggedSentence(words, Enumerable.Repeat(Labels[0], words.Length).ToArray(), $"sentence {i + 1}");
        }).ToList();
        var features = Featurizer.Tokens(tagged, new Dictionary<string, int> { [Labels[0]] = 0 }, _tokenizer, MaxSeq);
        var logits = FineTuningEvaluator.Predict(_model, features, BatchSize, cancellationToken);
        var tags = tagged.Select(t => new string[t.Words.Length]).ToArray();
        for (int r = 0; r < features.Count; r++)
        {
            var sentence = tags[features.Example[r]];
            for (int t = 0; t < features.Lengths[r]; t++)
            {
                int i = r * features.Stride + t;
                int w = features.WordAt![i];
                if (w < 0) continue;
                var row = logits.AsSpan(i * classes, classes);
                int best = 0;
                for (int c = 1; c < classes; c++)
                    if (row[c] > row[best]) best = c;
                sentence[w] = Labels[best];
            }
        }
        return tagged.Select((t, s) => (IReadOnlyList<TaggedWord>)t.Words.Select((w, i) => new TaggedWord(w, tags[s][i])).ToArray()).ToArray();
    }

    /// <summary>The answer to each question in its context (extractive, as run_squad.py). A span model only.</summary>
    public IReadOnlyList<SpanAnswer> Answer(IReadOnlyList<(string Question, string Context)> questions, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(questions);
        Require(Config.HasSpanHead, "a question-answering model (BertForQuestionAnswering)");
        var examples = new List<SpanExample>(questions.Count);
        for (int i = 0; i < questions.Count; i++)
        {
            var (question, context) = questions[i];
            if (string.IsNullOrWhiteSpace(context))
                throw new ArgumentException($"question {i + 1}: the context is empty", nameof(questions));
            // The answer is what we look for: the example's gold span is a placeholder (its first character) the
            // featurizer needs and prediction never reads.
            examples.Add(new SpanExample($"q{i + 1}", context, question, 0, context[..1], $"question {i + 1}"));
        }
        var features = Featurizer.Span(examples, _tokenizer, MaxSeq, docStride: Math.Max(1, MaxSeq / 4));
        var logits = FineTuningEvaluator.Predict(_model, features, BatchSize, cancellationToken);
        return FineTuningEvaluator.BestAnswers(features, questions.Select(q => q.Context).ToArray(), logits)
            .Select(a => new SpanAnswer(a.Text, a.Start, a.Score)).ToArray();
    }

    /// <summary>The <paramref name="topK"/> most probable tokens for each [MASK] of <paramref name="text"/>. A model
    /// with the masked-LM head only.</summary>
    public IReadOnlyList<IReadOnlyList<MaskPrediction>> FillMask(string text, int topK = 5)
    {
        Require(Config.HasMlmHead, "a model with the masked-LM head (BertForPreTraining or BertForMaskedLM)");
        return MaskFiller.Fill(_model, _tokenizer, text, topK);
    }

    /// <summary>One vector per text from the final hidden states: F32[texts.Count · H], row-major. Any model.</summary>
    public float[] Embed(IReadOnlyList<string> texts, Pooling pooling = Pooling.Cls, CancellationToken cancellationToken = default) =>
        Embedder.Embed(_model, _tokenizer, texts, pooling, MaxSeq, BatchSize, cancellationToken: cancellationToken);

    private void Require(bool has, string what)
    {
        if (!has)
            throw new InvalidOperationException($"{Directory}: the model is a {Architecture}; this needs {what}");
    }

    public void Dispose() => _model.Dispose();
}
