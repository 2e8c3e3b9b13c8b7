using Bert.Runtime.IO;

namespace Bert.Tests.IO;

/// <summary>Thrown by <see cref="FaultInjectingFileSystem"/> at the operation chosen to "crash" at.</summary>
public sealed class SimulatedCrashException(int operation, string what)
    : Exception($"simulated crash at file-system operation #{operation} ({what})")
{
    public int Operation { get; } = operation;
}

/// <summary>
/// A file system over the real one that can fail on purpose:
/// <list type="bullet">
/// <item>a crash: operation #<see cref="CrashAtOperation"/> throws, and so does every later one, as if
/// the process had died there (nothing the writer does afterwards, cleanup included, reaches the disk);</item>
/// <item>a full disk: after <see cref="DiskFullAfterBytes"/> bytes written in total, writes throw the
/// IOException an OS gives for ENOSPC.</item>
/// </list>
/// Every method call and every stream Write/Flush counts as one operation, so a test can walk the
/// crash point across a whole save.
/// </summary>
public sealed class FaultInjectingFileSystem(IFileSystem inner) : IFileSystem
{
    private bool _dead;

    public FaultInjectingFileSystem() : this(PhysicalFileSystem.Instance) { }

    /// <summary>Index (0-based) of the operation that crashes; null: never.</summary>
    public int? CrashAtOperation { get; set; }
    /// <summary>Total bytes the disk accepts before ENOSPC; null: unlimited.</summary>
    public long? DiskFullAfterBytes { get; set; }
    /// <summary>What <see cref="AvailableFreeSpace"/> reports; null: unknown.</summary>
    public long? ReportedFreeSpace { get; set; }

    public int Operations { get; private set; }
    public long BytesWritten { get; private set; }
    public bool Crashed => _dead;
    /// <summary>One line per operation, for a failing test's message.</summary>
    public List<string> Log { get; } = [];

    private void Step(string what)
    {
        if (_dead) throw new SimulatedCrashException(Operations, "after the crash: " + what);
        Log.Add($"#{Operations} {what}");
        if (CrashAtOperation == Operations)
        {
            _dead = true;
            throw new SimulatedCrashException(Operations, what);
        }
        Operations++;
    }

    private void CountBytes(int count, string path)
    {
        if (DiskFullAfterBytes is long limit && BytesWritten + count > limit)
        {
            BytesWritten = limit;
            throw new IOException($"No space left on device : '{path}'", DiskFull.HResult);
        }
        BytesWritten += count;
    }

    public Stream CreateNew(string path)
    {
        Step($"create {path}");
        return new FaultStream(this, inner.CreateNew(path), path);
    }

    public Stream OpenRead(string path)
    {
        Step($"open {path}");
        return inner.OpenRead(path);
    }

    public void FlushToDisk(Stream stream)
    {
        var fault = (FaultStream)stream;
        Step($"fsync {fault.Path}");
        inner.FlushToDisk(fault.Inner);
    }

    public void MoveFile(string source, string destination)
    {
        Step($"rename {source} -> {destination}");
        inner.MoveFile(source, destination);
    }

    public void MoveDirectory(string source, string destination)
    {
        Step($"rename-dir {source} -> {destination}");
        inner.MoveDirectory(source, destination);
    }

    public void CreateDirectory(string path)
    {
        Step($"mkdir {path}");
        inner.CreateDirectory(path);
    }

    public void DeleteFile(string path)
    {
        Step($"unlink {path}");
        inner.DeleteFile(path);
    }

    public void DeleteDirectory(string path)
    {
        Step($"rmdir -r {path}");
        inner.DeleteDirectory(path);
    }

    public bool FileExists(string path)
    {
        Step($"exists {path}");
        return inner.FileExists(path);
    }

    public bool DirectoryExists(string path)
    {
        Step($"dir-exists {path}");
        return inner.DirectoryExists(path);
    }

    public long FileLength(string path)
    {
        Step($"stat {path}");
        return inner.FileLength(path);
    }

    public IReadOnlyList<string> EnumerateFiles(string directory, string pattern)
    {
        Step($"list {directory}/{pattern}");
        return inner.EnumerateFiles(directory, pattern);
    }

    public IReadOnlyList<string> EnumerateDirectories(string directory, string pattern)
    {
        Step($"list-dirs {directory}/{pattern}");
        return inner.EnumerateDirectories(directory, pattern);
    }

    public void FlushDirectory(string directory)
    {
        Step($"fsync-dir {directory}");
        inner.FlushDirectory(directory);
    }

    public long? AvailableFreeSpace(string path)
    {
        Step($"statfs {path}");
        return ReportedFreeSpace;
    }

    private sealed class FaultStream(FaultInjectingFileSystem owner, Stream inner, string path) : Stream
    {
        public Stream Inner { get; } = inner;
        public string Path { get; } = path;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Inner.Length;
        public override long Position { get => Inner.Position; set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            owner.Step($"write {buffer.Length} bytes to {Path}");
            owner.CountBytes(buffer.Length, Path);
            Inner.Write(buffer);
        }

        public override void Flush()
        {
            owner.Step($"flush {Path}");
            Inner.Flush();
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            // Closing the handle is not a file-system step: a dead process's descriptors close too.
            if (disposing) Inner.Dispose();
            base.Dispose(disposing);
        }
    }
}

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory(string? name = null)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "bert-io-tests", (name ?? "t") + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A test that failed may still hold a handle; the OS temp cleaner gets it.
        }
    }
}
