using Bert.Runtime.IO;

namespace Bert.Tests.Reliability;

/// <summary>
/// The physical file system with a volume that fills up: once <see cref="CapacityBytes"/> bytes have
/// been written in total, every write throws the IOException the OS gives for ENOSPC (a write that
/// does not fit is partly written first, as write(2) does). Streams stay seekable, as shard writing
/// needs. <see cref="ReportedFreeSpace"/> is what a free-space query returns.
/// </summary>
internal sealed class DiskFullFileSystem(long? capacityBytes) : IFileSystem
{
    private readonly IFileSystem _inner = PhysicalFileSystem.Instance;

    public long? CapacityBytes { get; } = capacityBytes;
    public long BytesWritten { get; private set; }
    public long? ReportedFreeSpace { get; init; }
    public int FullErrors { get; private set; }

    public Stream CreateNew(string path) => new LimitedStream(this, _inner.CreateNew(path), path);
    public Stream OpenRead(string path) => _inner.OpenRead(path);

    public void FlushToDisk(Stream stream)
    {
        var limited = (LimitedStream)stream;
        limited.Flush();
        _inner.FlushToDisk(limited.Inner);
    }

    public void MoveFile(string source, string destination) => _inner.MoveFile(source, destination);
    public void MoveDirectory(string source, string destination) => _inner.MoveDirectory(source, destination);
    public void CreateDirectory(string path) => _inner.CreateDirectory(path);
    public void DeleteFile(string path) => _inner.DeleteFile(path);
    public void DeleteDirectory(string path) => _inner.DeleteDirectory(path);
    public bool FileExists(string path) => _inner.FileExists(path);
    public bool DirectoryExists(string path) => _inner.DirectoryExists(path);
    public long FileLength(string path) => _inner.FileLength(path);
    public IReadOnlyList<string> EnumerateFiles(string directory, string pattern) => _inner.EnumerateFiles(directory, pattern);
    public IReadOnlyList<string> EnumerateDirectories(string directory, string pattern) => _inner.EnumerateDirectories(directory, pattern);
    public void FlushDirectory(string directory) => _inner.FlushDirectory(directory);
    public long? AvailableFreeSpace(string path) => ReportedFreeSpace;

    /// <summary>How many of <paramref name="count"/> bytes still fit; throws when none do.</summary>
    private int Admit(int count, string path)
    {
        if (CapacityBytes is not long capacity) return count;
        long room = capacity - BytesWritten;
        if (room <= 0)
        {
            FullErrors++;
            throw new IOException($"No space left on device : '{path}'", DiskFull.HResult);
        }
        return (int)Math.Min(room, count);
    }

    private sealed class LimitedStream(DiskFullFileSystem owner, Stream inner, string path) : Stream
    {
        public Stream Inner { get; } = inner;

        public override bool CanRead => false;
        public override bool CanSeek => Inner.CanSeek;
        public override bool CanWrite => true;
        public override long Length => Inner.Length;
        public override long Position { get => Inner.Position; set => Inner.Position = value; }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            while (!buffer.IsEmpty)
            {
                int n = owner.Admit(buffer.Length, path);
                Inner.Write(buffer[..n]);
                owner.BytesWritten += n;
                buffer = buffer[n..];
            }
        }

        public override void Flush() => Inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => Inner.Seek(offset, origin);
        public override void SetLength(long value) => Inner.SetLength(value);

        protected override void Dispose(bool disposing)
        {
            if (disposing) Inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
