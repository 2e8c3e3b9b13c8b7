using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Win32.SafeHandles;

namespace Bert.Runtime.IO;

/// <summary>
/// A safetensors file opened for reading. Layout: u64 little-endian header length N, N bytes of UTF-8
/// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then the
/// data buffer; offsets are relative to the buffer, tensors tile it from 0 to its end without gaps or
/// overlaps, and each tensor's byte length is its element count times its dtype size.
/// <see cref="Open"/> validates all of that before returning; tensor data is read on demand with
/// positional reads (no whole-file buffering), converting to F32.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Largest accepted header, as the reference implementation (100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;
    public const string MetadataKey = "__metadata__";

    private const int ChunkElements = 1 << 16;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafetensorsTensor> _byName;

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart, long fileLength,
        List<SafetensorsTensor> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        DataStart = dataStart;
        FileLength = fileLength;
        Tensors = tensors;
        Metadata = metadata;
        _byName = new Dictionary<string, SafetensorsTensor>(tensors.Count, StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            t.File = this;
            _byName.Add(t.Name, t);
        }
    }

    public string Path { get; }
    /// <summary>Byte offset of the data buffer in the file (8 + N).</summary>
    public long DataStart { get; }
    public long FileLength { get; }
    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafetensorsTensor> Tensors { get; }
    /// <summary>The "__metadata__" map; empty when absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public bool TryGet(string name, out SafetensorsTensor tensor) => _byName.TryGetValue(name, out tensor!);

    public SafetensorsTensor this[string name] =>
        _byName.TryGetValue(name, out var t) ? t
            : throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <exception cref="SafetensorsFormatException">The file breaks the format; the message names the
    /// file, the field (tensor name or header part) and the value.</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors I/O assumes a little-endian machine");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8)
                throw new SafetensorsFormatException(path, "header length", $"{fileLength} bytes",
                    "file too short: a safetensors file starts with an 8-byte header length");
            Span<byte> prefix = stackalloc byte[8];
            ReadExactly(handle, prefix, 0, path);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (n > MaxHeaderBytes)
                throw new SafetensorsFormatException(path, "header length", n.ToString(),
                    $"header larger than the {MaxHeaderBytes}-byte limit");
            if (n > (ulong)(fileLength - 8))
                throw new SafetensorsFormatException(path, "header length", n.ToString(),
                    $"header extends past the end of the {fileLength}-byte file");
            // n ≤ file size here, so this allocation is bounded by what is really on disk.
            var header = new byte[(int)n];
            ReadExactly(handle, header, 8, path);
            long dataStart = 8 + (long)n;
            var (tensors, metadata) = ParseHeader(header, fileLength - dataStart, path);
            return new SafetensorsFile(path, handle, dataStart, fileLength, tensors, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Parses and validates a header against a data buffer of <paramref name="dataLength"/> bytes.</summary>
    internal static (List<SafetensorsTensor> Tensors, Dictionary<string, string> Metadata) ParseHeader(
        ReadOnlySpan<byte> header, long dataLength, string file)
    {
        if (!Utf8.IsValid(header))
        {
            int bad = FirstInvalidUtf8(header);
            throw new SafetensorsFormatException(file, "header", $"byte 0x{header[bad]:X2} at header offset {bad}",
                "header is not valid UTF-8");
        }
        var tensors = new List<SafetensorsTensor>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 8 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new SafetensorsFormatException(file, "header", Excerpt(header),
                    "header is not a JSON object");
            while (true)
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.EndObject) break;
                string name = reader.GetString()!;
                if (name == MetadataKey)
                {
                    if (sawMetadata)
                        throw new SafetensorsFormatException(file, MetadataKey, "(repeated)", "duplicate key in header");
                    sawMetadata = true;
                    ParseMetadata(ref reader, metadata, file);
                    continue;
                }
                if (!seen.Add(name))
                    throw new SafetensorsFormatException(file, name, "(repeated)", "duplicate tensor name in header");
                tensors.Add(ParseTensor(ref reader, name, dataLength, file));
            }
            // Only whitespace (the space padding) may follow; the reader throws on anything else.
            if (reader.Read())
                throw new SafetensorsFormatException(file, "header", reader.TokenType.ToString(),
                    "content after the header object");
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException(file, "header", $"byte {e.BytePositionInLine} of line {e.LineNumber + 1}",
                "header is not valid JSON: " + e.Message, e);
        }
        catch (InvalidOperationException e)
        {
            // Utf8JsonReader.GetString on a malformed escape.
            throw new SafetensorsFormatException(file, "header", Excerpt(header), "header is not valid JSON: " + e.Message, e);
        }
        CheckTiling(tensors, dataLength, file);
        return (tensors, metadata);
    }

    private static void ParseMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata, string file)
    {
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new SafetensorsFormatException(file, MetadataKey, TokenText(ref reader),
                "metadata must be an object of string values");
        while (true)
        {
            reader.Read();
            if (reader.TokenType == JsonTokenType.EndObject) return;
            string key = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
                throw new SafetensorsFormatException(file, $"{MetadataKey}.{key}", TokenText(ref reader),
                    "metadata values must be strings");
            if (!metadata.TryAdd(key, reader.GetString()!))
                throw new SafetensorsFormatException(file, $"{MetadataKey}.{key}", "(repeated)", "duplicate metadata key");
        }
    }

    private static SafetensorsTensor ParseTensor(ref Utf8JsonReader reader, string name, long dataLength, string file)
    {
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new SafetensorsFormatException(file, name, TokenText(ref reader),
                "tensor entry must be an object {dtype, shape, data_offsets}");
        string? dtypeText = null;
        long[]? shape = null;
        long[]? offsets = null;
        while (true)
        {
            reader.Read();
            if (reader.TokenType == JsonTokenType.EndObject) break;
            string key = reader.GetString()!;
            reader.Read();
            switch (key)
            {
                case "dtype":
                    if (dtypeText is not null) throw Repeated(file, name, key);
                    if (reader.TokenType != JsonTokenType.String)
                        throw new SafetensorsFormatException(file, $"{name}.dtype", TokenText(ref reader), "dtype must be a string");
                    dtypeText = reader.GetString()!;
                    break;
                case "shape":
                    if (shape is not null) throw Repeated(file, name, key);
                    shape = ReadIntegers(ref reader, $"{name}.shape", file);
                    break;
                case "data_offsets":
                    if (offsets is not null) throw Repeated(file, name, key);
                    offsets = ReadIntegers(ref reader, $"{name}.data_offsets", file);
                    break;
                default:
                    // Unknown per-tensor keys are not part of the format; skip them like the reference reader.
                    reader.Skip();
                    break;
            }
        }
        if (dtypeText is null) throw Missing(file, name, "dtype");
        if (shape is null) throw Missing(file, name, "shape");
        if (offsets is null) throw Missing(file, name, "data_offsets");
        if (!SafetensorsDTypes.TryParse(dtypeText, out var dtype))
            throw new SafetensorsFormatException(file, $"{name}.dtype", dtypeText,
                "unknown dtype (expected one of " + string.Join(", ", Enum.GetNames<SafetensorsDType>()) + ")");
        if (offsets.Length != 2)
            throw new SafetensorsFormatException(file, $"{name}.data_offsets", "[" + string.Join(", ", offsets) + "]",
                "data_offsets must be [begin, end]");
        long count = 1;
        foreach (long d in shape)
        {
            // ReadIntegers already rejected negatives; the product may still overflow.
            if (d != 0 && count > long.MaxValue / d)
                throw new SafetensorsFormatException(file, $"{name}.shape", ShapeText(shape), "element count overflows 64 bits");
            count *= d;
        }
        long begin = offsets[0], end = offsets[1];
        if (end < begin)
            throw new SafetensorsFormatException(file, $"{name}.data_offsets", $"[{begin}, {end}]", "end is before begin");
        if (end > dataLength)
            throw new SafetensorsFormatException(file, $"{name}.data_offsets", $"[{begin}, {end}]",
                $"out of range: the data buffer has {dataLength} bytes");
        int size = dtype.Size();
        if (count > long.MaxValue / size || count * size != end - begin)
            throw new SafetensorsFormatException(file, name, $"{dtype} {ShapeText(shape)} in {end - begin} bytes",
                $"size mismatch: {count} elements of {size} bytes need {(count > long.MaxValue / size ? "more than 2^63" : (count * size).ToString())} bytes");
        return new SafetensorsTensor(name, dtype, shape, count, begin, end - begin);
    }

    private static void CheckTiling(List<SafetensorsTensor> tensors, long dataLength, string file)
    {
        if (tensors.Count == 0)
        {
            if (dataLength != 0)
                throw new SafetensorsFormatException(file, "data", $"{dataLength} bytes", "no tensors but a non-empty data buffer");
            return;
        }
        var sorted = tensors.ToArray();
        Array.Sort(sorted, (a, b) => a.DataOffset != b.DataOffset ? a.DataOffset.CompareTo(b.DataOffset) : a.ByteLength.CompareTo(b.ByteLength));
        if (sorted[0].DataOffset != 0)
            throw new SafetensorsFormatException(file, $"{sorted[0].Name}.data_offsets", OffsetsText(sorted[0]),
                "the first tensor must start at offset 0 of the data buffer");
        for (int i = 1; i < sorted.Length; i++)
        {
            var prev = sorted[i - 1];
            var cur = sorted[i];
            long prevEnd = prev.DataOffset + prev.ByteLength;
            if (cur.DataOffset < prevEnd)
                throw new SafetensorsFormatException(file, $"{cur.Name}.data_offsets", OffsetsText(cur),
                    $"overlaps tensor '{prev.Name}' at {OffsetsText(prev)}");
            if (cur.DataOffset > prevEnd)
                throw new SafetensorsFormatException(file, $"{cur.Name}.data_offsets", OffsetsText(cur),
                    $"gap of {cur.DataOffset - prevEnd} bytes after tensor '{prev.Name}' at {OffsetsText(prev)}");
        }
        var last = sorted[^1];
        long lastEnd = last.DataOffset + last.ByteLength;
        if (lastEnd != dataLength)
            throw new SafetensorsFormatException(file, $"{last.Name}.data_offsets", OffsetsText(last),
                $"the tensors end at byte {lastEnd} but the data buffer has {dataLength} bytes");
    }

    private static long[] ReadIntegers(ref Utf8JsonReader reader, string field, string file)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new SafetensorsFormatException(file, field, TokenText(ref reader), "must be an array of non-negative integers");
        var values = new List<long>();
        while (true)
        {
            reader.Read();
            if (reader.TokenType == JsonTokenType.EndArray) return values.ToArray();
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long v) || v < 0)
                throw new SafetensorsFormatException(file, field, TokenText(ref reader),
                    "must be an array of non-negative 64-bit integers");
            if (values.Count >= 64)
                throw new SafetensorsFormatException(file, field, $"more than {values.Count} entries", "too many entries");
            values.Add(v);
        }
    }

    private static SafetensorsFormatException Missing(string file, string name, string key) =>
        new(file, $"{name}.{key}", "(absent)", $"tensor entry lacks the required key '{key}'");

    private static SafetensorsFormatException Repeated(string file, string name, string key) =>
        new(file, $"{name}.{key}", "(repeated)", "duplicate key in tensor entry");

    private static string TokenText(ref Utf8JsonReader reader)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.String:
                return "\"" + reader.GetString() + "\"";
            case JsonTokenType.Number or JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null:
                return Encoding.UTF8.GetString(reader.HasValueSequence ? reader.ValueSequence.ToArray() : reader.ValueSpan);
            case JsonTokenType.StartObject:
                return "{...}";
            case JsonTokenType.StartArray:
                return "[...]";
            default:
                return reader.TokenType.ToString();
        }
    }

    private static string ShapeText(long[] shape) => "[" + string.Join(", ", shape) + "]";

    private static string OffsetsText(SafetensorsTensor t) => $"[{t.DataOffset}, {t.DataOffset + t.ByteLength}]";

    private static string Excerpt(ReadOnlySpan<byte> header)
    {
        var s = Encoding.UTF8.GetString(header[..Math.Min(header.Length, 40)]);
        return header.Length > 40 ? s + "..." : s;
    }

    private static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        var status = Utf8.ToUtf16(bytes, new char[bytes.Length], out int read, out _, replaceInvalidSequences: false);
        return status == OperationStatus.Done ? 0 : Math.Min(read, bytes.Length - 1);
    }

    internal static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        while (!buffer.IsEmpty)
        {
            int n = RandomAccess.Read(handle, buffer, offset);
            if (n == 0)
                throw new SafetensorsFormatException(path, "data", $"offset {offset}", "unexpected end of file (was the file truncated while open?)");
            buffer = buffer[n..];
            offset += n;
        }
    }

    /// <summary>Reads a tensor's elements, converted to F32.</summary>
    internal void ReadAsFloat32(SafetensorsTensor tensor, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (destination.Length != tensor.ElementCount)
            throw new ArgumentException(
                $"{Path}: tensor '{tensor.Name}' has {tensor.ElementCount} elements but the destination holds {destination.Length}",
                nameof(destination));
        long offset = DataStart + tensor.DataOffset;
        if (tensor.DType == SafetensorsDType.F32)
        {
            ReadExactly(_handle, MemoryMarshal.AsBytes(destination), offset, Path);
            return;
        }
        int size = tensor.DType.Size();
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkElements * size);
        try
        {
            for (int i = 0; i < destination.Length; i += ChunkElements)
            {
                int n = Math.Min(ChunkElements, destination.Length - i);
                var bytes = buffer.AsSpan(0, n * size);
                ReadExactly(_handle, bytes, offset + (long)i * size, Path);
                FloatConversions.ToSingle(destination.Slice(i, n), bytes, tensor.DType);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    internal void ReadBytes(SafetensorsTensor tensor, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (destination.Length != tensor.ByteLength)
            throw new ArgumentException(
                $"{Path}: tensor '{tensor.Name}' has {tensor.ByteLength} bytes but the destination holds {destination.Length}",
                nameof(destination));
        ReadExactly(_handle, destination, DataStart + tensor.DataOffset, Path);
    }

    public void Dispose() => _handle.Dispose();
}

/// <summary>One tensor of a <see cref="SafetensorsFile"/>.</summary>
public sealed class SafetensorsTensor
{
    internal SafetensorsTensor(string name, SafetensorsDType dtype, long[] shape, long elementCount, long dataOffset, long byteLength)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        ElementCount = elementCount;
        DataOffset = dataOffset;
        ByteLength = byteLength;
    }

    public string Name { get; }
    public SafetensorsDType DType { get; }
    public IReadOnlyList<long> Shape { get; }
    public long ElementCount { get; }
    /// <summary>Offset in the data buffer (data_offsets[0]).</summary>
    public long DataOffset { get; }
    public long ByteLength { get; }
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    internal SafetensorsFile? File { get; set; }

    /// <summary>Whether the shape equals <paramref name="shape"/> (an int[] as in ParameterInfo).</summary>
    public bool ShapeEquals(IReadOnlyList<int> shape)
    {
        if (shape.Count != Shape.Count) return false;
        for (int i = 0; i < shape.Count; i++) if (shape[i] != Shape[i]) return false;
        return true;
    }

    /// <summary>Reads the elements converted to F32 (F16/BF16 widen exactly; integers convert by value).</summary>
    /// <param name="destination">F32[ElementCount].</param>
    public void ReadAsFloat32(Span<float> destination) => Owner.ReadAsFloat32(this, destination);

    /// <summary>Reads the elements into a new array.</summary>
    public float[] ReadAsFloat32()
    {
        if (ElementCount > Array.MaxLength)
            throw new InvalidOperationException($"{Owner.Path}: tensor '{Name}' has {ElementCount} elements, more than an array holds");
        var result = new float[ElementCount];
        ReadAsFloat32(result);
        return result;
    }

    /// <summary>Reads the stored little-endian bytes unchanged.</summary>
    public void ReadBytes(Span<byte> destination) => Owner.ReadBytes(this, destination);

    private SafetensorsFile Owner => File ?? throw new InvalidOperationException($"tensor '{Name}' is not attached to a file");
}
