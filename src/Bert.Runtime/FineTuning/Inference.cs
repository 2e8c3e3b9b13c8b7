using System.Text;
using Bert.Runtime.Data;

namespace Bert.Runtime.FineTuning;

/// <summary>One candidate for a [MASK]: the token, its probability and the text with it filled in.</summary>
public sealed record MaskPrediction(int TokenId, string Token, double Score, string Sequence);

/// <summary>Builds models from pretrained sources for inference.</summary>
public static class PretrainedModels
{
    /// <summary>The pretraining model (pooler, MLM and NSP heads) at the source's sizes (any: config.json
    /// gives them) and vocabulary, its weights loaded. With <paramref name="requireMlmHead"/>, a source without
    /// the masked-LM head (a fine-tuned classifier, a BertModel) is refused.</summary>
    public static BertModelBase CreatePretraining(PretrainedSource source, IBackend backend, int maxBatch, int maxSeq, int maxPredictions,
        bool requireMlmHead, out PretrainedLoadReport report)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (maxSeq > source.Config.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, $"the model has {source.Config.MaxPositions} positions");
        var model = new BertForPreTraining(backend, maxBatch, maxSeq, maxPredictions, source.Config);
        try
        {
            report = PretrainedLoader.Load(model, source.WeightsPath, seed: 0);
            if (requireMlmHead && report.Initialized.Any(n => n.StartsWith("cls.predictions.", StringComparison.Ordinal)))
                throw new InvalidDataException($"{source.WeightsPath}: no masked-LM head (cls.predictions.*); fill-mask needs a pretrained " +
                                               "(BertForPreTraining or BertForMaskedLM) checkpoint");
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}

/// <summary>
/// transformers' fill-mask pipeline: the text is tokenized around each literal "[MASK]" (which becomes
/// the mask token), the pretraining model runs with the masked-LM head evaluated at the mask positions,
/// and the softmax over the vocabulary gives each candidate's probability.
/// </summary>
public static class MaskFiller
{
    public const string MaskText = "[MASK]";

    /// <summary>The ids [CLS] … [SEP] of <paramref name="text"/> and the positions of its masks.</summary>
    /// <exception cref="ArgumentException">The text holds no [MASK].</exception>
    public static (List<int> Ids, List<int> MaskPositions) Encode(BertTokenizer tokenizer, string text)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(text);
        var vocab = tokenizer.Vocabulary;
        var ids = new List<int> { vocab.ClsId };
        var positions = new List<int>();
        var parts = text.Split(MaskText);
        for (int i = 0; i < parts.Length; i++)
        {
            tokenizer.Encode(parts[i], ids);
            if (i + 1 < parts.Length)
            {
                positions.Add(ids.Count);
                ids.Add(vocab.MaskId);
            }
        }
        ids.Add(vocab.SepId);
        if (positions.Count == 0)
            throw new ArgumentException($"the text has no {MaskText} token to fill: \"{text}\"", nameof(text));
        return (ids, positions);
    }

    /// <summary>The <paramref name="topK"/> most probable tokens for each [MASK], most probable first.</summary>
    public static IReadOnlyList<IReadOnlyList<MaskPrediction>> Fill(BertModelBase model, BertTokenizer tokenizer, string text, int topK = 5)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!model.Config.HasMlmHead) throw new ArgumentException($"{model.Config.Name} has no masked-LM head", nameof(model));
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), topK, "top-k must be positive");
        var (ids, positions) = Encode(tokenizer, text);
        if (ids.Count > model.MaxSeq)
            throw new ArgumentException($"the text is {ids.Count} tokens with [CLS] and [SEP]; the model takes at most {model.MaxSeq}", nameof(text));
        if (positions.Count > model.MaxPredictions)
            throw new ArgumentException($"{positions.Count} masks; the model was planned for at most {model.MaxPredictions}", nameof(text));
        int s = ids.Count, p = positions.Count, v = model.Config.VocabSize;
        var be = model.Backend;
        using var idsBuffer = be.Allocate(s, DType.I32, "fill-mask-ids");
        using var types = be.Allocate(s, DType.I32, "fill-mask-types");
        using var mask = be.Allocate(s, DType.I32, "fill-mask-attention");
        using var positionBuffer = be.Allocate(p, DType.I32, "fill-mask-positions");
        be.Upload<int>(idsBuffer, ids.ToArray());
        be.Upload<int>(mask, Enumerable.Repeat(1, s).ToArray());
        be.Upload<int>(positionBuffer, positions.ToArray());
        bool wasTraining = model.Training;
        model.Training = false;
        var logits = new float[p * v];
        try
        {
            model.Forward(new BertBatch
            {
                Batch = 1, Seq = s, Predictions = p,
                InputIds = idsBuffer, TokenTypeIds = types, AttentionMask = mask, MlmPositions = positionBuffer,
            });
            // Rows MlmLogitsStride apart (a backend may pad the vocabulary GEMM): keep the first V columns of each.
            int ld = Math.Max(v, model.MlmLogitsStride);
            var rows = new float[p * ld];
            be.Download<float>(rows, model.MlmLogits.Slice(0, (long)p * ld));
            for (int m = 0; m < p; m++) rows.AsSpan(m * ld, v).CopyTo(logits.AsSpan(m * v, v));
        }
        finally
        {
            model.Training = wasTraining;
        }

        var vocab = tokenizer.Vocabulary;
        var result = new List<IReadOnlyList<MaskPrediction>>(p);
        for (int m = 0; m < p; m++)
        {
            var row = logits.AsSpan(m * v, v);
            double max = double.NegativeInfinity;
            foreach (float x in row) max = Math.Max(max, x);
            double sum = 0;
            foreach (float x in row) sum += Math.Exp(x - max);
            var best = Enumerable.Range(0, v).OrderByDescending(i => logits[m * v + i]).ThenBy(i => i).Take(Math.Min(topK, v));
            var candidates = new List<MaskPrediction>();
            foreach (int id in best)
            {
                var filled = ids.ToArray();
                filled[positions[m]] = id;
                candidates.Add(new MaskPrediction(id, vocab[id], Math.Exp(row[id] - max) / sum, Decode(vocab, filled)));
            }
            result.Add(candidates);
        }
        return result;
    }

    /// <summary>Token ids back to text as transformers' decode does: special tokens [CLS]/[SEP]/[PAD]
    /// dropped, "##" pieces joined to the previous token, no space before . , ! ? ; : and '.</summary>
    public static string Decode(Vocabulary vocab, IReadOnlyList<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            if (id == vocab.ClsId || id == vocab.SepId || id == vocab.PadId) continue;
            string t = vocab[id];
            if (t.StartsWith(Vocabulary.ContinuationPrefix, StringComparison.Ordinal) && t.Length > 2 && sb.Length > 0)
            {
                sb.Append(t.AsSpan(2));
                continue;
            }
            if (sb.Length > 0 && !(t.Length == 1 && t[0] is '.' or ',' or '!' or '?' or ';' or ':' or '\'')) sb.Append(' ');
            sb.Append(t);
        }
        return sb.ToString();
    }
}

/// <summary>How a sequence's vector is formed from the final hidden states.</summary>
public enum Pooling
{
    /// <summary>The hidden state of [CLS] (position 0).</summary>
    Cls = 0,
    /// <summary>The mean of the hidden states of every token, [CLS] and [SEP] included, padding excluded.</summary>
    Mean = 1,
}

/// <summary>Sentence vectors from the final hidden states of the encoder (dropout off).</summary>
public static class Embedder
{
    /// <summary>One vector per text: F32[texts.Count · H], row-major. Texts longer than
    /// <paramref name="maxSeq"/> tokens (with [CLS] and [SEP]) are truncated.</summary>
    /// <param name="progress">Called with the number of texts done after each batch.</param>
    public static float[] Embed(BertModelBase model, BertTokenizer tokenizer, IReadOnlyList<string> texts, Pooling pooling,
        int maxSeq, int batchSize, Action<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(texts);
        if (maxSeq < 2 || maxSeq > model.MaxSeq) throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, $"sequence length must be in [2, {model.MaxSeq}]");
        int h = model.Config.Hidden;
        int b = Math.Clamp(batchSize, 1, model.MaxBatch);
        var examples = texts.Select((t, i) => new ClassificationExample(t, null, "", $"text {i + 1}")).ToList();
        var features = Featurizer.Classification(examples, new Dictionary<string, int> { [""] = 0 }, tokenizer, maxSeq);
        var result = new float[(long)texts.Count * h];
        var hidden = new float[(long)b * maxSeq * h];
        var rows = new int[b];
        bool wasTraining = model.Training;
        model.Training = false;
        try
        {
            using var device = new FineTuningBatch(model.Backend, b, maxSeq);
            for (int start = 0; start < features.Count; start += b)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = Math.Min(b, features.Count - start);
                for (int i = 0; i < n; i++) rows[i] = start + i;
                int seq = FineTuningBatch.SeqOf(features, rows.AsSpan(0, n));
                model.Forward(device.Upload(features, rows.AsSpan(0, n), seq, withLabels: false));
                model.Backend.Download<float>(hidden.AsSpan(0, n * seq * h), model.SequenceOutput);
                for (int i = 0; i < n; i++)
                {
                    var output = result.AsSpan((start + i) * h, h);
                    if (pooling == Pooling.Cls)
                    {
                        hidden.AsSpan(i * seq * h, h).CopyTo(output);
                        continue;
                    }
                    int len = features.Lengths[start + i];
                    for (int t = 0; t < len; t++)
                    {
                        var x = hidden.AsSpan((i * seq + t) * h, h);
                        for (int c = 0; c < h; c++) output[c] += x[c];
                    }
                    for (int c = 0; c < h; c++) output[c] /= len;
                }
                progress?.Invoke(start + n);
            }
        }
        finally
        {
            model.Training = wasTraining;
        }
        return result;
    }
}
