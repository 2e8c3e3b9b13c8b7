namespace Bert.Runtime.Data;

/// <summary>
/// Writes one shard: records stream to a temporary file beside the destination while their checksum
/// accumulates; <see cref="Commit"/> writes the final header, flushes to disk and renames. Disposing
/// without committing deletes the temporary file.
/// </summary>
public sealed class ShardWriter : IDisposable
{
    private readonly FileStream _stream;
    private readonly XxHash64 _checksum = new();
    private readonly ShardHeader _template;
    private readonly string _tempPath;
    private bool _done;

    public ShardWriter(string path, ulong vocabHash, int vocabSize, int seqLength, int maxPredictions, int flags = 0)
    {
        Path = System.IO.Path.GetFullPath(path);
        _template = new ShardHeader(vocabHash, vocabSize, seqLength, maxPredictions, ShardLayout.TokenBytesFor(vocabSize), flags, 0, 0);
        Layout = _template.Layout;
        _tempPath = AtomicFile.TempName(Path);
        _stream = new FileStream(_tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        _stream.Write(new byte[ShardHeader.Size]);
    }

    public string Path { get; }

    public ShardLayout Layout { get; }

    public long Count { get; private set; }

    /// <summary>Appends whole records (a multiple of the record size).</summary>
    public void Append(ReadOnlySpan<byte> records)
    {
        ObjectDisposedException.ThrowIf(_done, this);
        if (records.Length % Layout.RecordSize != 0)
            throw new ArgumentException($"{records.Length} bytes is not a whole number of {Layout.RecordSize}-byte records", nameof(records));
        _stream.Write(records);
        _checksum.Append(records);
        Count += records.Length / Layout.RecordSize;
    }

    /// <summary>Finishes the file and renames it into place.</summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_done, this);
        var header = _template with { RecordCount = Count, RecordsChecksum = _checksum.GetCurrentHash() };
        Span<byte> bytes = stackalloc byte[ShardHeader.Size];
        header.WriteTo(bytes);
        _stream.Position = 0;
        _stream.Write(bytes);
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(_tempPath, Path, overwrite: true);
        _done = true;
    }

    public void Dispose()
    {
        if (_done) return;
        _done = true;
        _stream.Dispose();
        AtomicFile.TryDelete(_tempPath);
    }
}
