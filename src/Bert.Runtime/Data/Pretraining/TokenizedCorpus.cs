using System.Collections.Concurrent;

namespace Bert.Runtime.Data;

/// <summary>
/// Documents of sentences of token ids in three flat arrays (no per-sentence objects). Sentences that
/// tokenize to nothing are dropped, then documents left empty, as the reference does.
/// Capacity: 2^31 − 1 tokens.
/// </summary>
public sealed class TokenizedCorpus
{
    private readonly int[] _tokens;          // all token ids
    private readonly int[] _sentenceStarts;  // [sentences + 1] offsets into _tokens
    private readonly int[] _documentStarts;  // [documents + 1] offsets into _sentenceStarts

    public TokenizedCorpus(int[] tokens, int[] sentenceStarts, int[] documentStarts)
    {
        _tokens = tokens;
        _sentenceStarts = sentenceStarts;
        _documentStarts = documentStarts;
    }

    public int DocumentCount => _documentStarts.Length - 1;

    public int TotalSentences => _sentenceStarts.Length - 1;

    public long TotalTokens => _tokens.Length;

    public int SentenceCount(int document) => _documentStarts[document + 1] - _documentStarts[document];

    /// <summary>The ids of sentence <paramref name="sentence"/> of <paramref name="document"/>.</summary>
    public ReadOnlySpan<int> Sentence(int document, int sentence)
    {
        int s = _documentStarts[document] + sentence;
        return _tokens.AsSpan(_sentenceStarts[s], _sentenceStarts[s + 1] - _sentenceStarts[s]);
    }

    /// <summary>Tokenizes every sentence, in parallel over documents; the result does not depend on
    /// the thread count.</summary>
    public static TokenizedCorpus Tokenize(TextCorpus corpus, BertTokenizer tokenizer,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default, int maxDegreeOfParallelism = -1)
    {
        int n = corpus.Documents.Count;
        var perDocument = new (int[] Tokens, int[] Lengths)[n];
        long done = 0;
        var tokenizers = new ConcurrentBag<BertTokenizer>();
        Parallel.ForEach(Partitioner.Create(0, n, Math.Max(1, Math.Min(64, n / (4 * Environment.ProcessorCount) + 1))),
            new ParallelOptions { CancellationToken = cancellationToken, MaxDegreeOfParallelism = maxDegreeOfParallelism },
            () => tokenizers.TryTake(out var t) ? t : tokenizer.Clone(),
            (range, _, tok) =>
            {
                var ids = new List<int>(4096);
                var lengths = new List<int>(256);
                for (int d = range.Item1; d < range.Item2; d++)
                {
                    ids.Clear();
                    lengths.Clear();
                    foreach (var sentence in corpus.Documents[d])
                    {
                        int before = ids.Count;
                        tok.Encode(sentence, ids);
                        if (ids.Count > before) lengths.Add(ids.Count - before);
                    }
                    perDocument[d] = (ids.ToArray(), lengths.ToArray());
                }
                long now = Interlocked.Add(ref done, range.Item2 - range.Item1);
                progress?.Report((double)now / n);
                return tok;
            },
            tokenizers.Add);

        long totalTokens = 0;
        int totalSentences = 0, documents = 0;
        foreach (var (t, l) in perDocument)
        {
            if (l.Length == 0) continue;
            totalTokens += t.Length;
            totalSentences += l.Length;
            documents++;
        }
        if (totalTokens > Array.MaxLength)
            throw new CorpusFormatException(corpus.Source, "tokens", totalTokens.ToString(), $"more than {Array.MaxLength} tokens; split the corpus");
        var tokens = new int[totalTokens];
        var sentenceStarts = new int[totalSentences + 1];
        var documentStarts = new int[documents + 1];
        int tp = 0, sp = 0, dp = 0;
        foreach (var (t, l) in perDocument)
        {
            if (l.Length == 0) continue;
            documentStarts[dp++] = sp;
            t.CopyTo(tokens, tp);
            foreach (int len in l)
            {
                sentenceStarts[sp++] = tp;
                tp += len;
            }
        }
        sentenceStarts[sp] = tp;
        documentStarts[dp] = sp;
        return new TokenizedCorpus(tokens, sentenceStarts, documentStarts);
    }

    /// <summary>The documents of <paramref name="first"/> followed by those of <paramref name="second"/>.</summary>
    public static TokenizedCorpus Concat(TokenizedCorpus first, TokenizedCorpus second)
    {
        long tokens = first.TotalTokens + second.TotalTokens;
        if (tokens > Array.MaxLength) throw new ArgumentException($"{tokens} tokens exceed one array");
        var t = new int[tokens];
        first._tokens.CopyTo(t, 0);
        second._tokens.CopyTo(t, first._tokens.Length);
        var s = new int[first.TotalSentences + second.TotalSentences + 1];
        first._sentenceStarts.AsSpan(0, first.TotalSentences).CopyTo(s);
        for (int i = 0; i <= second.TotalSentences; i++) s[first.TotalSentences + i] = second._sentenceStarts[i] + first._tokens.Length;
        var d = new int[first.DocumentCount + second.DocumentCount + 1];
        first._documentStarts.AsSpan(0, first.DocumentCount).CopyTo(d);
        for (int i = 0; i <= second.DocumentCount; i++) d[first.DocumentCount + i] = second._documentStarts[i] + first.TotalSentences;
        return new TokenizedCorpus(t, s, d);
    }
}
