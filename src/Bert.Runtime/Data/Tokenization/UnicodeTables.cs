using System.Globalization;
using System.Text;

namespace Bert.Runtime.Data;

/// <summary>
/// The Unicode operations of the reference BasicTokenizer that .NET's invariant globalization mode
/// does not provide exactly: Python's <c>str.lower()</c> (full lowercase mapping with the Final_Sigma
/// rule) and NFD. Character categories come from .NET (<see cref="CharUnicodeInfo"/>).
/// </summary>
internal static partial class UnicodeTables
{
    private const int HangulFirst = 0xAC00, HangulLast = 0xD7A3;
    private const int JamoLFirst = 0x1100, JamoVFirst = 0x1161, JamoTFirst = 0x11A7;
    private const int JamoVCount = 21, JamoTCount = 28, JamoNCount = JamoVCount * JamoTCount;

    /// <summary>Canonical combining class of <paramref name="cp"/> (0 for starters).</summary>
    public static int CombiningClass(int cp)
    {
        if (cp < 0x300) return 0;
        var ranges = CombiningClassRanges;
        int lo = 0, hi = ranges.Length / 3 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            int first = ranges[3 * mid], last = ranges[3 * mid + 1];
            if (cp < first) hi = mid - 1;
            else if (cp > last) lo = mid + 1;
            else return ranges[3 * mid + 2];
        }
        return 0;
    }

    /// <summary>Appends the full canonical decomposition of <paramref name="cp"/> (itself if none).</summary>
    public static void AppendDecomposition(int cp, ref CodePointBuffer output)
    {
        if (cp < 0xC0)
        {
            output.Add(cp);
            return;
        }
        if (cp is >= HangulFirst and <= HangulLast)
        {
            int s = cp - HangulFirst;
            output.Add(JamoLFirst + s / JamoNCount);
            output.Add(JamoVFirst + s % JamoNCount / JamoTCount);
            int t = s % JamoTCount;
            if (t != 0) output.Add(JamoTFirst + t);
            return;
        }
        int index = DecompositionKeys.BinarySearch(cp);
        if (index < 0)
        {
            output.Add(cp);
            return;
        }
        var starts = DecompositionStarts;
        foreach (int v in DecompositionValues[starts[index]..starts[index + 1]]) output.Add(v);
    }

    /// <summary>Stable sort of each run of non-starters by combining class (the canonical ordering of NFD).</summary>
    public static void CanonicalOrder(Span<int> cps)
    {
        for (int i = 1; i < cps.Length; i++)
        {
            int c = cps[i], cc = CombiningClass(c);
            if (cc == 0) continue;
            int j = i - 1;
            while (j >= 0)
            {
                int pc = CombiningClass(cps[j]);
                if (pc == 0 || pc <= cc) break;
                cps[j + 1] = cps[j];
                j--;
            }
            cps[j + 1] = c;
        }
    }

    /// <summary>Python's <c>str.lower()</c> applied to a whole whitespace token: simple lowercase
    /// mapping, except U+0130 → "i̇" and capital sigma → final sigma (U+03C2) in the Final_Sigma
    /// context.</summary>
    public static void AppendLower(ReadOnlySpan<int> cps, ref CodePointBuffer output)
    {
        for (int i = 0; i < cps.Length; i++)
        {
            int cp = cps[i];
            if (cp < 0x80)
            {
                output.Add(cp is >= 'A' and <= 'Z' ? cp + 32 : cp);
            }
            else if (cp == 0x130)
            {
                output.Add('i');
                output.Add(0x307);
            }
            else if (cp == 0x3A3)
            {
                output.Add(IsFinalSigma(cps, i) ? 0x3C2 : 0x3C3);
            }
            else if (Rune.IsValid(cp))
            {
                output.Add(Rune.ToLowerInvariant(new Rune(cp)).Value);
            }
            else
            {
                output.Add(cp); // a lone surrogate
            }
        }
    }

    // \p{cased} \p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased}), as CPython's handle_capital_sigma.
    private static bool IsFinalSigma(ReadOnlySpan<int> cps, int i)
    {
        int j = i - 1;
        while (j >= 0 && IsCaseIgnorable(cps[j])) j--;
        if (j < 0 || !IsCased(cps[j])) return false;
        j = i + 1;
        while (j < cps.Length && IsCaseIgnorable(cps[j])) j++;
        return j == cps.Length || !IsCased(cps[j]);
    }

    private static bool IsCased(int cp)
    {
        var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
        if (cat is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter)
            return true;
        // Other_Lowercase / Other_Uppercase letters and symbols that still change case (Ⓐ, Ⅰ, ...).
        if (!Rune.IsValid(cp)) return false;
        var r = new Rune(cp);
        return Rune.ToLowerInvariant(r) != r || Rune.ToUpperInvariant(r) != r;
    }

    private static bool IsCaseIgnorable(int cp)
    {
        switch (cp)
        {
            // Word_Break = MidLetter, MidNumLet or Single_Quote.
            case 0x27 or 0x2E or 0x3A or 0xB7 or 0x387 or 0x55F or 0x5F4 or 0x2018 or 0x2019 or 0x2024
                or 0x2027 or 0xFE13 or 0xFE52 or 0xFE55 or 0xFF07 or 0xFF0E or 0xFF1A:
                return true;
        }
        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;
    }
}

/// <summary>A growable buffer of code points that reuses its array.</summary>
internal struct CodePointBuffer
{
    private int[] _items;

    public CodePointBuffer(int capacity) => _items = new int[Math.Max(4, capacity)];

    public int Count { get; private set; }

    public readonly Span<int> Span => _items.AsSpan(0, Count);

    public void Clear() => Count = 0;

    public void Add(int cp)
    {
        if (Count == _items.Length) Array.Resize(ref _items, _items.Length * 2);
        _items[Count++] = cp;
    }
}
