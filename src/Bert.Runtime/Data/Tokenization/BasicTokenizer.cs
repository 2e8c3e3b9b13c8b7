using System.Globalization;
using System.Runtime.CompilerServices;

namespace Bert.Runtime.Data;

/// <summary>Receives the words of <see cref="BasicTokenizer.Split{TSink}"/>; the span is valid only during the call.</summary>
public interface IWordSink
{
    void OnWord(ReadOnlySpan<char> word);
}

/// <summary>
/// The BasicTokenizer of google-research/bert tokenization.py, exactly: remove NUL, U+FFFD and
/// control characters (Cc, Cf except tab/newline/CR) and map whitespace (space, \t, \n, \r, Zs) to
/// space; put spaces around CJK ideographs; split on whitespace; when uncased, apply Python's
/// <c>str.lower()</c>, NFD and drop Mn marks; split each piece on punctuation (ASCII 33–47, 58–64,
/// 91–96, 123–126 and Unicode P*). ASCII takes a table-driven path; the Unicode tables are those of
/// Python's unicodedata (NFD) and .NET (categories).
/// Not thread-safe: it reuses scratch buffers; use one instance per thread.
/// </summary>
public sealed class BasicTokenizer
{
    private const byte Remove = 0, Space = 1, Punct = 2, Other = 3, Upper = 4;

    // Class of each ASCII character: \v, \f and the other C0 controls (and DEL) are Cc, so removed.
    private static ReadOnlySpan<byte> AsciiClass =>
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2,
        2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
        4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2,
        2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 0,
    ];

    private char[] _token = new char[256];   // the current whitespace token, cleaned
    private int _tokenLength;
    private bool _tokenAscii = true;
    private char[] _normalized = new char[256];
    private CodePointBuffer _cps = new(64), _lower = new(64), _nfd = new(64);

    public BasicTokenizer(bool lowerCase = true) => LowerCase = lowerCase;

    /// <summary>Lowercase and strip accents (uncased models such as bert-base-uncased).</summary>
    public bool LowerCase { get; }

    /// <summary>Calls <paramref name="sink"/> once per word of <paramref name="text"/>, in order.</summary>
    public void Split<TSink>(ReadOnlySpan<char> text, ref TSink sink) where TSink : IWordSink, allows ref struct
    {
        _tokenLength = 0;
        _tokenAscii = true;
        var table = AsciiClass;
        bool lower = LowerCase;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c < 0x80)
            {
                switch (table[c])
                {
                    case Remove:
                        continue;
                    case Space:
                        Flush(ref sink);
                        continue;
                    case Upper:
                        Append(lower ? (char)(c + 32) : c);
                        continue;
                    default:
                        Append(c);
                        continue;
                }
            }
            int cp = c;
            int width = 1;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                cp = char.ConvertToUtf32(c, text[i + 1]);
                width = 2;
            }
            if (cp == 0xFFFD)
                continue;
            switch (CharUnicodeInfo.GetUnicodeCategory(cp))
            {
                case UnicodeCategory.Control or UnicodeCategory.Format:
                    i += width - 1;
                    continue;
                // Zs is whitespace to _clean_text; Zl and Zp survive it but str.split() splits on them.
                case UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator:
                    Flush(ref sink);
                    i += width - 1;
                    continue;
            }
            _tokenAscii = false;
            if (IsChineseChar(cp))
            {
                Flush(ref sink);
                _tokenAscii = false;
                Append(text.Slice(i, width));
                Flush(ref sink);
            }
            else
            {
                Append(text.Slice(i, width));
            }
            i += width - 1;
        }
        Flush(ref sink);
    }

    /// <summary>The words of <paramref name="text"/> as strings (tests and tools; allocates).</summary>
    public List<string> Tokenize(string text)
    {
        var sink = new ListSink { Words = [] };
        Split(text, ref sink);
        return sink.Words;
    }

    private struct ListSink : IWordSink
    {
        public List<string> Words;

        public readonly void OnWord(ReadOnlySpan<char> word) => Words.Add(word.ToString());
    }

    /// <summary>The CJK ideograph blocks of the reference's _is_chinese_char (not Hangul, kana or CJK punctuation).</summary>
    public static bool IsChineseChar(int cp) =>
        cp is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF)
            or (>= 0x2A700 and <= 0x2B73F) or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B820 and <= 0x2CEAF)
            or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);

    /// <summary>The reference's _is_punctuation: the ASCII symbol ranges and every Unicode P* category.</summary>
    public static bool IsPunctuation(int cp)
    {
        if (cp < 0x80) return AsciiClass[cp] == Punct;
        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.ConnectorPunctuation
            or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation
            or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
            or UnicodeCategory.OtherPunctuation;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Append(char c)
    {
        if (_tokenLength == _token.Length) Array.Resize(ref _token, _token.Length * 2);
        _token[_tokenLength++] = c;
    }

    private void Append(ReadOnlySpan<char> chars)
    {
        foreach (char c in chars) Append(c);
    }

    /// <summary>Ends the current whitespace token: normalizes it when uncased and non-ASCII, then
    /// splits it on punctuation into words.</summary>
    private void Flush<TSink>(ref TSink sink) where TSink : IWordSink, allows ref struct
    {
        if (_tokenLength == 0) return;
        ReadOnlySpan<char> token = _token.AsSpan(0, _tokenLength);
        bool ascii = _tokenAscii;
        _tokenLength = 0;
        _tokenAscii = true;
        if (!ascii && LowerCase) token = LowerAndStripAccents(token);

        int wordStart = 0;
        int i = 0;
        while (i < token.Length)
        {
            char c = token[i];
            int width = 1;
            int cp = c;
            if (!ascii && char.IsHighSurrogate(c) && i + 1 < token.Length && char.IsLowSurrogate(token[i + 1]))
            {
                cp = char.ConvertToUtf32(c, token[i + 1]);
                width = 2;
            }
            if (c < 0x80 ? AsciiClass[c] == Punct : IsPunctuation(cp))
            {
                if (i > wordStart) sink.OnWord(token[wordStart..i]);
                sink.OnWord(token.Slice(i, width));
                wordStart = i + width;
            }
            i += width;
        }
        if (token.Length > wordStart) sink.OnWord(token[wordStart..]);
    }

    // str.lower(), then NFD, then drop Mn: the reference's lower() + _run_strip_accents on one token.
    private ReadOnlySpan<char> LowerAndStripAccents(ReadOnlySpan<char> token)
    {
        _cps.Clear();
        for (int i = 0; i < token.Length; i++)
        {
            char c = token[i];
            if (char.IsHighSurrogate(c) && i + 1 < token.Length && char.IsLowSurrogate(token[i + 1]))
            {
                _cps.Add(char.ConvertToUtf32(c, token[i + 1]));
                i++;
            }
            else
            {
                _cps.Add(c);
            }
        }
        _lower.Clear();
        UnicodeTables.AppendLower(_cps.Span, ref _lower);
        _nfd.Clear();
        foreach (int cp in _lower.Span) UnicodeTables.AppendDecomposition(cp, ref _nfd);
        UnicodeTables.CanonicalOrder(_nfd.Span);

        if (_normalized.Length < 2 * _nfd.Count) _normalized = new char[2 * _nfd.Count];
        int n = 0;
        foreach (int cp in _nfd.Span)
        {
            if (cp is >= 0xD800 and <= 0xDFFF)
            {
                _normalized[n++] = (char)cp; // a lone surrogate passes through as Python keeps it
                continue;
            }
            if (cp >= 0x300 && CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.NonSpacingMark) continue;
            if (cp < 0x10000) _normalized[n++] = (char)cp;
            else
            {
                int v = cp - 0x10000;
                _normalized[n++] = (char)(0xD800 + (v >> 10));
                _normalized[n++] = (char)(0xDC00 + (v & 0x3FF));
            }
        }
        return _normalized.AsSpan(0, n);
    }
}
