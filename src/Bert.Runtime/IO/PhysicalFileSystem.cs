using System.Runtime.InteropServices;

namespace Bert.Runtime.IO;

/// <summary>The real file system. Renames are rename(2) on Unix (atomic within a volume); directory
/// fsync opens the directory read-only and fsyncs it, as POSIX requires for a rename to be durable.</summary>
public sealed partial class PhysicalFileSystem : IFileSystem
{
    public static readonly PhysicalFileSystem Instance = new();

    private const int WriteBufferBytes = 1 << 20;

    public Stream CreateNew(string path) =>
        new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, WriteBufferBytes, FileOptions.None);

    public Stream OpenRead(string path) =>
        new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, WriteBufferBytes, FileOptions.SequentialScan);

    public void FlushToDisk(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (stream is FileStream fs) fs.Flush(flushToDisk: true);
        else stream.Flush();
    }

    public void MoveFile(string source, string destination) => File.Move(source, destination, overwrite: true);

    public void MoveDirectory(string source, string destination) => Directory.Move(source, destination);

    public void CreateDirectory(string path) => Directory.CreateDirectory(path);

    public void DeleteFile(string path) => File.Delete(path);

    public void DeleteDirectory(string path) => Directory.Delete(path, recursive: true);

    public bool FileExists(string path) => File.Exists(path);

    public bool DirectoryExists(string path) => Directory.Exists(path);

    public long FileLength(string path) => new FileInfo(path).Length;

    public IReadOnlyList<string> EnumerateFiles(string directory, string pattern) =>
        Directory.Exists(directory) ? Directory.GetFiles(directory, pattern) : [];

    public IReadOnlyList<string> EnumerateDirectories(string directory, string pattern) =>
        Directory.Exists(directory) ? Directory.GetDirectories(directory, pattern) : [];

    public void FlushDirectory(string directory)
    {
        if (OperatingSystem.IsWindows()) return;  // NTFS journals renames; no directory handle to flush
        int fd = Open(directory, ORdOnly | ODirectory);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"cannot open directory '{directory}' to flush it (errno {errno})", errno);
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                // Some file systems (and /proc-like mounts) do not support fsync on directories.
                if (errno != Einval && errno != Enotsup)
                    throw new IOException($"cannot flush directory '{directory}' (errno {errno})", errno);
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    public long? AvailableFreeSpace(string path)
    {
        try
        {
            var full = Path.GetFullPath(path);
            while (!Directory.Exists(full))
            {
                var parent = Path.GetDirectoryName(full);
                if (parent is null) return null;
                full = parent;
            }
            return new DriveInfo(full).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>What kind of entry <paramref name="path"/> is (following symlinks): null when absent
    /// (or when the platform cannot tell), else whether it is a regular file.</summary>
    public static bool? IsRegularFile(string path)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path) ? true : null;
        Span<byte> buffer = stackalloc byte[256];  // struct statx: the same layout on every Linux architecture
        if (Statx(AtFdCwd, path, 0, StatxType, ref buffer[0]) != 0) return null;
        ushort mode = BitConverter.ToUInt16(buffer[28..30]);
        return (mode & 0xF000) == 0x8000;
    }

    private const int AtFdCwd = -100;
    private const uint StatxType = 1;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, ref byte statxbuf);

    private const int ORdOnly = 0;
    private static int ODirectory => OperatingSystem.IsLinux() ? 0x10000 : 0x100000;  // Linux / macOS
    private const int Einval = 22;
    private static int Enotsup => OperatingSystem.IsLinux() ? 95 : 45;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
