namespace Bert.Runtime.Data;

/// <summary>
/// The WordpieceTokenizer of google-research/bert: greedy longest-match-first over a word's code
/// points, continuation pieces looked up with the "##" prefix; a word with a piece that matches
/// nothing, or longer than <see cref="MaxInputCharsPerWord"/> code points, becomes one [UNK].
/// Lookups hash the span itself (no substring allocation). Thread-safe.
/// </summary>
public sealed class WordPieceTokenizer(Vocabulary vocabulary, int maxInputCharsPerWord = 200)
{
    public Vocabulary Vocabulary { get; } = vocabulary;

    public int MaxInputCharsPerWord { get; } = maxInputCharsPerWord;

    /// <summary>Appends the ids of the pieces of <paramref name="word"/> (no whitespace inside) to <paramref name="ids"/>.</summary>
    public void Encode(ReadOnlySpan<char> word, List<int> ids)
    {
        if (word.IsEmpty) return;
        var vocab = Vocabulary;
        if (word.Length > MaxInputCharsPerWord && CodePoints(word) > MaxInputCharsPerWord)
        {
            ids.Add(vocab.UnkId);
            return;
        }
        int first = ids.Count;
        int start = 0;
        while (start < word.Length)
        {
            int end = Math.Min(word.Length, start + (start == 0 ? vocab.MaxTokenChars : vocab.MaxContinuationChars));
            int id = -1;
            while (end > start)
            {
                // Python slices code points: never end between the halves of a surrogate pair.
                if (end < word.Length && char.IsLowSurrogate(word[end]) && char.IsHighSurrogate(word[end - 1]))
                {
                    end--;
                    continue;
                }
                var piece = word[start..end];
                if (start == 0 ? vocab.TryGetId(piece, out id) : vocab.TryGetContinuationId(piece, out id)) break;
                id = -1;
                end--;
            }
            if (id < 0)
            {
                ids.RemoveRange(first, ids.Count - first);
                ids.Add(vocab.UnkId);
                return;
            }
            ids.Add(id);
            start = end;
        }
    }

    private static int CodePoints(ReadOnlySpan<char> s)
    {
        int n = s.Length;
        for (int i = 0; i + 1 < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && char.IsLowSurrogate(s[i + 1]))
            {
                n--;
                i++;
            }
        }
        return n;
    }
}
