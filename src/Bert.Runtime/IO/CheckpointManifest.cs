using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace Bert.Runtime.IO;

/// <summary>One file of a checkpoint: its name inside the directory, size and XXH64 checksum (16
/// lower-case hex digits, seed 0).</summary>
public sealed record ManifestEntry(string Name, long Bytes, string XxHash64);

/// <summary>
/// manifest.json: the completion marker of a checkpoint directory, written last. Lists every other
/// file with its size and XXH64 checksum so a load can prove the directory is the one that was written.
/// </summary>
public sealed record CheckpointManifest(long Step, IReadOnlyList<ManifestEntry> Files, string CreatedUtc)
{
    public const string FileName = "manifest.json";
    public const string Format = "bert-checkpoint";
    public const int Version = 1;

    public ManifestEntry? Find(string name) => Files.FirstOrDefault(f => f.Name == name);

    public byte[] Serialize()
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("format", Format);
            json.WriteNumber("version", Version);
            json.WriteNumber("step", Step);
            json.WriteString("created_utc", CreatedUtc);
            json.WriteStartArray("files");
            foreach (var f in Files)
            {
                json.WriteStartObject();
                json.WriteString("name", f.Name);
                json.WriteNumber("bytes", f.Bytes);
                json.WriteString("xxh64", f.XxHash64);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return [.. buffer.WrittenSpan, (byte)'\n'];
    }

    /// <exception cref="CheckpointFormatException">Not a manifest of this format and version.</exception>
    public static CheckpointManifest Parse(ReadOnlySpan<byte> utf8, string file)
    {
        int bad = Utf8Validation.FirstInvalid(utf8);
        if (bad >= 0)
            throw new CheckpointFormatException(file, "(file)", $"byte 0x{utf8[bad]:X2} at offset {bad}", "manifest is not valid UTF-8");
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(utf8);
            doc = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(file, "(file)", $"line {e.LineNumber + 1}", "manifest is not valid JSON: " + e.Message, e);
        }
        using (doc)
        {
            try
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new CheckpointFormatException(file, "(root)", root.ValueKind.ToString(), "manifest must be a JSON object");
                string format = String(root, "format", file);
                if (format != Format)
                    throw new CheckpointFormatException(file, "format", format, $"expected \"{Format}\"");
                long version = Integer(root, "version", file);
                if (version != Version)
                    throw new CheckpointFormatException(file, "version", version.ToString(CultureInfo.InvariantCulture), $"this build reads version {Version}");
                long step = Integer(root, "step", file);
                string created = root.TryGetProperty("created_utc", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : "";
                if (!root.TryGetProperty("files", out var files) || files.ValueKind != JsonValueKind.Array)
                    throw new CheckpointFormatException(file, "files", "(absent)", "manifest must list its files");
                var entries = new List<ManifestEntry>();
                var names = new HashSet<string>(StringComparer.Ordinal);
                foreach (var f in files.EnumerateArray())
                {
                    if (f.ValueKind != JsonValueKind.Object)
                        throw new CheckpointFormatException(file, "files[]", f.ValueKind.ToString(), "each file entry must be an object");
                    string name = String(f, "name", file);
                    if (name.Length == 0 || name.Contains('/') || name.Contains('\\') || name is "." or "..")
                        throw new CheckpointFormatException(file, "files[].name", name, "must be a plain file name inside the checkpoint");
                    if (!names.Add(name))
                        throw new CheckpointFormatException(file, "files[].name", name, "listed twice");
                    long bytes = Integer(f, "bytes", file);
                    string hash = String(f, "xxh64", file);
                    if (hash.Length != 16 || !hash.All(char.IsAsciiHexDigitLower))
                        throw new CheckpointFormatException(file, $"{name}.xxh64", hash, "must be 16 lower-case hex digits");
                    entries.Add(new ManifestEntry(name, bytes, hash));
                }
                return new CheckpointManifest(step, entries, created);
            }
            catch (InvalidOperationException e)
            {
                // A string or key whose \u escape is not valid UTF-16 (a lone surrogate such as \udc00):
                // System.Text.Json only finds out when the string is read.
                throw new CheckpointFormatException(file, "(file)", "a \\u escape", "manifest holds a string that is not valid UTF-16: " + e.Message, e);
            }
        }
    }

    /// <summary>Checks every listed file's size, then its XXH64 checksum.</summary>
    /// <exception cref="CheckpointFormatException">A file is missing, has another size or checksum.</exception>
    public void Verify(IFileSystem fs, string directory, CancellationToken cancellationToken = default)
    {
        foreach (var f in Files)
        {
            string path = Path.Combine(directory, f.Name);
            if (!fs.FileExists(path))
                throw new CheckpointFormatException(path, "file", "(absent)", $"listed in {FileName} but missing");
            long length = fs.FileLength(path);
            if (length != f.Bytes)
                throw new CheckpointFormatException(path, "bytes", length.ToString(CultureInfo.InvariantCulture),
                    $"{FileName} records {f.Bytes} bytes (truncated or replaced file)");
        }
        foreach (var f in Files)
        {
            string path = Path.Combine(directory, f.Name);
            string actual = HashFile(fs, path, cancellationToken);
            if (actual != f.XxHash64)
                throw new CheckpointFormatException(path, "xxh64", actual,
                    $"checksum differs from the {f.XxHash64} recorded in {FileName} (the file is corrupt)");
        }
    }

    public static string HashFile(IFileSystem fs, string path, CancellationToken cancellationToken = default)
    {
        using var stream = fs.OpenRead(path);
        var hash = new XxHash64();
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                hash.Append(buffer.AsSpan(0, n));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return hash.DigestHex();
    }

    private static string String(JsonElement e, string key, string file) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
            : throw new CheckpointFormatException(file, key, v.ValueKind == JsonValueKind.Undefined ? "(absent)" : v.GetRawText(), "must be a string");

    private static long Integer(JsonElement e, string key, string file) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long x) && x >= 0 ? x
            : throw new CheckpointFormatException(file, key, v.ValueKind == JsonValueKind.Undefined ? "(absent)" : v.GetRawText(), "must be a non-negative integer");
}

/// <summary>Passes writes through to a stream while counting them and hashing them with XXH64.</summary>
internal sealed class HashingWriteStream(Stream inner) : Stream
{
    private readonly XxHash64 _hash = new();
    private long _length;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => _length;
    public override long Position { get => _length; set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        inner.Write(buffer);
        _hash.Append(buffer);
        _length += buffer.Length;
    }

    public override void Flush() => inner.Flush();

    public string HashHex() => _hash.DigestHex();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
