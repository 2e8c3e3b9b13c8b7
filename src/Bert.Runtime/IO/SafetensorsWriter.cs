using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;

namespace Bert.Runtime.IO;

/// <summary>One tensor to write: F32 data stored as <see cref="DType"/> (F32, F16 or BF16, rounded to
/// nearest even), or raw little-endian bytes of any dtype (<see cref="FromBytes"/>).</summary>
public readonly record struct SafetensorsEntry
{
    public SafetensorsEntry(string name, SafetensorsDType dtype, int[] shape, ReadOnlyMemory<float> data)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        Data = data;
    }

    private SafetensorsEntry(string name, SafetensorsDType dtype, int[] shape, ReadOnlyMemory<byte> raw)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        Raw = raw;
        IsRaw = true;
    }

    /// <summary>An entry whose bytes are written unchanged (e.g. an I64 buffer).</summary>
    public static SafetensorsEntry FromBytes(string name, SafetensorsDType dtype, int[] shape, ReadOnlyMemory<byte> bytes) =>
        new(name, dtype, shape, bytes);

    public string Name { get; }
    public SafetensorsDType DType { get; }
    public int[] Shape { get; }
    public ReadOnlyMemory<float> Data { get; }
    public ReadOnlyMemory<byte> Raw { get; }
    public bool IsRaw { get; }

    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
    public long ByteLength => ElementCount * DType.Size();
}

/// <summary>Writes safetensors files: header padded with spaces to a multiple of 8 (so the data buffer
/// is 8-byte aligned), tensors in the given order, contiguous from offset 0.</summary>
public static class SafetensorsWriter
{
    private const int ChunkElements = 1 << 16;

    /// <summary>Writes the file atomically (temp file, fsync, rename) through <paramref name="fs"/>.</summary>
    public static void Write(IFileSystem fs, string path, IReadOnlyList<SafetensorsEntry> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(fs);
        var header = BuildHeader(tensors, metadata);
        AtomicFile.Write(fs, path, s => WriteBody(s, header, tensors, cancellationToken));
    }

    /// <summary>Writes the whole file to a stream; returns the bytes written.</summary>
    public static long WriteTo(Stream stream, IReadOnlyList<SafetensorsEntry> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var header = BuildHeader(tensors, metadata);
        return WriteBody(stream, header, tensors, cancellationToken);
    }

    /// <summary>The file's size once written.</summary>
    public static long FileSize(IReadOnlyList<SafetensorsEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        8 + BuildHeader(tensors, metadata).Length + tensors.Sum(t => t.ByteLength);

    /// <summary>The JSON header, padded with spaces to a multiple of 8 bytes.</summary>
    internal static byte[] BuildHeader(IReadOnlyList<SafetensorsEntry> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors I/O assumes a little-endian machine");
        var names = new HashSet<string>(StringComparer.Ordinal);
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(SafetensorsFile.MetadataKey);
                foreach (var (k, v) in metadata)
                {
                    ArgumentNullException.ThrowIfNull(v, $"metadata[{k}]");
                    json.WriteString(k, v);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                Validate(t, names);
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType.Name());
                json.WriteStartArray("shape");
                foreach (int d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.ByteLength;
            }
            json.WriteEndObject();
        }
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        if (padded > SafetensorsFile.MaxHeaderBytes)
            throw new ArgumentException($"the safetensors header would be {padded} bytes, over the {SafetensorsFile.MaxHeaderBytes}-byte limit", nameof(tensors));
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static void Validate(in SafetensorsEntry t, HashSet<string> names)
    {
        if (string.IsNullOrEmpty(t.Name)) throw new ArgumentException("a tensor name is empty", nameof(t));
        if (t.Name == SafetensorsFile.MetadataKey) throw new ArgumentException($"'{t.Name}' is reserved", nameof(t));
        if (!names.Add(t.Name)) throw new ArgumentException($"tensor name '{t.Name}' appears twice", nameof(t));
        ArgumentNullException.ThrowIfNull(t.Shape, $"{t.Name}.Shape");
        foreach (int d in t.Shape)
            if (d < 0) throw new ArgumentException($"tensor '{t.Name}' has a negative dimension in [{string.Join(", ", t.Shape)}]", nameof(t));
        if (t.IsRaw)
        {
            if (t.Raw.Length != t.ByteLength)
                throw new ArgumentException($"tensor '{t.Name}' {t.DType} [{string.Join(", ", t.Shape)}] needs {t.ByteLength} bytes, got {t.Raw.Length}", nameof(t));
        }
        else
        {
            if (!t.DType.IsWritableFloat())
                throw new ArgumentException($"tensor '{t.Name}': F32 data can be stored as F32, F16 or BF16, not {t.DType}", nameof(t));
            if (t.Data.Length != t.ElementCount)
                throw new ArgumentException($"tensor '{t.Name}' [{string.Join(", ", t.Shape)}] has {t.ElementCount} elements but {t.Data.Length} values were given", nameof(t));
        }
    }

    private static long WriteBody(Stream stream, byte[] header, IReadOnlyList<SafetensorsEntry> tensors, CancellationToken cancellationToken)
    {
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        long written = 8 + header.Length;
        byte[]? chunk = null;
        try
        {
            foreach (var t in tensors)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (t.IsRaw)
                {
                    stream.Write(t.Raw.Span);
                }
                else if (t.DType == SafetensorsDType.F32)
                {
                    stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Data.Span));
                }
                else
                {
                    int size = t.DType.Size();
                    chunk ??= ArrayPool<byte>.Shared.Rent(ChunkElements * 4);
                    var data = t.Data.Span;
                    for (int i = 0; i < data.Length; i += ChunkElements)
                    {
                        int n = Math.Min(ChunkElements, data.Length - i);
                        var bytes = chunk.AsSpan(0, n * size);
                        FloatConversions.FromSingle(bytes, data.Slice(i, n), t.DType);
                        stream.Write(bytes);
                    }
                }
                written += t.ByteLength;
            }
        }
        finally
        {
            if (chunk is not null) ArrayPool<byte>.Shared.Return(chunk);
        }
        return written;
    }
}
