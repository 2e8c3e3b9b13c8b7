using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Bert.Tests.Reliability.Fuzz;

/// <summary>What a target tells the mutator about its format.</summary>
internal sealed record MutationHints
{
    /// <summary>The whole input is JSON: token-level mutations apply.</summary>
    public bool Json { get; init; }

    /// <summary>The input is line-oriented UTF-8 text: line-level and encoding mutations apply.</summary>
    public bool Text { get; init; }

    /// <summary>Little-endian integer fields (offset, size in bytes) that size or index something:
    /// interesting integers land there more often than at random offsets.</summary>
    public IReadOnlyList<(int Offset, int Size)> IntegerFields { get; init; } = [];

    /// <summary>Format words: JSON values (already encoded, e.g. "\"F32\"") for JSON inputs, lines for text inputs.</summary>
    public IReadOnlyList<string> Dictionary { get; init; } = [];
}

/// <summary>
/// Seeded mutations of byte inputs: bit flips, interesting bytes, byte insertion and deletion,
/// truncation, splicing with other seeds, interesting integers in length fields, line-level edits
/// and invalid UTF-8 for text, and token-level edits for JSON (values swapped for edge-case numbers,
/// strings and containers; members renamed, duplicated or deleted; deep nesting). Everything is a
/// function of the <see cref="FuzzRng"/>, so an input is reproducible from its index.
/// </summary>
internal sealed class Mutator(IReadOnlyList<byte[]> seeds, MutationHints hints)
{
    /// <summary>Largest input the mutator produces; bigger results are truncated.</summary>
    public const int MaxInputBytes = 1 << 20;

    private static readonly ulong[] InterestingIntegers =
    [
        0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64, 79, 80, 81, 127, 128, 255, 256, 511, 512, 1023, 1024, 4096,
        0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x10001, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF,
        0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFF00, 100_000_000, 100_000_001,
        0x0000_0100_0000_0000,
    ];

    private static readonly byte[] InterestingBytes =
        [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x20, (byte)'"', (byte)'{', (byte)'}', (byte)'[', (byte)']', (byte)',', (byte)':',
         (byte)'\\', (byte)'\n', (byte)'\r', (byte)'\t', (byte)'0', (byte)'9', (byte)'-', (byte)'e', (byte)'.', (byte)'#',
         0xC0, 0xC3, 0xE4, 0xED, 0xEF, 0xF0, 0xF4, 0xF8];

    private static readonly string[] JsonNumbers =
    [
        "0", "-0", "1", "-1", "2", "3", "4", "7", "8", "255", "256", "65535", "65536", "65537", "2147483647", "2147483648",
        "-2147483648", "-2147483649", "4294967295", "4294967296", "9007199254740993", "9223372036854775807",
        "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "18446744073709551615",
        "18446744073709551616", "123456789012345678901234567890", "1e2", "1E400", "-1e400", "1e-400", "0.5", "1.5", "-0.0",
        "1e308", "3.4028236e38", "0.1", "1.0", "100000000", "1e9",
    ];

    private static readonly string[] JsonOthers =
    [
        "null", "true", "false", "[]", "{}", "[0]", "[1]", "[-1]", "[0,0]", "[0,1]", "[1,0]", "[0,1,2]", "[[]]", "[{}]",
        "{\"a\":1}", "\"\"", "\" \"", "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00x\"", "\"\\\"\"", "\"x\\\\y\"", "\"é中\"",
        "\"a/b\"", "\".\"", "\"..\"", "\"../x\"", "\"0\"", "\"-1\"", "\"1e999\"", "\"0000000000000000\"",
        "\"ffffffffffffffff\"", "\"FFFFFFFFFFFFFFFF\"", "\"\\n\"",
    ];

    private static readonly string[] TextLines =
    [
        "", " ", "  \t ", "\r", "\t", "\u00a0", "\u3000", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##", "###", "##a",
        "a", "the", "é", "中", "😀", "a b", "\u200b", "\u0301", "\ufeffx", "Mr. Smith went home. He slept.", "..."
    ];

    private static readonly byte[][] InvalidUtf8 =
    [
        [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFE], [0xFF], [0xE4, 0xB8], [0xF0, 0x9F, 0x98],
        [0xEF, 0xBB, 0xBF], [0x00],
    ];

    private readonly IReadOnlyList<byte[]> _seeds = seeds;
    private readonly MutationHints _hints = hints;

    /// <summary>One to eight stacked mutations of <paramref name="input"/>.</summary>
    public byte[] Mutate(FuzzRng rng, byte[] input)
    {
        int count = rng.Skewed(8);
        var data = input;
        // Three inputs in four keep to the format's own edits, so most of them get past the syntax
        // checks (JSON that parses, valid UTF-8) to the checks behind; the rest mix in raw byte edits.
        bool structured = (_hints.Json || _hints.Text) && !rng.OneIn(4);
        for (int i = 0; i < count; i++)
        {
            int kind = structured ? 0 : rng.Below(10);
            if (_hints.Json && kind < 5) data = JsonOp(rng, data, 0, data.Length, out _);
            else if (_hints.Text && kind < 5) data = TextOp(rng, data);
            else data = ByteOp(rng, data);
            if (data.Length > MaxInputBytes) data = data[..MaxInputBytes];
        }
        return data;
    }

    /// <summary>One byte-level mutation.</summary>
    public byte[] ByteOp(FuzzRng rng, byte[] data)
    {
        int n = data.Length;
        switch (rng.Below(11))
        {
            case 0 when n > 0:
            {
                var d = (byte[])data.Clone();
                int flips = rng.Skewed(8);
                for (int i = 0; i < flips; i++) d[rng.Below(n)] ^= (byte)(1 << rng.Below(8));
                return d;
            }
            case 1 when n > 0:
            {
                var d = (byte[])data.Clone();
                int k = rng.Skewed(4);
                for (int i = 0; i < k; i++) d[rng.Below(n)] = rng.Pick(InterestingBytes);
                return d;
            }
            case 2:
            {
                var bytes = new byte[rng.Skewed(64)];
                for (int i = 0; i < bytes.Length; i++) bytes[i] = rng.OneIn(2) ? rng.Pick(InterestingBytes) : (byte)rng.Below(256);
                return Splice(data, rng.Below(n + 1), 0, bytes);
            }
            case 3 when n > 0:
            {
                int start = rng.Below(n);
                int len = Math.Min(rng.Skewed(Math.Max(1, n)), n - start);
                return Splice(data, rng.Below(n + 1), 0, data.AsSpan(start, len));
            }
            case 4 when n > 0:
            {
                int start = rng.Below(n);
                int len = Math.Min(rng.Skewed(Math.Max(1, n)), n - start);
                return Splice(data, start, len, []);
            }
            case 5 when n > 0:
                return data[..rng.Below(n)];
            case 6:
            {
                var other = rng.Pick(_seeds);
                int cut = rng.Below(n + 1), from = rng.Below(other.Length + 1);
                return [.. data.AsSpan(0, cut), .. other.AsSpan(from)];
            }
            case 7 when n > 0:
                return WriteInteger(rng, data);
            case 8 when n > 0:
            {
                var other = rng.Pick(_seeds);
                int start = rng.Below(n);
                int len = Math.Min(Math.Min(rng.Skewed(Math.Max(1, n)), n - start), Math.Max(0, other.Length - start));
                var d = (byte[])data.Clone();
                if (len > 0) other.AsSpan(start, len).CopyTo(d.AsSpan(start));
                return d;
            }
            case 9:
            {
                var bytes = new byte[rng.Skewed(256)];
                for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)rng.Below(256);
                return [.. data, .. bytes];
            }
            default:
                return rng.OneIn(2) && n > 0 ? WriteInteger(rng, data) : Splice(data, rng.Below(n + 1), 0, [rng.Pick(InterestingBytes)]);
        }
    }

    /// <summary>An interesting integer (or one derived from the input's length) over a hinted length
    /// field, or over random bytes, little- or big-endian.</summary>
    private byte[] WriteInteger(FuzzRng rng, byte[] data)
    {
        int offset, size;
        var fields = _hints.IntegerFields.Where(f => f.Offset + f.Size <= data.Length).ToArray();
        if (fields.Length > 0 && !rng.OneIn(4)) (offset, size) = rng.Pick(fields);
        else
        {
            size = rng.Pick(new[] { 1, 2, 4, 8 });
            if (size > data.Length) size = 1;
            offset = rng.Below(data.Length - size + 1);
        }
        ulong value = rng.Below(4) switch
        {
            0 => (ulong)data.Length + (ulong)(long)rng.Between(-9, 9),
            1 => Read(data, offset, size) + (ulong)(long)rng.Between(-3, 3),
            _ => rng.Pick(InterestingIntegers),
        };
        var d = (byte[])data.Clone();
        Span<byte> le = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(le, value);
        if (rng.OneIn(8)) le[..size].Reverse();
        le[..size].CopyTo(d.AsSpan(offset));
        return d;
    }

    private static ulong Read(byte[] data, int offset, int size)
    {
        Span<byte> le = stackalloc byte[8];
        le.Clear();
        data.AsSpan(offset, size).CopyTo(le);
        return BinaryPrimitives.ReadUInt64LittleEndian(le);
    }

    /// <summary>One line-level or encoding mutation of UTF-8 text.</summary>
    public byte[] TextOp(FuzzRng rng, byte[] data)
    {
        var lines = SplitLines(data);
        int n = lines.Count;
        switch (rng.Below(9))
        {
            case 0 when n > 0:
            {
                int i = rng.Below(n);
                lines.Insert(rng.Below(n + 1), lines[i]);
                break;
            }
            case 1 when n > 0:
                lines.RemoveAt(rng.Below(n));
                break;
            case 2 when n > 1:
            {
                int i = rng.Below(n), j = rng.Below(n);
                (lines[i], lines[j]) = (lines[j], lines[i]);
                break;
            }
            case 3:
                lines.Insert(rng.Below(n + 1), Encoding.UTF8.GetBytes(TextLine(rng)));
                break;
            case 4 when n > 0:
                lines[rng.Below(n)] = Encoding.UTF8.GetBytes(TextLine(rng));
                break;
            case 5:
            {
                var bad = rng.Pick(InvalidUtf8);
                return Splice(data, rng.Below(data.Length + 1), 0, bad);
            }
            case 6:
            {
                // A very long line: linear work and memory are fine, anything worse shows up as time or allocation.
                int len = rng.Skewed(200_000);
                var sb = new StringBuilder(len);
                string unit = rng.Pick(new[] { "a", "ab ", "é", "中", "##", " ", ".", "😀" });
                while (sb.Length < len) sb.Append(unit);
                lines.Insert(rng.Below(n + 1), Encoding.UTF8.GetBytes(sb.ToString()));
                break;
            }
            case 7 when n > 0:
            {
                int i = rng.Below(n);
                lines[i] = [.. lines[i], (byte)'\r'];
                break;
            }
            default:
                return ByteOp(rng, data);
        }
        return JoinLines(lines);
    }

    private string TextLine(FuzzRng rng)
    {
        if (_hints.Dictionary.Count > 0 && rng.OneIn(2)) return rng.Pick(_hints.Dictionary);
        return rng.Pick(TextLines);
    }

    private static List<byte[]> SplitLines(byte[] data)
    {
        var lines = new List<byte[]>();
        int start = 0;
        for (int i = 0; i < data.Length; i++)
        {
            if (data[i] != (byte)'\n') continue;
            lines.Add(data[start..i]);
            start = i + 1;
        }
        lines.Add(data[start..]);
        return lines;
    }

    private static byte[] JoinLines(List<byte[]> lines)
    {
        var ms = new MemoryStream();
        for (int i = 0; i < lines.Count; i++)
        {
            if (i > 0) ms.WriteByte((byte)'\n');
            ms.Write(lines[i]);
        }
        return ms.ToArray();
    }

    /// <summary>A JSON token span: a value (primitive or container) or an object member (name + value).</summary>
    private readonly record struct JsonSpan(int Start, int End, JsonTokenType Type);

    /// <summary>One token-level mutation of the JSON in <paramref name="data"/>[start, start + length).</summary>
    /// <param name="delta">How much the JSON region grew (negative: shrank).</param>
    public byte[] JsonOp(FuzzRng rng, byte[] data, int start, int length, out int delta)
    {
        start = Math.Clamp(start, 0, data.Length);
        length = Math.Clamp(length, 0, data.Length - start);
        var spans = Tokens(data.AsSpan(start, length));
        if (spans.Count == 0)
        {
            var d = ByteOp(rng, data);
            delta = d.Length - data.Length;
            return d;
        }
        var s = rng.Pick(spans);
        int a = start + s.Start, b = start + s.End;
        byte[] replacement;
        switch (rng.Below(8))
        {
            case 0 when s.Type == JsonTokenType.PropertyName:
            {
                // Delete the member and one adjacent comma, so the result usually still parses.
                int end = b;
                while (end < start + length && data[end] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') end++;
                if (end < start + length && data[end] == (byte)',') b = end + 1;
                else
                {
                    int before = a - 1;
                    while (before >= start && data[before] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') before--;
                    if (before >= start && data[before] == (byte)',') a = before;
                }
                replacement = [];
                break;
            }
            case 1 when s.Type == JsonTokenType.PropertyName:
                // Duplicate the member (duplicate keys must be rejected or handled).
                replacement = [.. data.AsSpan(a, b - a), (byte)',', .. data.AsSpan(a, b - a)];
                break;
            case 2 when s.Type == JsonTokenType.PropertyName:
            {
                // Rename the member: another member's name (a duplicate) or a dictionary string.
                int nameEnd = a + 1;
                while (nameEnd < b && !(data[nameEnd] == (byte)'"' && data[nameEnd - 1] != (byte)'\\')) nameEnd++;
                var names = spans.Where(x => x.Type == JsonTokenType.PropertyName).ToArray();
                var other = names[rng.Below(names.Length)];
                byte[] name = rng.OneIn(2) ? NameOf(data, start + other.Start, start + other.End) : Encoding.UTF8.GetBytes(JsonString(rng));
                replacement = [.. name, .. data.AsSpan(nameEnd + 1, b - nameEnd - 1)];
                break;
            }
            case 3:
            {
                // Deep nesting around the value (or in place of it).
                int depth = rng.Skewed(300);
                bool obj = rng.OneIn(3);
                var sb = new StringBuilder();
                for (int i = 0; i < depth; i++) sb.Append(obj ? "{\"a\":" : "[");
                string inner = s.Type == JsonTokenType.PropertyName ? "0" : Encoding.UTF8.GetString(data, a, b - a);
                sb.Append(inner);
                for (int i = 0; i < depth; i++) sb.Append(obj ? "}" : "]");
                replacement = Encoding.UTF8.GetBytes(sb.ToString());
                if (s.Type == JsonTokenType.PropertyName)
                {
                    // Keep the member's name: nest its value only.
                    byte[] name = NameOf(data, a, b);
                    replacement = [.. name, (byte)':', .. replacement];
                }
                break;
            }
            case 4:
            {
                // Copy another token's text over this one (types get swapped).
                var other = rng.Pick(spans);
                replacement = data.AsSpan(start + other.Start, other.End - other.Start).ToArray();
                break;
            }
            default:
            {
                string value = s.Type == JsonTokenType.Number || rng.OneIn(3) ? rng.Pick(JsonNumbers)
                    : rng.OneIn(2) ? JsonString(rng) : rng.Pick(JsonOthers);
                replacement = Encoding.UTF8.GetBytes(value);
                if (s.Type == JsonTokenType.PropertyName) replacement = [.. NameOf(data, a, b), (byte)':', .. replacement];
                break;
            }
        }
        var result = Splice(data, a, b - a, replacement);
        delta = result.Length - data.Length;
        return result;
    }

    private string JsonString(FuzzRng rng)
    {
        if (_hints.Dictionary.Count > 0 && rng.OneIn(2)) return rng.Pick(_hints.Dictionary);
        if (rng.OneIn(8)) return "\"" + new string('a', rng.Skewed(100_000)) + "\"";
        return rng.Pick(JsonOthers.Where(x => x.StartsWith('"')).ToArray());
    }

    /// <summary>The quoted name of the member spanning [a, b).</summary>
    private static byte[] NameOf(byte[] data, int a, int b)
    {
        int end = a + 1;
        while (end < b && !(data[end] == (byte)'"' && data[end - 1] != (byte)'\\')) end++;
        return data.AsSpan(a, Math.Min(end + 1, b) - a).ToArray();
    }

    private static List<JsonSpan> Tokens(ReadOnlySpan<byte> json)
    {
        var list = new List<JsonSpan>();
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = 1024 });
        try
        {
            while (reader.Read())
            {
                int s = (int)reader.TokenStartIndex;
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject or JsonTokenType.StartArray:
                    {
                        var copy = reader;
                        copy.Skip();
                        list.Add(new JsonSpan(s, (int)copy.BytesConsumed, reader.TokenType));
                        break;
                    }
                    case JsonTokenType.PropertyName:
                    {
                        var copy = reader;
                        copy.Read();
                        if (copy.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray) copy.Skip();
                        list.Add(new JsonSpan(s, (int)copy.BytesConsumed, JsonTokenType.PropertyName));
                        break;
                    }
                    case JsonTokenType.String:
                        list.Add(new JsonSpan(s, s + reader.ValueSpan.Length + 2, JsonTokenType.String));
                        break;
                    case JsonTokenType.Number or JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null:
                        list.Add(new JsonSpan(s, s + reader.ValueSpan.Length, reader.TokenType));
                        break;
                }
            }
        }
        catch (JsonException)
        {
            // A mutated input stops parsing somewhere: the tokens before that point are still usable.
        }
        return list;
    }

    private static byte[] Splice(byte[] data, int at, int remove, ReadOnlySpan<byte> insert) =>
        [.. data.AsSpan(0, at), .. insert, .. data.AsSpan(at + remove)];
}
