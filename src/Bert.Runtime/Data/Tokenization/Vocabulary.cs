using Bert.Runtime.IO;
using System.Text;

namespace Bert.Runtime.Data;

/// <summary>
/// A WordPiece vocabulary: vocab.txt holds one token per line and a token's id is its line index
/// (the layout of bert-base-uncased). Continuation pieces carry the "##" prefix. The five special
/// tokens must be present, at any ids; tokens must be unique and non-empty.
/// Immutable and safe to share between threads.
/// </summary>
public sealed class Vocabulary
{
    public const string Pad = "[PAD]", Unk = "[UNK]", Cls = "[CLS]", Sep = "[SEP]", Mask = "[MASK]";
    public const string ContinuationPrefix = "##";

    /// <summary>The special tokens in the order a trained vocabulary places them (ids 0..4).</summary>
    public static IReadOnlyList<string> SpecialTokens { get; } = [Pad, Unk, Cls, Sep, Mask];

    private readonly string[] _tokens;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _ids;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _continuations;

    private Vocabulary(string[] tokens, string source, Func<int, string> where)
    {
        _tokens = tokens;
        Source = source;
        var ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        var continuations = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
        {
            string t = tokens[i];
            if (t.Length == 0)
                throw new VocabularyFormatException(source, where(i), "\"\"", "empty token");
            if (!ids.TryAdd(t, i))
                throw new VocabularyFormatException(source, where(i), $"\"{t}\"", $"duplicate token (first at {where(ids[t])})");
            MaxTokenChars = Math.Max(MaxTokenChars, t.Length);
            if (t.Length > ContinuationPrefix.Length && t.StartsWith(ContinuationPrefix, StringComparison.Ordinal))
            {
                continuations.Add(t[ContinuationPrefix.Length..], i);
                MaxContinuationChars = Math.Max(MaxContinuationChars, t.Length - ContinuationPrefix.Length);
            }
        }
        int Special(string token) => ids.TryGetValue(token, out int id) ? id
            : throw new VocabularyFormatException(source, "special token", token, $"missing; a vocabulary must contain {string.Join(" ", SpecialTokens)}");
        PadId = Special(Pad);
        UnkId = Special(Unk);
        ClsId = Special(Cls);
        SepId = Special(Sep);
        MaskId = Special(Mask);
        _ids = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        _continuations = continuations.GetAlternateLookup<ReadOnlySpan<char>>();

        var hasher = new XxHash64();
        Span<byte> scratch = stackalloc byte[256];
        foreach (var t in tokens)
        {
            int n = Encoding.UTF8.GetMaxByteCount(t.Length) + 1;
            Span<byte> buf = n <= scratch.Length ? scratch : new byte[n];
            int w = Encoding.UTF8.GetBytes(t, buf);
            buf[w++] = (byte)'\n';
            hasher.Append(buf[..w]);
        }
        Hash = hasher.Digest();
    }

    /// <summary>Where the vocabulary came from (a path, or a description).</summary>
    public string Source { get; }

    public int Count => _tokens.Length;

    public int PadId { get; }
    public int UnkId { get; }
    public int ClsId { get; }
    public int SepId { get; }
    public int MaskId { get; }

    /// <summary>XXH64 of the canonical file (each token in UTF-8 followed by "\n"); shards record it so a
    /// dataset is never read with a different vocabulary.</summary>
    public ulong Hash { get; }

    /// <summary>Longest token in UTF-16 units (longer substrings cannot match).</summary>
    internal int MaxTokenChars { get; }

    /// <summary>Longest continuation token without its "##".</summary>
    internal int MaxContinuationChars { get; }

    public IReadOnlyList<string> Tokens => _tokens;

    public string this[int id] => _tokens[id];

    public bool TryGetId(ReadOnlySpan<char> token, out int id) => _ids.TryGetValue(token, out id);

    /// <summary>Id of "##" + <paramref name="suffix"/>.</summary>
    public bool TryGetContinuationId(ReadOnlySpan<char> suffix, out int id) => _continuations.TryGetValue(suffix, out id);

    /// <summary>The id of <paramref name="token"/>; throws when absent.</summary>
    public int GetId(string token) => _ids.TryGetValue(token, out int id) ? id
        : throw new KeyNotFoundException($"{Source}: token \"{token}\" is not in the vocabulary");

    public static Vocabulary FromTokens(IEnumerable<string> tokens, string source = "<memory>")
    {
        var array = tokens.ToArray();
        return new Vocabulary(array, source, i => $"token {i}");
    }

    /// <summary>Reads vocab.txt: UTF-8, one token per line (surrounding whitespace stripped, as the
    /// reference load_vocab does); trailing empty lines are ignored, other empty lines are errors.</summary>
    public static Vocabulary Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: vocabulary file not found", path);
        var tokens = new List<string>(32768);
        int trailingEmpty = 0;
        using (var reader = new Utf8LineReader(path, (p, f, v, m) => new VocabularyFormatException(p, f, v, m)))
        {
            while (reader.TryReadLine(out var line))
            {
                var t = line.Trim();
                if (t.IsEmpty) trailingEmpty++;
                else
                {
                    if (trailingEmpty > 0)
                        throw new VocabularyFormatException(path, $"line {reader.LineNumber - trailingEmpty}", "\"\"", "empty token");
                    tokens.Add(t.ToString());
                }
            }
        }
        if (tokens.Count == 0) throw new VocabularyFormatException(path, "tokens", "0", "the vocabulary is empty");
        return new Vocabulary(tokens.ToArray(), path, i => $"line {i + 1}");
    }

    /// <summary>Writes vocab.txt atomically in the canonical form (its hash equals <see cref="Hash"/>).</summary>
    public void Save(string path)
    {
        var sb = new StringBuilder(_tokens.Length * 8);
        foreach (var t in _tokens) sb.Append(t).Append('\n');
        AtomicFile.WriteAllText(path, sb.ToString());
    }
}
