using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// The readable text of a raw e-mail (RFC 822 / MIME) without its headers: the header block is
/// dropped, the body is split into its MIME parts (multipart/* recursively, by boundary), each text
/// part is decoded from its transfer encoding (quoted-printable, base64) and charset, HTML parts are
/// reduced to their text (script, style and comments dropped, tags replaced by spaces, entities
/// decoded), and non-text parts (attachments, images) are left out. Characters that cannot be decoded
/// (U+FFFD in the input, non-ASCII bytes of a charset .NET has no table for) become '?'. Malformed MIME falls back to the
/// raw body, so every message gives some text.
/// </summary>
public static partial class MailText
{
    /// <summary>The text of <paramref name="message"/> (headers included in the input, not in the output).</summary>
    public static string Extract(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var sb = new StringBuilder();
        AppendPart(sb, message.Replace("\r\n", "\n", StringComparison.Ordinal), depth: 0);
        // U+FFFD marks characters that could not be decoded (the corpus package decoded raw 8-bit text as
        // UTF-8); the tokenizer would delete them silently, so they are shown as '?'.
        sb.Replace('\uFFFD', '?');
        return Whitespace().Replace(sb.ToString(), m => m.Value.Contains('\n') ? "\n" : " ").Trim();
    }

    /// <summary>Splits a message or part into its header fields (unfolded, names lowercased) and body.</summary>
    public static (Dictionary<string, string> Headers, string Body) Split(string part)
    {
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        int end = part.IndexOf("\n\n", StringComparison.Ordinal);
        string head = end < 0 ? part : part[..end];
        string body = end < 0 ? "" : part[(end + 2)..];
        string? name = null;
        foreach (var line in head.Split('\n'))
        {
            if (line.Length > 0 && (line[0] == ' ' || line[0] == '\t'))
            {
                if (name is not null) headers[name] += " " + line.Trim();
                continue;
            }
            int colon = line.IndexOf(':');
            if (colon <= 0) continue;
            name = line[..colon].Trim().ToLowerInvariant();
            // The first occurrence of a field is the one that counts (later "Received:" lines are irrelevant here).
            if (!headers.ContainsKey(name)) headers[name] = line[(colon + 1)..].Trim();
            else name = null;
        }
        return (headers, body);
    }

    private static void AppendPart(StringBuilder sb, string part, int depth)
    {
        var (headers, body) = Split(part);
        string contentType = headers.TryGetValue("content-type", out var ct) ? ct : "text/plain";
        string mediaType = contentType.Split(';')[0].Trim().ToLowerInvariant();
        if (mediaType.StartsWith("multipart/", StringComparison.Ordinal) && depth < 8 && Parameter(contentType, "boundary") is { Length: > 0 } boundary)
        {
            var parts = SplitMultipart(body, boundary);
            if (parts.Count > 0)
            {
                foreach (var p in parts) AppendPart(sb, p, depth + 1);
                return;
            }
        }
        if (mediaType.StartsWith("message/", StringComparison.Ordinal) && depth < 8)
        {
            AppendPart(sb, body, depth + 1);
            return;
        }
        if (!mediaType.StartsWith("text/", StringComparison.Ordinal) && mediaType.Length > 0 && headers.ContainsKey("content-type")
            && !mediaType.StartsWith("multipart/", StringComparison.Ordinal))
            return;
        string encoding = headers.TryGetValue("content-transfer-encoding", out var te) ? te.Trim().ToLowerInvariant() : "";
        string charset = Parameter(contentType, "charset") ?? "us-ascii";
        string text = encoding switch
        {
            "quoted-printable" => Decode(QuotedPrintable(body), charset),
            "base64" => Base64(body) is { } bytes ? Decode(bytes, charset) : body,
            _ => body,
        };
        if (mediaType == "text/html" || (mediaType != "text/plain" && LooksLikeHtml(text))) text = HtmlText(text);
        sb.Append(text).Append('\n');
    }

    private static List<string> SplitMultipart(string body, string boundary)
    {
        var parts = new List<string>();
        string delimiter = "--" + boundary;
        StringBuilder? current = null;
        foreach (var line in body.Split('\n'))
        {
            string trimmed = line.TrimEnd();
            if (trimmed == delimiter + "--")
            {
                if (current is not null) parts.Add(current.ToString());
                return parts;
            }
            if (trimmed == delimiter)
            {
                if (current is not null) parts.Add(current.ToString());
                current = new StringBuilder();
                continue;
            }
            current?.Append(line).Append('\n');
        }
        if (current is not null) parts.Add(current.ToString());
        return parts;
    }

    /// <summary>A parameter of a header value ("text/html; charset=\"utf-8\"" → utf-8), or null.</summary>
    public static string? Parameter(string headerValue, string name)
    {
        foreach (var piece in headerValue.Split(';').Skip(1))
        {
            int eq = piece.IndexOf('=');
            if (eq < 0 || !piece[..eq].Trim().Equals(name, StringComparison.OrdinalIgnoreCase)) continue;
            return piece[(eq + 1)..].Trim().Trim('"', '\'');
        }
        return null;
    }

    /// <summary>Quoted-printable to bytes: "=XX" is a byte, "=" at a line end joins the lines.</summary>
    public static byte[] QuotedPrintable(string text)
    {
        var bytes = new List<byte>(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '=')
            {
                if (i + 1 < text.Length && text[i + 1] == '\n')
                {
                    i++;
                    continue;
                }
                if (i + 2 < text.Length && Uri.IsHexDigit(text[i + 1]) && Uri.IsHexDigit(text[i + 2]))
                {
                    bytes.Add(Convert.ToByte(text.Substring(i + 1, 2), 16));
                    i += 2;
                    continue;
                }
            }
            if (c < 256) bytes.Add((byte)c);
            else bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
        }
        return bytes.ToArray();
    }

    private static byte[]? Base64(string text)
    {
        var clean = new StringBuilder(text.Length);
        foreach (char c in text)
            if (char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=') clean.Append(c);
        while (clean.Length % 4 != 0) clean.Append('=');
        try
        {
            return Convert.FromBase64String(clean.ToString());
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static string Decode(byte[] bytes, string charset)
    {
        string name = charset.ToLowerInvariant();
        Encoding encoding;
        try
        {
            encoding = name switch
            {
                "utf-8" or "utf8" => new UTF8Encoding(false, false),
                _ => Encoding.GetEncoding(charset) is { IsSingleByte: true } e && e.CodePage != 20127 ? e : Encoding.Latin1,
            };
        }
        catch (ArgumentException)
        {
            // .NET has no tables for most legacy charsets. The Western single-byte ones (windows-125x,
            // iso-8859-x) read as Latin-1, which agrees on letters; the others (euc-kr, big5, gb2312,
            // shift_jis, koi8-r, ...) would come out as accented garbage, so their non-ASCII bytes are
            // shown as '?', as a mail reader without the charset shows them.
            encoding = name.StartsWith("windows-125", StringComparison.Ordinal) || name.StartsWith("iso-8859", StringComparison.Ordinal)
                       || name.StartsWith("cp125", StringComparison.Ordinal) || name.StartsWith("latin", StringComparison.Ordinal)
                ? Encoding.Latin1
                : Encoding.ASCII;
        }
        return encoding.GetString(bytes);
    }

    private static bool LooksLikeHtml(string text) => HtmlTag().IsMatch(text.Length > 2000 ? text[..2000] : text);

    /// <summary>The text of an HTML document: script/style blocks and comments removed, block-level tags
    /// become line breaks and other tags spaces, entities decoded.</summary>
    public static string HtmlText(string html)
    {
        string s = ScriptOrStyle().Replace(html, " ");
        s = Comment().Replace(s, " ");
        s = BlockTag().Replace(s, "\n");
        s = AnyTag().Replace(s, " ");
        return WebUtility.HtmlDecode(s).Replace('\u00a0', ' ');
    }

    [GeneratedRegex(@"<(script|style)\b.*?</\1\s*>", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex ScriptOrStyle();

    [GeneratedRegex(@"<!--.*?-->", RegexOptions.Singleline)]
    private static partial Regex Comment();

    [GeneratedRegex(@"</?(p|div|br|tr|li|h[1-6]|table|ul|ol|blockquote)\b[^>]*>", RegexOptions.IgnoreCase)]
    private static partial Regex BlockTag();

    [GeneratedRegex(@"<[^>]*>", RegexOptions.Singleline)]
    private static partial Regex AnyTag();

    [GeneratedRegex(@"<(html|body|p|div|br|table|font|a)\b", RegexOptions.IgnoreCase)]
    private static partial Regex HtmlTag();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}
