namespace Bert.Runtime.Data;

/// <summary>Settings of <see cref="VocabularyTrainer"/>.</summary>
public sealed record VocabularyTrainerOptions
{
    /// <summary>Tokens in the result, specials included (8000 for the Brown corpus; 30522 for bert-base).</summary>
    public int VocabularySize { get; init; } = 8000;

    /// <summary>Lowercase and strip accents before counting words (uncased model).</summary>
    public bool LowerCase { get; init; } = true;

    /// <summary>A pair seen fewer times than this is never merged; training stops early when none is left.</summary>
    public int MinFrequency { get; init; } = 2;

    /// <summary>Words longer than this (code points) become [UNK] in tokenization, so they are not counted.</summary>
    public int MaxInputCharsPerWord { get; init; } = 200;

    /// <summary>Most distinct words counted at once when streaming (2 Mi, about 200 MB): when the table is
    /// full, the rarest words are forgotten (those below the count that keeps at most half the table), so
    /// memory is bounded whatever the corpus. A word forgotten early and frequent later is counted from then
    /// on; words that rare cannot win merges over the frequent ones.</summary>
    public int MaxWords { get; init; } = 2 << 20;
}

/// <summary>
/// Learns a WordPiece vocabulary the way HuggingFace's WordPieceTrainer does: words from the
/// <see cref="BasicTokenizer"/> are split into characters (continuation characters with "##"), then
/// the most frequent adjacent pair of symbols (weighted by word count) is merged, repeatedly, until the
/// vocabulary has the requested size. Result: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, every
/// character seen, every character's "##" form, then the merged tokens in merge order.
/// Deterministic: ties go to the pair of smallest (left id, right id), ids being assigned in that order.
/// </summary>
public static class VocabularyTrainer
{
    public static Vocabulary Train(TextCorpus corpus, VocabularyTrainerOptions options,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        var counts = CountWords(corpus, options, cancellationToken);
        return Train(counts, options, corpus.Source, progress, cancellationToken);
    }

    /// <summary>Learns the vocabulary of streamed corpus files in bounded memory (see <see cref="VocabularyTrainerOptions.MaxWords"/>).</summary>
    /// <param name="include">Which documents (by 0-based index in the whole input) are counted; null: all.</param>
    public static Vocabulary Train(DocumentReader reader, VocabularyTrainerOptions options, string source, Func<long, bool>? include = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        var counts = CountWords(reader, options, include, cancellationToken);
        return Train(counts, options, source, progress, cancellationToken);
    }

    /// <summary>Word frequencies of streamed corpus files: documents are counted in windows of about 4 Mi characters
    /// (in parallel), the table pruned whenever it holds more than <see cref="VocabularyTrainerOptions.MaxWords"/>.
    /// The counts do not depend on the thread count.</summary>
    public static Dictionary<string, long> CountWords(DocumentReader reader, VocabularyTrainerOptions options, Func<long, bool>? include = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var total = new Dictionary<string, long>(StringComparer.Ordinal);
        var window = new List<string[]>();
        long chars = 0, index = -1;
        void Flush()
        {
            if (window.Count == 0) return;
            foreach (var (w, n) in CountWords(new TextCorpus(window, "window"), options, cancellationToken))
                total[w] = total.GetValueOrDefault(w) + n;
            window = [];
            chars = 0;
            if (total.Count > options.MaxWords) Prune(total, options.MaxWords / 2);
        }
        foreach (var document in reader.Documents(cancellationToken))
        {
            if (include is not null && !include(++index)) continue;
            if (include is null) index++;
            window.Add(document);
            foreach (var s in document) chars += s.Length;
            if (chars >= 4L << 20) Flush();
        }
        Flush();
        if (index < 0 && include is null && total.Count == 0)
            throw new CorpusFormatException(reader.Files.Count == 1 ? reader.Files[0] : string.Join(", ", reader.Files), "documents", "0",
                "the corpus holds no text (empty or only blank lines)");
        return total;
    }

    /// <summary>Forgets the rarest words: every word below the smallest count that keeps at most <paramref name="keep"/>.</summary>
    internal static void Prune(Dictionary<string, long> counts, int keep)
    {
        var histogram = new SortedDictionary<long, int>();
        foreach (var n in counts.Values) histogram[n] = histogram.GetValueOrDefault(n) + 1;
        long threshold = long.MaxValue;
        int kept = 0;
        foreach (var (n, words) in histogram.Reverse())
        {
            if (kept + words > keep && kept > 0) break;
            kept += words;
            threshold = n;
        }
        var rare = counts.Where(kv => kv.Value < threshold).Select(kv => kv.Key).ToList();
        foreach (var w in rare) counts.Remove(w);
    }

    /// <summary>Word frequencies of the corpus after basic tokenization (parallel over documents).</summary>
    public static Dictionary<string, long> CountWords(TextCorpus corpus, VocabularyTrainerOptions options,
        CancellationToken cancellationToken = default)
    {
        var total = new Dictionary<string, long>(StringComparer.Ordinal);
        var gate = new object();
        Parallel.ForEach(System.Collections.Concurrent.Partitioner.Create(0, corpus.Documents.Count, 16),
            new ParallelOptions { CancellationToken = cancellationToken },
            () => new CountSink(options.MaxInputCharsPerWord),
            (range, _, sink) =>
            {
                var basic = sink.Tokenizer ??= new BasicTokenizer(options.LowerCase);
                for (int d = range.Item1; d < range.Item2; d++)
                    foreach (var sentence in corpus.Documents[d])
                        basic.Split(sentence, ref sink);
                return sink;
            },
            sink =>
            {
                lock (gate)
                {
                    foreach (var (w, n) in sink.Counts) total[w] = total.GetValueOrDefault(w) + n;
                }
            });
        return total;
    }

    private sealed class CountSink : IWordSink
    {
        private readonly int _maxChars;
        private readonly Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>> _lookup;

        public CountSink(int maxChars)
        {
            _maxChars = maxChars;
            _lookup = Counts.GetAlternateLookup<ReadOnlySpan<char>>();
        }

        public Dictionary<string, long> Counts { get; } = new(StringComparer.Ordinal);

        public BasicTokenizer? Tokenizer { get; set; }

        public void OnWord(ReadOnlySpan<char> word)
        {
            if (word.Length > _maxChars && word.Length - CountPairs(word) > _maxChars) return;
            ref long n = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_lookup, word, out _);
            n++;
        }
    }

    private static int CountPairs(ReadOnlySpan<char> s)
    {
        int n = 0;
        for (int i = 0; i + 1 < s.Length; i++)
            if (char.IsHighSurrogate(s[i]) && char.IsLowSurrogate(s[i + 1])) { n++; i++; }
        return n;
    }

    /// <summary>Trains on word frequencies (see <see cref="CountWords"/>).</summary>
    public static Vocabulary Train(IReadOnlyDictionary<string, long> wordCounts, VocabularyTrainerOptions options,
        string source = "<memory>", IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        // Words in ordinal order so that every derived order is independent of hashing.
        var words = wordCounts.Where(kv => kv.Value > 0 && kv.Key.Length > 0).Select(kv => kv.Key).Order(StringComparer.Ordinal).ToArray();
        var freq = words.Select(w => wordCounts[w]).ToArray();

        var alphabet = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var w in words)
            foreach (var r in w.EnumerateRunes()) alphabet.Add(r.ToString());

        var tokens = new List<string>(Vocabulary.SpecialTokens);
        tokens.AddRange(alphabet);
        tokens.AddRange(alphabet.Select(c => Vocabulary.ContinuationPrefix + c));
        if (options.VocabularySize < tokens.Count)
            throw new ArgumentOutOfRangeException(nameof(options), options.VocabularySize,
                $"vocabulary size {options.VocabularySize} is smaller than the {Vocabulary.SpecialTokens.Count} special tokens plus the {alphabet.Count} characters of {source} and their ## forms ({tokens.Count})");
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Count; i++) ids[tokens[i]] = i;

        // Symbols of each word: first character plain, the others as "##" continuations.
        var symbols = new int[words.Length][];
        var lengths = new int[words.Length];
        for (int w = 0; w < words.Length; w++)
        {
            var runes = words[w].EnumerateRunes().ToArray();
            var s = new int[runes.Length];
            for (int i = 0; i < runes.Length; i++)
                s[i] = ids[i == 0 ? runes[i].ToString() : Vocabulary.ContinuationPrefix + runes[i].ToString()];
            symbols[w] = s;
            lengths[w] = s.Length;
        }

        var pairCounts = new Dictionary<long, long>();
        var pairWords = new Dictionary<long, List<int>>();
        for (int w = 0; w < words.Length; w++)
        {
            var s = symbols[w];
            for (int i = 0; i + 1 < s.Length; i++)
            {
                long key = Key(s[i], s[i + 1]);
                pairCounts[key] = pairCounts.GetValueOrDefault(key) + freq[w];
                AddWord(pairWords, key, w);
            }
        }
        var queue = new PriorityQueue<long, (long Count, long Key)>(Comparer<(long Count, long Key)>.Create(
            (x, y) => x.Count != y.Count ? y.Count.CompareTo(x.Count) : x.Key.CompareTo(y.Key)));
        foreach (var (key, n) in pairCounts) queue.Enqueue(key, (n, key));

        var changed = new HashSet<long>();
        var seen = new int[words.Length];
        int stamp = 0;
        int target = options.VocabularySize;
        int startCount = tokens.Count;
        while (tokens.Count < target && queue.TryDequeue(out long pair, out var priority))
        {
            cancellationToken.ThrowIfCancellationRequested();
            long current = pairCounts.GetValueOrDefault(pair);
            if (current != priority.Count) continue; // stale entry
            if (current < options.MinFrequency) break;

            int a = (int)(pair >> 32), b = (int)(pair & 0xFFFFFFFF);
            string merged = tokens[a] + tokens[b][Vocabulary.ContinuationPrefix.Length..];
            if (!ids.TryGetValue(merged, out int c))
            {
                c = tokens.Count;
                tokens.Add(merged);
                ids[merged] = c;
            }

            changed.Clear();
            stamp++;
            foreach (int w in pairWords[pair])
            {
                if (seen[w] == stamp) continue;
                seen[w] = stamp;
                MergeInWord(symbols[w], ref lengths[w], a, b, c, freq[w], w, pairCounts, pairWords, changed);
            }
            pairWords.Remove(pair);
            pairCounts.Remove(pair);
            foreach (long key in changed)
            {
                long n = pairCounts.GetValueOrDefault(key);
                if (n > 0) queue.Enqueue(key, (n, key));
            }
            if (((tokens.Count - startCount) & 63) == 0)
                progress?.Report((double)(tokens.Count - startCount) / Math.Max(1, target - startCount));
        }
        progress?.Report(1);
        return Vocabulary.FromTokens(tokens, source);
    }

    private static void MergeInWord(int[] s, ref int length, int a, int b, int c, long count, int word,
        Dictionary<long, long> pairCounts, Dictionary<long, List<int>> pairWords, HashSet<long> changed)
    {
        int n = length;
        int i = 0;
        while (i + 1 < n)
        {
            if (s[i] != a || s[i + 1] != b)
            {
                i++;
                continue;
            }
            if (i > 0) Adjust(Key(s[i - 1], a), -count);
            if (i + 2 < n) Adjust(Key(b, s[i + 2]), -count);
            s[i] = c;
            Array.Copy(s, i + 2, s, i + 1, n - i - 2);
            n--;
            if (i > 0) Adjust(Key(s[i - 1], c), count, word);
            if (i + 1 < n) Adjust(Key(c, s[i + 1]), count, word);
            i++;
        }
        length = n;

        void Adjust(long key, long delta, int w = -1)
        {
            pairCounts[key] = pairCounts.GetValueOrDefault(key) + delta;
            changed.Add(key);
            if (w >= 0) AddWord(pairWords, key, w);
        }
    }

    private static void AddWord(Dictionary<long, List<int>> pairWords, long key, int word)
    {
        if (!pairWords.TryGetValue(key, out var list)) pairWords[key] = list = new List<int>(4);
        if (list.Count == 0 || list[^1] != word) list.Add(word);
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;
}
