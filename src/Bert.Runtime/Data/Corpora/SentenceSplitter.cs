using System.Collections.Frozen;

namespace Bert.Runtime.Data;

/// <summary>
/// A rule-based sentence splitter for raw paragraphs. A sentence ends at '.', '!', '?', '…' (with any
/// closing quotes or brackets after them) followed by whitespace and a plausible sentence start (not
/// a lowercase letter), or at the CJK full stops '。', '！', '？'. A period does not end a sentence
/// after a known abbreviation ("Mr.", "e.g."), a single-letter initial ("J. Smith") or a number
/// followed by a lowercase word. Good enough for pretraining text; not a linguistic tool.
/// </summary>
public static class SentenceSplitter
{
    private static readonly FrozenSet<string> Abbreviations = new[]
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "corp",
        "no", "nos", "fig", "figs", "vol", "vols", "pp", "p", "ed", "eds", "jan", "feb", "mar", "apr", "jun", "jul",
        "aug", "sep", "sept", "oct", "nov", "dec", "mt", "gen", "col", "lt", "sgt", "capt", "cmdr", "adm", "rev",
        "gov", "sen", "rep", "hon", "pres", "u.s", "u.k", "a.m", "p.m", "approx", "dept", "univ", "est", "cf", "al",
        "ave", "blvd", "rd", "ft", "messrs", "mme", "mlle", "op", "ch", "sec", "art",
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    /// <summary>Appends the ranges of the sentences of <paramref name="text"/> (trimmed, non-empty).</summary>
    public static void Split(ReadOnlySpan<char> text, List<Range> sentences)
    {
        int start = 0;
        int i = 0;
        while (i < text.Length)
        {
            char c = text[i];
            bool cjk = c is '。' or '！' or '？';
            if (!cjk && c is not ('.' or '!' or '?' or '…'))
            {
                i++;
                continue;
            }
            int end = i + 1;
            while (end < text.Length && text[end] is '.' or '!' or '?' or '…' or '。' or '！' or '？') end++;
            while (end < text.Length && text[end] is '"' or '\'' or '”' or '’' or '»' or ')' or ']' or '}' or '」' or '』') end++;
            bool boundary;
            if (end == text.Length) boundary = true;
            else if (cjk) boundary = true;
            else if (!char.IsWhiteSpace(text[end])) boundary = false;
            else
            {
                int next = end;
                while (next < text.Length && char.IsWhiteSpace(text[next])) next++;
                boundary = next == text.Length || (!char.IsLower(text[next]) && !(c == '.' && end == i + 1 && IsAbbreviation(text[start..i])));
            }
            if (boundary)
            {
                Add(text, start, end, sentences);
                start = end;
            }
            i = end;
        }
        Add(text, start, text.Length, sentences);
    }

    public static List<string> Split(string text)
    {
        var ranges = new List<Range>();
        Split(text, ranges);
        return ranges.Select(r => text[r]).ToList();
    }

    // The word before a period: an abbreviation, an initial, or a dotted acronym such as "U.S".
    private static bool IsAbbreviation(ReadOnlySpan<char> before)
    {
        int s = before.Length;
        while (s > 0 && !char.IsWhiteSpace(before[s - 1]) && before[s - 1] is not ('(' or '"' or '\'' or '“' or '‘')) s--;
        var word = before[s..];
        if (word.Length == 1 && char.IsLetter(word[0])) return true;
        if (word.Length >= 3 && word.Contains('.') && word.Length <= 6) return true;
        return Abbreviations.GetAlternateLookup<ReadOnlySpan<char>>().Contains(word);
    }

    private static void Add(ReadOnlySpan<char> text, int start, int end, List<Range> sentences)
    {
        while (start < end && char.IsWhiteSpace(text[start])) start++;
        while (end > start && char.IsWhiteSpace(text[end - 1])) end--;
        if (end > start) sentences.Add(start..end);
    }
}
