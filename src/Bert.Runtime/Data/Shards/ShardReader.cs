using Bert.Runtime.IO;
using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace Bert.Runtime.Data;

/// <summary>
/// One shard, memory-mapped and validated on open (header fields against the file length, header
/// checksum, and unless disabled the checksum of all records). Reads copy one record into
/// caller-provided spans and allocate nothing. Safe for concurrent reads.
/// </summary>
public sealed unsafe class ShardReader : IDisposable
{
    private readonly MemoryMappedFile? _file;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _records;
    private readonly ShardLayout _layout;
    private bool _disposed;

    private ShardReader(string path, ShardHeader header, MemoryMappedFile file, MemoryMappedViewAccessor view, byte* records)
    {
        Path = path;
        Header = header;
        _layout = header.Layout;
        _file = file;
        _view = view;
        _records = records;
    }

    public string Path { get; }

    public ShardHeader Header { get; }

    public long Count => Header.RecordCount;

    /// <summary>Opens and validates <paramref name="path"/>; throws <see cref="ShardFormatException"/>
    /// naming the file, field and value when anything is wrong.</summary>
    public static ShardReader Open(string path, bool verifyChecksum = true)
    {
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: shard not found", path);
        long length = new FileInfo(path).Length;
        Span<byte> headerBytes = stackalloc byte[ShardHeader.Size];
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1))
        {
            int n = fs.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false);
            if (n < ShardHeader.Size)
                throw new ShardFormatException(path, "file length", length.ToString(), $"shorter than the {ShardHeader.Size}-byte header (truncated or not a shard)");
        }
        var header = ShardHeader.Read(headerBytes, length, path);

        var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            var reader = new ShardReader(path, header, file, view, basePtr + view.PointerOffset + ShardHeader.Size);
            if (verifyChecksum) reader.VerifyChecksum();
            return reader;
        }
        catch
        {
            if (view != null)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            file.Dispose();
            throw;
        }
    }

    /// <summary>Hashes all records and compares with the header; throws on a mismatch.</summary>
    public void VerifyChecksum()
    {
        var hasher = new XxHash64();
        long total = Count * _layout.RecordSize;
        const int chunk = 1 << 30;
        for (long off = 0; off < total; off += chunk)
            hasher.Append(new ReadOnlySpan<byte>(_records + off, (int)Math.Min(chunk, total - off)));
        ulong actual = hasher.Digest();
        if (actual != Header.RecordsChecksum)
            throw new ShardFormatException(Path, "records checksum", $"0x{Header.RecordsChecksum:x16}",
                $"the records hash to 0x{actual:x16}: the file is corrupted");
    }

    /// <summary>The raw bytes of record <paramref name="index"/>.</summary>
    public ReadOnlySpan<byte> Record(long index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((ulong)index >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"{Path} holds {Count} records");
        return new ReadOnlySpan<byte>(_records + index * _layout.RecordSize, _layout.RecordSize);
    }

    /// <summary>
    /// Copies record <paramref name="index"/>: <paramref name="inputIds"/>[S] ([PAD] after the length),
    /// <paramref name="tokenTypeIds"/>[S],
    /// <paramref name="maskedPositions"/>[P] and <paramref name="maskedIds"/>[P] (0 after the count).
    /// Values are validated (length ≤ S, count ≤ P, ids &lt; vocab size, positions &lt; length).
    /// </summary>
    public InstanceInfo Read(Span<int> inputIds, Span<int> tokenTypeIds, Span<int> maskedPositions, Span<int> maskedIds, long index)
    {
        var r = Record(index);
        var layout = _layout;
        int s = layout.SeqLength, p = layout.MaxPredictions;
        if (inputIds.Length < s || tokenTypeIds.Length < s || maskedPositions.Length < p || maskedIds.Length < p)
            throw new ArgumentException($"destination spans must hold S = {s} and P = {p} elements");
        int length = BinaryPrimitives.ReadUInt16LittleEndian(r[layout.LengthOffset..]);
        int count = BinaryPrimitives.ReadUInt16LittleEndian(r[layout.MaskedCountOffset..]);
        int nsp = r[layout.NspOffset];
        if (length < 3 || length > s) throw Bad(index, "input_length", length, $"must be in [3, {s}]");
        if (count > p || count > length) throw Bad(index, "masked_count", count, $"must be ≤ {Math.Min(p, length)}");
        if (nsp > 1) throw Bad(index, "nsp_label", nsp, "must be 0 or 1");
        int vocab = Header.VocabSize;
        if (layout.TokenBytes == 2)
        {
            for (int i = 0; i < s; i++) inputIds[i] = BinaryPrimitives.ReadUInt16LittleEndian(r[(2 * i)..]);
        }
        else
        {
            for (int i = 0; i < s; i++) inputIds[i] = BinaryPrimitives.ReadInt32LittleEndian(r[(4 * i)..]);
        }
        for (int i = 0; i < s; i++)
            if ((uint)inputIds[i] >= (uint)vocab) throw Bad(index, $"input_ids[{i}]", inputIds[i], $"must be < vocab_size {vocab}");
        var bits = r[layout.SegmentBitsOffset..];
        for (int i = 0; i < s; i++) tokenTypeIds[i] = (bits[i >> 3] >> (i & 7)) & 1;
        for (int j = 0; j < p; j++)
        {
            int pos = BinaryPrimitives.ReadUInt16LittleEndian(r[(layout.MaskedPositionsOffset + 2 * j)..]);
            int id = layout.ReadToken(r, layout.MaskedIdsOffset + layout.TokenBytes * j);
            if (j < count)
            {
                if (pos >= length) throw Bad(index, $"masked_positions[{j}]", pos, $"must be < input_length {length}");
                if ((uint)id >= (uint)vocab) throw Bad(index, $"masked_ids[{j}]", id, $"must be < vocab_size {vocab}");
            }
            maskedPositions[j] = pos;
            maskedIds[j] = id;
        }
        return new InstanceInfo(length, count, nsp);
    }

    private ShardFormatException Bad(long index, string field, long value, string problem) =>
        new(Path, $"record {index} {field}", value.ToString(), problem);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view?.SafeMemoryMappedViewHandle.ReleasePointer();
        _view?.Dispose();
        _file?.Dispose();
    }
}
