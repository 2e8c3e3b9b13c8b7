using Bert.Runtime.Data;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// Tokenized examples as the model reads them: rows of up to <see cref="Stride"/> tokens
/// ([CLS] … [SEP] …), row-major at that stride, padding after <see cref="Lengths"/>. One example may
/// give several rows (a long sentence split at word boundaries; a long context in overlapping
/// windows); <see cref="Example"/> maps a row back to its example.
/// </summary>
public sealed class Features
{
    public required FineTuningTask Task { get; init; }
    /// <summary>Rows.</summary>
    public required int Count { get; init; }
    /// <summary>Tokens per row in the arrays (the longest row fits; batches pad only to their own longest row).</summary>
    public required int Stride { get; init; }
    /// <summary>[Count·Stride] token ids.</summary>
    public required int[] InputIds { get; init; }
    /// <summary>[Count·Stride] segment ids.</summary>
    public required int[] TokenTypes { get; init; }
    /// <summary>[Count] real tokens per row.</summary>
    public required int[] Lengths { get; init; }
    /// <summary>[Count] the example each row came from.</summary>
    public required int[] Example { get; init; }
    /// <summary>Classification: [Count] class ids. Token classification: [Count·Stride] tag ids (0 where the weight is 0).</summary>
    public int[]? Labels { get; init; }
    /// <summary>Token classification: [Count·Stride] 1 at the first piece of a word, 0 elsewhere.</summary>
    public float[]? LabelWeights { get; init; }
    /// <summary>Span: [Count] answer start / end token positions (0, the [CLS] token, when the answer is outside the row's window).</summary>
    public int[]? StartPositions { get; init; }
    public int[]? EndPositions { get; init; }
    /// <summary>Token classification: [Count·Stride] the word of a word's first piece, −1 elsewhere.
    /// Span: the context word of a context token, −1 elsewhere.</summary>
    public int[]? WordAt { get; init; }
    /// <summary>Span: [Count·Stride] whether this window is the one where the token has the most context
    /// (a token in several windows is scored only in that one, as run_squad.py does).</summary>
    public bool[]? MaxContext { get; init; }
    /// <summary>Examples that did not fit and were truncated.</summary>
    public int Truncated { get; init; }
    /// <summary>Examples.</summary>
    public required int Examples { get; init; }
}

/// <summary>Turns examples into <see cref="Features"/> with BERT's input conventions.</summary>
public static class Featurizer
{
    /// <summary>[CLS] A [SEP] (B [SEP]); a pair is trimmed from the longer side (truncate_seq_pair).
    /// A single text that does not fit is truncated at its end, or with <paramref name="tailTokens"/> &gt; 0
    /// in its middle: the first maxSeq − 2 − tailTokens tokens and the last tailTokens are kept
    /// ("head+tail", the best of the truncations compared by Sun et al. 2019, How to Fine-Tune BERT for
    /// Text Classification?). With <paramref name="maxWindows"/> &gt; 1 a long single text is instead
    /// cut into consecutive windows of maxSeq − 2 tokens, at most maxWindows of them, the last one
    /// being the text's end; every window is a row with the example's label, and evaluation averages
    /// the windows' logits.</summary>
    /// <param name="labelIndex">Class name → class id.</param>
    public static Features Classification(IReadOnlyList<ClassificationExample> examples, IReadOnlyDictionary<string, int> labelIndex,
        BertTokenizer tokenizer, int maxSeq, int tailTokens = 0, int maxWindows = 1)
    {
        if (maxSeq < 4) throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, "sequence length must be at least 4");
        if (tailTokens < 0 || tailTokens > maxSeq - 2)
            throw new ArgumentOutOfRangeException(nameof(tailTokens), tailTokens, $"tail tokens must be in [0, {maxSeq - 2}]");
        if (maxWindows < 1) throw new ArgumentOutOfRangeException(nameof(maxWindows), maxWindows, "windows must be at least 1");
        var vocab = tokenizer.Vocabulary;
        var rows = new List<(int Example, int Label, int[] Ids, int[] Types)>(examples.Count);
        int truncated = 0;
        var a = new List<int>();
        var b = new List<int>();
        for (int i = 0; i < examples.Count; i++)
        {
            var e = examples[i];
            if (!labelIndex.TryGetValue(e.Label, out int label))
                throw new FineTuningFormatException(e.Origin, "label", $"\"{e.Label}\"",
                    $"not a class of the training data ({string.Join(", ", labelIndex.OrderBy(kv => kv.Value).Select(kv => kv.Key))})");
            a.Clear();
            b.Clear();
            tokenizer.Encode(e.Text, a);
            if (e.TextPair is not null) tokenizer.Encode(e.TextPair, b);
            int budget = maxSeq - (e.TextPair is null ? 2 : 3);
            if (e.TextPair is null && maxWindows > 1 && a.Count > budget)
            {
                int windows = (a.Count + budget - 1) / budget;
                if (windows > maxWindows) truncated++;
                for (int w = 0; w < Math.Min(windows, maxWindows); w++)
                {
                    // The last window ends where the text ends, whether or not the middle was skipped.
                    int start = w == maxWindows - 1 || w == windows - 1 ? a.Count - budget : w * budget;
                    rows.Add((i, label, Row(vocab, a.GetRange(start, budget), null), new int[budget + 2]));
                }
                continue;
            }
            if (a.Count + b.Count > budget)
            {
                truncated++;
                if (e.TextPair is null && tailTokens > 0) a.RemoveRange(budget - tailTokens, a.Count - budget);
                while (a.Count + b.Count > budget)
                {
                    if (a.Count >= b.Count) a.RemoveAt(a.Count - 1);
                    else b.RemoveAt(b.Count - 1);
                }
            }
            var ids = Row(vocab, a, e.TextPair is null ? null : b);
            var types = new int[ids.Length];
            if (e.TextPair is not null) types.AsSpan(a.Count + 2).Fill(1);
            rows.Add((i, label, ids, types));
        }

        int n = rows.Count;
        var f = new Features
        {
            Task = FineTuningTask.Classification, Count = n, Examples = examples.Count, Stride = maxSeq,
            InputIds = new int[n * maxSeq], TokenTypes = new int[n * maxSeq], Lengths = new int[n],
            Example = new int[n], Labels = new int[n], Truncated = truncated,
        };
        for (int r = 0; r < n; r++)
        {
            var row = rows[r];
            row.Ids.CopyTo(f.InputIds, r * maxSeq);
            row.Types.CopyTo(f.TokenTypes, r * maxSeq);
            f.Lengths[r] = row.Ids.Length;
            f.Example[r] = row.Example;
            f.Labels![r] = row.Label;
        }
        return f;
    }

    /// <summary>[CLS] a [SEP], or [CLS] a [SEP] b [SEP].</summary>
    private static int[] Row(Vocabulary vocab, List<int> a, List<int>? b)
    {
        var ids = new int[a.Count + 2 + (b is null ? 0 : b.Count + 1)];
        int t = 0;
        ids[t++] = vocab.ClsId;
        foreach (int id in a) ids[t++] = id;
        ids[t++] = vocab.SepId;
        if (b is null) return ids;
        foreach (int id in b) ids[t++] = id;
        ids[t] = vocab.SepId;
        return ids;
    }

    /// <summary>[CLS] pieces [SEP]; each word is labelled at its first piece. A sentence longer than a
    /// row is split at word boundaries into several rows, so every word is classified.</summary>
    /// <param name="tagIndex">Tag → tag id.</param>
    public static Features Tokens(IReadOnlyList<TaggedSentence> sentences, IReadOnlyDictionary<string, int> tagIndex,
        BertTokenizer tokenizer, int maxSeq)
    {
        if (maxSeq < 3) throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, "sequence length must be at least 3");
        var vocab = tokenizer.Vocabulary;
        int budget = maxSeq - 2;
        var rows = new List<(int Sentence, List<(int Word, int[] Pieces)> Words)>();
        int truncated = 0;
        var pieces = new List<int>();
        for (int s = 0; s < sentences.Count; s++)
        {
            var sentence = sentences[s];
            var current = new List<(int, int[])>();
            int used = 0;
            bool cut = false;
            for (int w = 0; w < sentence.Words.Length; w++)
            {
                if (!tagIndex.ContainsKey(sentence.Tags[w]))
                    throw new FineTuningFormatException(sentence.Origin, $"word {w + 1} ('{sentence.Words[w]}'), tag", $"\"{sentence.Tags[w]}\"",
                        $"not a tag of the training data ({string.Join(", ", tagIndex.OrderBy(kv => kv.Value).Select(kv => kv.Key))})");
                pieces.Clear();
                tokenizer.Encode(sentence.Words[w], pieces);
                // A word the basic tokenizer removes entirely (control characters) still needs a prediction.
                if (pieces.Count == 0) pieces.Add(vocab.UnkId);
                if (pieces.Count > budget)
                {
                    pieces.RemoveRange(budget, pieces.Count - budget);
                    cut = true;
                }
                if (used + pieces.Count > budget)
                {
                    rows.Add((s, current));
                    current = [];
                    used = 0;
                }
                current.Add((w, pieces.ToArray()));
                used += pieces.Count;
            }
            if (current.Count > 0) rows.Add((s, current));
            if (cut) truncated++;
        }

        int n = rows.Count;
        var f = new Features
        {
            Task = FineTuningTask.TokenClassification, Count = n, Examples = sentences.Count, Stride = maxSeq,
            InputIds = new int[n * maxSeq], TokenTypes = new int[n * maxSeq], Lengths = new int[n], Example = new int[n],
            Labels = new int[n * maxSeq], LabelWeights = new float[n * maxSeq], WordAt = new int[n * maxSeq],
        };
        Array.Fill(f.WordAt, -1);
        for (int r = 0; r < n; r++)
        {
            var (s, words) = rows[r];
            int o = r * maxSeq, t = 0;
            f.InputIds[o + t++] = vocab.ClsId;
            foreach (var (w, ps) in words)
            {
                f.Labels![o + t] = tagIndex[sentences[s].Tags[w]];
                f.LabelWeights![o + t] = 1f;
                f.WordAt![o + t] = w;
                foreach (int id in ps) f.InputIds[o + t++] = id;
            }
            f.InputIds[o + t++] = vocab.SepId;
            f.Lengths[r] = t;
            f.Example[r] = s;
        }
        return WithTruncated(f, truncated);
    }

    /// <summary>
    /// SQuAD features as google-research/bert's run_squad.py builds them: the context is split on
    /// whitespace into words (character offsets kept), each word into pieces; rows are
    /// [CLS] question [SEP] window [SEP] over windows of the context that start every
    /// <paramref name="docStride"/> pieces; the answer's token span is narrowed to the pieces of the
    /// answer text when they match (_improve_answer_span); a window without the whole answer points at [CLS].
    /// </summary>
    public static Features Span(IReadOnlyList<SpanExample> examples, BertTokenizer tokenizer, int maxSeq,
        int docStride = 128, int maxQueryLength = 64)
    {
        if (maxSeq < 8) throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, "sequence length must be at least 8");
        if (docStride < 1) throw new ArgumentOutOfRangeException(nameof(docStride), docStride, "document stride must be positive");
        var vocab = tokenizer.Vocabulary;
        var rows = new List<(int Example, int[] Ids, int[] Types, int[] WordAt, bool[] MaxContext, int Start, int End)>();
        int truncated = 0;
        var scratch = new List<int>();
        for (int e = 0; e < examples.Count; e++)
        {
            var ex = examples[e];
            var words = SpanWords.Split(ex.Context);
            int startWord = words.WordAtChar(ex.AnswerStart);
            int endWord = words.WordAtChar(ex.AnswerStart + ex.AnswerText.Length - 1);

            var docPieces = new List<int>();
            var pieceWord = new List<int>();
            var wordFirstPiece = new int[words.Count];
            for (int w = 0; w < words.Count; w++)
            {
                wordFirstPiece[w] = docPieces.Count;
                scratch.Clear();
                tokenizer.Encode(ex.Context.AsSpan(words.Start[w], words.End[w] - words.Start[w]), scratch);
                foreach (int id in scratch)
                {
                    docPieces.Add(id);
                    pieceWord.Add(w);
                }
            }
            int tokStart = wordFirstPiece[startWord];
            int tokEnd = endWord + 1 < words.Count ? wordFirstPiece[endWord + 1] - 1 : docPieces.Count - 1;
            (tokStart, tokEnd) = ImproveAnswerSpan(docPieces, tokStart, tokEnd, tokenizer, ex.AnswerText, scratch);
            // An answer whose words give no pieces (only characters the tokenizer removes) has no token span.
            if (tokStart >= docPieces.Count || tokEnd < tokStart) tokStart = tokEnd = -1;

            scratch.Clear();
            tokenizer.Encode(ex.Question, scratch);
            if (scratch.Count > maxQueryLength)
            {
                scratch.RemoveRange(maxQueryLength, scratch.Count - maxQueryLength);
                truncated++;
            }
            var query = scratch.ToArray();
            int maxDoc = maxSeq - query.Length - 3;
            if (maxDoc < 1)
                throw new ArgumentOutOfRangeException(nameof(maxSeq), maxSeq, $"sequence length {maxSeq} leaves no room for the context after a {query.Length}-piece question");

            var windows = new List<(int Start, int Length)>();
            for (int start = 0; ; start += Math.Min(maxDoc, docStride))
            {
                int length = Math.Min(maxDoc, docPieces.Count - start);
                windows.Add((start, Math.Max(0, length)));
                if (start + length >= docPieces.Count) break;
            }
            for (int wi = 0; wi < windows.Count; wi++)
            {
                var (ws, wl) = windows[wi];
                int len = 1 + query.Length + 1 + wl + 1;
                var ids = new int[len];
                var types = new int[len];
                var wordAt = new int[len];
                var maxContext = new bool[len];
                Array.Fill(wordAt, -1);
                int t = 0;
                ids[t++] = vocab.ClsId;
                foreach (int q in query) ids[t++] = q;
                ids[t++] = vocab.SepId;
                int docOffset = t;
                for (int i = 0; i < wl; i++)
                {
                    ids[t] = docPieces[ws + i];
                    types[t] = 1;
                    wordAt[t] = pieceWord[ws + i];
                    maxContext[t] = IsMaxContext(windows, wi, ws + i);
                    t++;
                }
                ids[t] = vocab.SepId;
                types[t] = 1;
                int startPos = 0, endPos = 0;
                if (tokStart >= 0 && tokStart >= ws && tokEnd < ws + wl)
                {
                    startPos = tokStart - ws + docOffset;
                    endPos = tokEnd - ws + docOffset;
                }
                rows.Add((e, ids, types, wordAt, maxContext, startPos, endPos));
            }
        }

        int n = rows.Count;
        var f = new Features
        {
            Task = FineTuningTask.Span, Count = n, Examples = examples.Count, Stride = maxSeq,
            InputIds = new int[n * maxSeq], TokenTypes = new int[n * maxSeq], Lengths = new int[n], Example = new int[n],
            StartPositions = new int[n], EndPositions = new int[n], WordAt = new int[n * maxSeq], MaxContext = new bool[n * maxSeq],
        };
        Array.Fill(f.WordAt, -1);
        for (int r = 0; r < n; r++)
        {
            var row = rows[r];
            int o = r * maxSeq;
            row.Ids.CopyTo(f.InputIds, o);
            row.Types.CopyTo(f.TokenTypes, o);
            row.WordAt.CopyTo(f.WordAt, o);
            row.MaxContext.CopyTo(f.MaxContext, o);
            f.Lengths[r] = row.Ids.Length;
            f.Example[r] = row.Example;
            f.StartPositions![r] = row.Start;
            f.EndPositions![r] = row.End;
        }
        return WithTruncated(f, truncated);
    }

    private static (int, int) ImproveAnswerSpan(List<int> docPieces, int start, int end, BertTokenizer tokenizer, string answer, List<int> scratch)
    {
        scratch.Clear();
        tokenizer.Encode(answer, scratch);
        int n = scratch.Count;
        if (n == 0) return (start, end);
        for (int s = start; s <= end; s++)
            for (int e = end; e >= s; e--)
            {
                if (e - s + 1 != n) continue;
                bool same = true;
                for (int i = 0; i < n && same; i++) same = docPieces[s + i] == scratch[i];
                if (same) return (s, e);
            }
        return (start, end);
    }

    /// <summary>run_squad.py's _check_is_max_context: the window where min(left, right) context of the
    /// piece is largest (ties: the earlier window, with a 0.01·length bonus as in the reference).</summary>
    private static bool IsMaxContext(List<(int Start, int Length)> windows, int current, int position)
    {
        double best = double.NegativeInfinity;
        int bestIndex = -1;
        for (int i = 0; i < windows.Count; i++)
        {
            var (s, l) = windows[i];
            int e = s + l - 1;
            if (position < s || position > e) continue;
            int left = position - s, right = e - position;
            double score = Math.Min(left, right) + 0.01 * l;
            if (score > best)
            {
                best = score;
                bestIndex = i;
            }
        }
        return bestIndex == current;
    }

    private static Features WithTruncated(Features f, int truncated) => new()
    {
        Task = f.Task, Count = f.Count, Examples = f.Examples, Stride = f.Stride, InputIds = f.InputIds, TokenTypes = f.TokenTypes,
        Lengths = f.Lengths, Example = f.Example, Labels = f.Labels, LabelWeights = f.LabelWeights, StartPositions = f.StartPositions,
        EndPositions = f.EndPositions, WordAt = f.WordAt, MaxContext = f.MaxContext, Truncated = truncated,
    };
}

/// <summary>The whitespace-separated words of a context with their character ranges [Start, End).</summary>
public sealed class SpanWords
{
    private readonly int[] _wordOfChar;

    private SpanWords(int[] start, int[] end, int[] wordOfChar)
    {
        Start = start;
        End = end;
        _wordOfChar = wordOfChar;
    }

    public int[] Start { get; }
    public int[] End { get; }
    public int Count => Start.Length;

    /// <summary>The word holding character <paramref name="index"/>, or the word before it when the
    /// character is whitespace (run_squad.py's char_to_word_offset).</summary>
    public int WordAtChar(int index) => Math.Max(0, _wordOfChar[Math.Clamp(index, 0, _wordOfChar.Length - 1)]);

    public static SpanWords Split(string text)
    {
        var start = new List<int>();
        var end = new List<int>();
        var wordOfChar = new int[Math.Max(1, text.Length)];
        bool inWord = false;
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsWhiteSpace(text[i]))
            {
                if (inWord) end.Add(i);
                inWord = false;
            }
            else if (!inWord)
            {
                start.Add(i);
                inWord = true;
            }
            wordOfChar[i] = start.Count - 1;
        }
        if (inWord) end.Add(text.Length);
        if (start.Count == 0)
        {
            start.Add(0);
            end.Add(0);
        }
        return new SpanWords(start.ToArray(), end.ToArray(), wordOfChar);
    }
}
