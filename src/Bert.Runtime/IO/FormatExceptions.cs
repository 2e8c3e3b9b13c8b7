namespace Bert.Runtime.IO;

/// <summary>A malformed or inconsistent file: names the file, the offending field (tensor name, JSON
/// key, header part) and its value.</summary>
public abstract class FileFormatException : FormatException
{
    protected FileFormatException(string file, string field, string value, string message, Exception? inner)
        : base($"{file}: {field}: {message} (value: {value})", inner)
    {
        File = file;
        Field = field;
        Value = value;
    }

    public string File { get; }
    public string Field { get; }
    public string Value { get; }
}

/// <summary>A safetensors file that breaks the format: bad header length, JSON, dtype, shape or offsets.</summary>
public sealed class SafetensorsFormatException(string file, string field, string value, string message, Exception? inner = null)
    : FileFormatException(file, field, value, message, inner);

/// <summary>A config.json that is not a usable BertConfig: missing key, wrong type, bad value.</summary>
public sealed class ConfigFormatException(string file, string field, string value, string message, Exception? inner = null)
    : FileFormatException(file, field, value, message, inner);

/// <summary>A checkpoint directory that is incomplete, corrupt (size or checksum differs from its
/// manifest) or of an unknown format.</summary>
public sealed class CheckpointFormatException(string file, string field, string value, string message, Exception? inner = null)
    : FileFormatException(file, field, value, message, inner);
