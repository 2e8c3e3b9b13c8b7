namespace Bert.Runtime.Data;

/// <summary>
/// A data file (corpus, vocabulary, shard) is malformed. The message names the file, the field (or
/// line / byte offset) and the offending value; the properties carry them for programs.
/// </summary>
public class DataFormatException : IOException
{
    public DataFormatException(string path, string field, string value, string problem)
        : base($"{path}: {field} = {value}: {problem}")
    {
        FilePath = path;
        Field = field;
        Value = value;
    }

    /// <summary>The file (or directory) that is malformed.</summary>
    public string FilePath { get; }

    /// <summary>Which part of it: a header field, "line 12", "byte 4096".</summary>
    public string Field { get; }

    /// <summary>The value found there.</summary>
    public string Value { get; }
}

/// <summary>A shard file or dataset directory is malformed, truncated, corrupted or mismatched.</summary>
public sealed class ShardFormatException(string path, string field, string value, string problem)
    : DataFormatException(path, field, value, problem);

/// <summary>A vocabulary file is malformed (invalid UTF-8, empty or duplicate tokens, missing special tokens).</summary>
public sealed class VocabularyFormatException(string path, string field, string value, string problem)
    : DataFormatException(path, field, value, problem);

/// <summary>A corpus file is malformed or unusable (invalid UTF-8, no documents).</summary>
public sealed class CorpusFormatException(string path, string field, string value, string problem)
    : DataFormatException(path, field, value, problem);
