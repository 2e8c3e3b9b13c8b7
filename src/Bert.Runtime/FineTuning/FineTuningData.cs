using System.Globalization;
using System.Text.Json;
using Bert.Runtime.Data;

namespace Bert.Runtime.FineTuning;

/// <summary>A fine-tuning data file is malformed: the message names the file, the line and field,
/// and the value found there.</summary>
public sealed class FineTuningFormatException(string path, string field, string value, string problem)
    : DataFormatException(path, field, value, problem);

/// <summary>A sequence (or sequence pair) and its class.</summary>
/// <param name="Origin">"file:line", for messages.</param>
public sealed record ClassificationExample(string Text, string? TextPair, string Label, string Origin);

/// <summary>A sentence of words, one tag per word.</summary>
public sealed record TaggedSentence(string[] Words, string[] Tags, string Origin);

/// <summary>A SQuAD-style example: the answer is the substring of the context at AnswerStart.</summary>
public sealed record SpanExample(string Id, string Context, string Question, int AnswerStart, string AnswerText, string Origin);

/// <summary>
/// Readers of the fine-tuning formats. All files are UTF-8 (a BOM is skipped).
/// <list type="bullet">
/// <item>classification, TSV (.tsv, .txt): a header line naming the columns — <c>label</c>, the text as
/// <c>text</c> (or <c>sentence</c>, <c>text_a</c>, <c>sentence1</c>) and optionally the pair as
/// <c>text_b</c> (or <c>sentence2</c>); other columns are ignored; one example per line, fields
/// separated by tabs, no quoting.</item>
/// <item>classification, JSONL (.jsonl, .json): one object per line with "text" (or "sentence",
/// "text_a", "sentence1"), optional "text_b" (or "sentence2"), and "label" (a string or an integer).</item>
/// <item>token classification, CoNLL: one word per line, the word in the first column and its tag in the
/// last (columns separated by tabs, or by spaces when the line has no tab); a blank line ends a
/// sentence; "-DOCSTART-" lines are skipped.</item>
/// <item>span, JSONL: one object per line with "context", "question", "answer_start" (a character offset
/// into the context) and "answer_text" (which must be found there), optionally "id".</item>
/// </list>
/// Empty lines of the JSONL and TSV formats are skipped.
/// </summary>
public static class FineTuningData
{
    private static readonly string[] TextColumns = ["text", "sentence", "text_a", "sentence1"];
    private static readonly string[] PairColumns = ["text_b", "sentence2"];
    private const string LabelColumn = "label";

    /// <summary>Reads a classification file, TSV or JSONL by extension (.tsv/.txt, .jsonl/.json).</summary>
    public static List<ClassificationExample> ReadClassification(string path)
    {
        string ext = Path.GetExtension(path).ToLowerInvariant();
        var result = ext switch
        {
            ".tsv" or ".txt" => ReadClassificationTsv(path),
            ".jsonl" or ".json" => ReadClassificationJsonl(path),
            _ => throw new FineTuningFormatException(path, "file name", $"\"{Path.GetFileName(path)}\"",
                "unknown format: classification data is .tsv (or .txt) with a header line, or .jsonl (or .json) with one object per line"),
        };
        if (result.Count == 0) throw new FineTuningFormatException(path, "examples", "0", "the file holds no examples");
        return result;
    }

    public static List<ClassificationExample> ReadClassificationTsv(string path)
    {
        var result = new List<ClassificationExample>();
        using var reader = Open(path);
        string[]? header = null;
        int label = -1, text = -1, pair = -1;
        while (reader.TryReadLine(out var span))
        {
            if (span.IsWhiteSpace()) continue;
            var fields = span.ToString().Split('\t');
            if (header is null)
            {
                header = fields.Select(f => f.Trim()).ToArray();
                label = Array.IndexOf(header, LabelColumn);
                text = IndexOfAny(header, TextColumns);
                pair = IndexOfAny(header, PairColumns);
                string columns = string.Join(", ", header.Select(h => $"'{h}'"));
                if (label < 0)
                    throw new FineTuningFormatException(path, $"line {reader.LineNumber} (header)", columns,
                        "no 'label' column; the first line must name the columns: label, text and optionally text_b, separated by tabs");
                if (text < 0)
                    throw new FineTuningFormatException(path, $"line {reader.LineNumber} (header)", columns,
                        "no text column; name it 'text' (or sentence, text_a, sentence1)");
                continue;
            }
            string where = $"line {reader.LineNumber}";
            if (fields.Length != header.Length)
                throw new FineTuningFormatException(path, where, $"{fields.Length} fields",
                    $"the header has {header.Length} columns ({string.Join(", ", header)}); fields are separated by tabs");
            string labelValue = fields[label].Trim();
            if (labelValue.Length == 0)
                throw new FineTuningFormatException(path, $"{where}, field '{header[label]}'", "\"\"", "empty label");
            result.Add(new ClassificationExample(fields[text], pair >= 0 ? fields[pair] : null, labelValue, $"{path}:{reader.LineNumber}"));
        }
        if (header is null) throw new FineTuningFormatException(path, "line 1", "(empty file)", "expected a header line naming the columns");
        return result;
    }

    public static List<ClassificationExample> ReadClassificationJsonl(string path)
    {
        var result = new List<ClassificationExample>();
        foreach (var (line, obj) in ReadJsonLines(path))
        {
            string where = $"line {line}";
            string text = RequiredString(path, where, obj, TextColumns);
            string? pair = OptionalString(path, where, obj, PairColumns);
            if (!obj.TryGetProperty(LabelColumn, out var l) || l.ValueKind == JsonValueKind.Null)
                throw new FineTuningFormatException(path, $"{where}, field '{LabelColumn}'", "(absent)", "every example needs a label");
            string label = l.ValueKind switch
            {
                JsonValueKind.String => l.GetString()!.Trim(),
                JsonValueKind.Number when l.TryGetInt64(out long n) => n.ToString(CultureInfo.InvariantCulture),
                _ => throw new FineTuningFormatException(path, $"{where}, field '{LabelColumn}'", Raw(l), "a label must be a string or an integer"),
            };
            if (label.Length == 0) throw new FineTuningFormatException(path, $"{where}, field '{LabelColumn}'", "\"\"", "empty label");
            result.Add(new ClassificationExample(text, pair, label, $"{path}:{line}"));
        }
        return result;
    }

    /// <summary>Reads CoNLL-style tagged sentences.</summary>
    public static List<TaggedSentence> ReadTokens(string path)
    {
        var result = new List<TaggedSentence>();
        var words = new List<string>();
        var tags = new List<string>();
        long first = 0;
        using var reader = Open(path);
        void Flush()
        {
            if (words.Count > 0) result.Add(new TaggedSentence(words.ToArray(), tags.ToArray(), $"{path}:{first}"));
            words.Clear();
            tags.Clear();
        }
        while (reader.TryReadLine(out var span))
        {
            var line = span.Trim();
            if (line.IsEmpty)
            {
                Flush();
                continue;
            }
            if (line.StartsWith("-DOCSTART-", StringComparison.Ordinal)) continue;
            string text = line.ToString();
            string[] fields = text.Contains('\t')
                ? text.Split('\t', StringSplitOptions.TrimEntries)
                : text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 2)
                throw new FineTuningFormatException(path, $"line {reader.LineNumber}", $"\"{Shorten(text)}\"",
                    "expected a word and its tag separated by a tab (a blank line ends a sentence)");
            if (fields[0].Length == 0)
                throw new FineTuningFormatException(path, $"line {reader.LineNumber}, column 1", "\"\"", "empty word");
            if (fields[^1].Length == 0)
                throw new FineTuningFormatException(path, $"line {reader.LineNumber}, column {fields.Length}", "\"\"", "empty tag");
            if (words.Count == 0) first = reader.LineNumber;
            words.Add(fields[0]);
            tags.Add(fields[^1]);
        }
        Flush();
        if (result.Count == 0) throw new FineTuningFormatException(path, "sentences", "0", "the file holds no tagged words");
        return result;
    }

    /// <summary>Reads SQuAD-style JSONL.</summary>
    public static List<SpanExample> ReadSpans(string path)
    {
        var result = new List<SpanExample>();
        foreach (var (line, obj) in ReadJsonLines(path))
        {
            string where = $"line {line}";
            string context = RequiredString(path, where, obj, ["context"]);
            string question = RequiredString(path, where, obj, ["question"]);
            string answer = RequiredString(path, where, obj, ["answer_text"]);
            if (!obj.TryGetProperty("answer_start", out var s) || s.ValueKind == JsonValueKind.Null)
                throw new FineTuningFormatException(path, $"{where}, field 'answer_start'", "(absent)", "required field is missing");
            if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt32(out int start))
                throw new FineTuningFormatException(path, $"{where}, field 'answer_start'", Raw(s), "must be an integer character offset into the context");
            if (answer.Length == 0 || answer.Trim().Length == 0)
                throw new FineTuningFormatException(path, $"{where}, field 'answer_text'", Raw(obj.GetProperty("answer_text")), "the answer must not be empty");
            if (start < 0 || start + answer.Length > context.Length)
                throw new FineTuningFormatException(path, $"{where}, field 'answer_start'", start.ToString(CultureInfo.InvariantCulture),
                    $"the answer ({answer.Length} characters) does not fit in the context ({context.Length} characters)");
            if (string.CompareOrdinal(context, start, answer, 0, answer.Length) != 0)
                throw new FineTuningFormatException(path, $"{where}, field 'answer_text'", $"\"{Shorten(answer)}\"",
                    $"the context at answer_start {start} reads \"{Shorten(context.Substring(start, answer.Length))}\"");
            string id = obj.TryGetProperty("id", out var idElement) && idElement.ValueKind is JsonValueKind.String or JsonValueKind.Number
                ? (idElement.ValueKind == JsonValueKind.String ? idElement.GetString()! : idElement.GetRawText())
                : line.ToString(CultureInfo.InvariantCulture);
            result.Add(new SpanExample(id, context, question, start, answer, $"{path}:{line}"));
        }
        return result;
    }

    /// <summary>Reads questions for prediction: JSONL with "question" and "context" per line (other fields,
    /// such as a SQuAD answer, are ignored).</summary>
    public static List<(string Question, string Context)> ReadQuestions(string path)
    {
        var result = new List<(string, string)>();
        foreach (var (line, obj) in ReadJsonLines(path))
        {
            string where = $"line {line}";
            string context = RequiredString(path, where, obj, ["context"]);
            if (context.Trim().Length == 0)
                throw new FineTuningFormatException(path, $"{where}, field 'context'", "\"\"", "the context must not be empty");
            result.Add((RequiredString(path, where, obj, ["question"]), context));
        }
        return result;
    }

    /// <summary>The lines of a UTF-8 text file (a final newline does not start another line).</summary>
    public static List<string> ReadLines(string path)
    {
        var lines = new List<string>();
        using var reader = Open(path);
        while (reader.TryReadLine(out var line)) lines.Add(line.ToString());
        if (lines.Count == 0) throw new FineTuningFormatException(path, "lines", "0", "the file has no lines");
        return lines;
    }

    private static List<(long Line, JsonElement Object)> ReadJsonLines(string path)
    {
        var result = new List<(long, JsonElement)>();
        using var reader = Open(path);
        while (reader.TryReadLine(out var span))
        {
            if (span.IsWhiteSpace()) continue;
            JsonElement element;
            try
            {
                using var doc = JsonDocument.Parse(span.ToString());
                element = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new FineTuningFormatException(path, $"line {reader.LineNumber}", $"\"{Shorten(span.ToString())}\"",
                    $"not valid JSON ({e.Message}); JSONL holds one JSON object per line");
            }
            if (element.ValueKind != JsonValueKind.Object)
                throw new FineTuningFormatException(path, $"line {reader.LineNumber}", Raw(element), "each line must be a JSON object");
            result.Add((reader.LineNumber, element));
        }
        if (result.Count == 0) throw new FineTuningFormatException(path, "examples", "0", "the file holds no examples");
        return result;
    }

    private static Utf8LineReader Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data file not found", path);
        return new Utf8LineReader(path, (p, f, v, m) => new FineTuningFormatException(p, f, v, m));
    }

    private static string RequiredString(string path, string where, JsonElement obj, string[] names) =>
        OptionalString(path, where, obj, names)
        ?? throw new FineTuningFormatException(path, $"{where}, field '{names[0]}'", "(absent)",
            names.Length > 1 ? $"required field is missing (also accepted: {string.Join(", ", names.Skip(1))})" : "required field is missing");

    private static string? OptionalString(string path, string where, JsonElement obj, string[] names)
    {
        foreach (var name in names)
        {
            if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) continue;
            if (v.ValueKind != JsonValueKind.String)
                throw new FineTuningFormatException(path, $"{where}, field '{name}'", Raw(v), "must be a string");
            return v.GetString()!;
        }
        return null;
    }

    private static int IndexOfAny(string[] header, string[] names)
    {
        foreach (var n in names)
        {
            int i = Array.IndexOf(header, n);
            if (i >= 0) return i;
        }
        return -1;
    }

    private static string Raw(JsonElement e) => Shorten(e.GetRawText());

    private static string Shorten(string s) => s.Length > 60 ? s[..60] + "..." : s;
}
