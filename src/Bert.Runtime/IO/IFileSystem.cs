namespace Bert.Runtime.IO;

/// <summary>
/// The file operations that crash-safe writing needs, behind one seam so tests can inject faults
/// (a full disk, a crash between two writes). Paths are ordinary OS paths. Every method may throw
/// <see cref="IOException"/>; a full disk surfaces as an IOException that <see cref="DiskFull.Is"/>
/// recognizes.
/// </summary>
public interface IFileSystem
{
    /// <summary>Creates a new file for writing; fails if it exists (so two writers never share a temp name).</summary>
    Stream CreateNew(string path);

    Stream OpenRead(string path);

    /// <summary>Flushes the stream's buffers and the OS cache to the device (fsync).</summary>
    void FlushToDisk(Stream stream);

    /// <summary>Renames a file, atomically replacing <paramref name="destination"/> when it exists.</summary>
    void MoveFile(string source, string destination);

    /// <summary>Renames a directory; <paramref name="destination"/> must not exist.</summary>
    void MoveDirectory(string source, string destination);

    void CreateDirectory(string path);

    void DeleteFile(string path);

    void DeleteDirectory(string path);

    bool FileExists(string path);

    bool DirectoryExists(string path);

    long FileLength(string path);

    /// <summary>Full paths of the files in <paramref name="directory"/> matching a '*' pattern (not recursive).</summary>
    IReadOnlyList<string> EnumerateFiles(string directory, string pattern);

    /// <summary>Full paths of the sub-directories matching a '*' pattern (not recursive).</summary>
    IReadOnlyList<string> EnumerateDirectories(string directory, string pattern);

    /// <summary>Makes a rename or create inside <paramref name="directory"/> durable (fsync of the
    /// directory). A no-op where the OS offers no way to do it.</summary>
    void FlushDirectory(string directory);

    /// <summary>Bytes free for this user on the volume holding <paramref name="path"/>; null when unknown.</summary>
    long? AvailableFreeSpace(string path);
}

/// <summary>Recognizes and reports "no space left on device".</summary>
public static class DiskFull
{
    /// <summary>Linux errno ENOSPC, which .NET puts in <see cref="Exception.HResult"/> of the IOException.</summary>
    public const int Enospc = 28;
    /// <summary>macOS/BSD ENOSPC is also 28; Windows reports HRESULT_FROM_WIN32(ERROR_DISK_FULL).</summary>
    public const int WindowsDiskFull = unchecked((int)0x80070070);
    public const int WindowsHandleDiskFull = unchecked((int)0x80070027);

    /// <summary>The HResult this OS gives a full-disk IOException.</summary>
    public static int HResult => OperatingSystem.IsWindows() ? WindowsDiskFull : Enospc;

    public static bool Is(Exception e) =>
        e is DiskFullException
        || e is IOException { HResult: Enospc or WindowsDiskFull or WindowsHandleDiskFull };
}

/// <summary>A write failed because the volume is full. The previous version of the target is intact.</summary>
public sealed class DiskFullException : IOException
{
    public DiskFullException(string path, string message, Exception? inner = null)
        : base(message, inner)
    {
        Path = path;
        HResult = DiskFull.HResult;
    }

    /// <summary>The file or directory that could not be written.</summary>
    public string Path { get; }
}
