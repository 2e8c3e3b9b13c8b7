using Bert.Runtime.IO;

namespace Bert.Runtime.Data;

/// <summary>
/// Writes one shard: records stream to a temporary file beside the destination while their checksum
/// accumulates; <see cref="Commit"/> writes the final header, flushes to disk and renames. Disposing
/// without committing deletes the temporary file. File operations go through an
/// <see cref="IFileSystem"/> (the physical one by default) so tests can fill the disk.
/// </summary>
public sealed class ShardWriter : IDisposable
{
    private readonly IFileSystem _fs;
    private readonly Stream _stream;
    private readonly XxHash64 _checksum = new();
    private readonly ShardHeader _template;
    private readonly string _tempPath;
    private bool _done;

    /// <param name="fileSystem">Where to write; its <see cref="IFileSystem.CreateNew"/> streams must be seekable
    /// (the header is written last, at offset 0). Default: the physical file system.</param>
    public ShardWriter(string path, ulong vocabHash, int vocabSize, int seqLength, int maxPredictions, int flags = 0,
        IFileSystem? fileSystem = null)
    {
        _fs = fileSystem ?? PhysicalFileSystem.Instance;
        Path = System.IO.Path.GetFullPath(path);
        _template = new ShardHeader(vocabHash, vocabSize, seqLength, maxPredictions, ShardLayout.TokenBytesFor(vocabSize), flags, 0, 0);
        Layout = _template.Layout;
        _tempPath = AtomicFile.TempName(Path);
        _stream = _fs.CreateNew(_tempPath);
        try
        {
            if (!_stream.CanSeek) throw new ArgumentException("the file system's streams must be seekable", nameof(fileSystem));
            _stream.Write(new byte[ShardHeader.Size]);
        }
        catch
        {
            _done = true;
            _stream.Dispose();
            TryDelete(_fs, _tempPath);
            throw;
        }
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
        var header = _template with { RecordCount = Count, RecordsChecksum = _checksum.Digest() };
        Span<byte> bytes = stackalloc byte[ShardHeader.Size];
        header.WriteTo(bytes);
        _stream.Position = 0;
        _stream.Write(bytes);
        _fs.FlushToDisk(_stream);
        _stream.Dispose();
        _done = true;
        try
        {
            _fs.MoveFile(_tempPath, Path);
        }
        catch
        {
            TryDelete(_fs, _tempPath);
            throw;
        }
    }

    public void Dispose()
    {
        if (_done) return;
        _done = true;
        try
        {
            _stream.Dispose();
        }
        catch (IOException)
        {
            // Closing flushes the buffer, which fails again on a full disk; the temp file goes either way.
        }
        TryDelete(_fs, _tempPath);
    }

    private static void TryDelete(IFileSystem fs, string path)
    {
        try
        {
            if (fs.FileExists(path)) fs.DeleteFile(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
