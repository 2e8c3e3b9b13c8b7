using System.Security.Cryptography;

namespace Bert.Runtime.IO;

/// <summary>
/// Crash-safe file replacement: write "&lt;name&gt;.tmp-&lt;random&gt;" beside the target, fsync it, rename it
/// over the target, fsync the directory. A reader sees the old file or the new one, never a torn one;
/// on failure the temp file is removed and the old target is left as it was. A crash (power loss,
/// kill -9) can leave a temp file behind: <see cref="CleanStale"/> removes those.
/// </summary>
public static class AtomicFile
{
    /// <summary>The marker in every temp name; stale-file cleanup matches "*.tmp-*".</summary>
    public const string TempMarker = ".tmp-";

    /// <summary>A fresh temp path beside <paramref name="path"/>: "&lt;path&gt;.tmp-&lt;8 hex digits&gt;".</summary>
    public static string TempPath(string path) =>
        path.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar)
        + TempMarker + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));

    /// <summary>Atomically replaces (or creates) <paramref name="path"/> with what <paramref name="write"/> writes.</summary>
    /// <exception cref="DiskFullException">The volume filled up; the old file is unchanged.</exception>
    public static void Write(IFileSystem fs, string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(fs);
        ArgumentNullException.ThrowIfNull(write);
        string full = Target(path);
        string directory = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{path}' has no directory", nameof(path));
        string temp = TempPath(full);
        try
        {
            WriteDurable(fs, temp, write);
            fs.MoveFile(temp, full);
        }
        catch (Exception e)
        {
            TryDeleteFile(fs, temp);
            if (DiskFull.Is(e) && e is not DiskFullException)
                throw new DiskFullException(full,
                    $"cannot write '{full}': no space left on device; the previous file (if any) is unchanged", e);
            // The OS names the temp file; the user named the target.
            if (e is DirectoryNotFoundException)
                throw new IOException($"cannot write '{full}': the directory '{directory}' does not exist", e);
            if (e is UnauthorizedAccessException)
                throw new UnauthorizedAccessException($"cannot write '{full}': permission denied in '{directory}'", e);
            // ENOENT although the directory exists (a directory that takes no new files, such as /proc): not a
            // missing input, which is what a FileNotFoundException means to callers.
            if (e is FileNotFoundException)
                throw new IOException($"cannot write '{full}': no file can be created in '{directory}'", e);
            if (e is IOException && e.Message.Contains(temp, StringComparison.Ordinal))
                throw new IOException($"cannot write '{full}': {e.Message.Replace(temp, full, StringComparison.Ordinal)}", e);
            throw;
        }
        fs.FlushDirectory(directory);
    }

    /// <summary>The file an atomic write of <paramref name="path"/> replaces: a symlink's final target
    /// (so the link stays a link and the temp file lands beside the target, on its volume), else the
    /// path itself.</summary>
    /// <exception cref="IOException">The path is a directory, a device, a pipe or a socket: replacing
    /// it with a regular file would destroy it.</exception>
    public static string Target(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            if (new FileInfo(full).LinkTarget is not null && File.ResolveLinkTarget(full, returnFinalTarget: true) is { } target)
                full = Path.GetFullPath(target.FullName);
        }
        catch (IOException)
        {
            // A link loop: left to the write itself, which reports it on the path given.
        }
        if (Directory.Exists(full))
            throw new IOException($"cannot write '{path}': it is a directory; give a file path");
        if (PhysicalFileSystem.IsRegularFile(full) == false)
            throw new IOException($"cannot write '{path}': it is not a regular file (a device, pipe or socket); give a file path");
        return full;
    }

    /// <summary>Creates <paramref name="path"/> (which must not exist), writes it and fsyncs it.
    /// Not atomic by itself: used for files inside a temp directory that is renamed afterwards.</summary>
    public static void WriteDurable(IFileSystem fs, string path, Action<Stream> write)
    {
        using var stream = fs.CreateNew(path);
        write(stream);
        fs.FlushToDisk(stream);
    }

    /// <summary>Deletes stale temp files and directories ("*.tmp-*") left in <paramref name="directory"/>
    /// by a crashed writer. Call it only when no other writer is using the directory.</summary>
    /// <returns>How many entries were removed.</returns>
    public static int CleanStale(IFileSystem fs, string directory)
    {
        ArgumentNullException.ThrowIfNull(fs);
        if (!fs.DirectoryExists(directory)) return 0;
        int removed = 0;
        foreach (var f in fs.EnumerateFiles(directory, "*" + TempMarker + "*"))
        {
            fs.DeleteFile(f);
            removed++;
        }
        foreach (var d in fs.EnumerateDirectories(directory, "*" + TempMarker + "*"))
        {
            fs.DeleteDirectory(d);
            removed++;
        }
        if (removed > 0) fs.FlushDirectory(directory);
        return removed;
    }

    internal static void TryDeleteFile(IFileSystem fs, string path)
    {
        try
        {
            if (fs.FileExists(path)) fs.DeleteFile(path);
        }
        catch (Exception)
        {
            // Best effort: the original failure is what the caller must see; CleanStale removes it later.
        }
    }

    internal static void TryDeleteDirectory(IFileSystem fs, string path)
    {
        try
        {
            if (fs.DirectoryExists(path)) fs.DeleteDirectory(path);
        }
        catch (Exception)
        {
            // Best effort, as above.
        }
    }
}
