using System.Text;
using Bert.Runtime.IO;

namespace Bert.Runtime.Data;

/// <summary>
/// Writes that are all or nothing: the content goes to a temporary name in the destination's
/// directory, is flushed to disk, then renamed over the destination. A crash or an exception leaves
/// either the old file or the new one, never a torn one, and no temporary file behind.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> atomically.</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = TempName(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e)
        {
            TryDelete(temp);
            if (DiskFull.Is(e) && e is not DiskFullException)
                throw new DiskFullException(full, $"cannot write '{full}': no space left on device; the previous file (if any) is unchanged", e);
            throw;
        }
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(new UTF8Encoding(false).GetBytes(text)));

    /// <summary>A hidden name beside <paramref name="fullPath"/>: ".name.tmp-XXXXXXXX".</summary>
    internal static string TempName(string fullPath) =>
        Path.Combine(Path.GetDirectoryName(fullPath)!,
            $".{Path.GetFileName(fullPath)}.tmp-{Random.Shared.Next():x8}");

    internal static void TryDelete(string path)
    {
        try
        {
            if (File.Exists(path)) File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>
/// A directory built under a temporary name beside its destination and moved into place by
/// <see cref="Commit"/>. Disposing without committing deletes everything written, so a failed or
/// cancelled run leaves nothing partial behind. File operations go through an <see cref="IFileSystem"/>.
/// </summary>
public sealed class AtomicDirectory : IDisposable
{
    private readonly IFileSystem _fs;
    private bool _committed;

    /// <param name="destination">The directory to create or replace. An existing one is replaced
    /// only when it holds nothing but files named by <paramref name="replaceable"/>.</param>
    /// <param name="replaceable">Which existing files may be discarded (for example shards and stats.json).</param>
    /// <param name="fileSystem">Default: the physical file system.</param>
    public AtomicDirectory(string destination, Func<string, bool> replaceable, IFileSystem? fileSystem = null)
    {
        _fs = fileSystem ?? PhysicalFileSystem.Instance;
        Destination = Path.GetFullPath(destination);
        if (_fs.DirectoryExists(Destination))
        {
            var dirs = _fs.EnumerateDirectories(Destination, "*");
            if (dirs.Count > 0)
                throw new IOException($"{Destination}: refusing to replace a directory that holds '{Path.GetFileName(dirs[0])}', which this command did not write; choose another output directory");
            foreach (var entry in _fs.EnumerateFiles(Destination, "*"))
            {
                if (!replaceable(Path.GetFileName(entry)))
                    throw new IOException($"{Destination}: refusing to replace a directory that holds '{Path.GetFileName(entry)}', which this command did not write; choose another output directory");
            }
        }
        string parent = Path.GetDirectoryName(Destination)!;
        _fs.CreateDirectory(parent);
        TempPath = AtomicFile.TempName(Destination);
        _fs.CreateDirectory(TempPath);
    }

    public string Destination { get; }

    /// <summary>Where to write the files until <see cref="Commit"/>.</summary>
    public string TempPath { get; }

    /// <summary>Moves the finished directory into place, replacing an older one.</summary>
    public void Commit()
    {
        string parent = Path.GetDirectoryName(Destination)!;
        // The files are on disk (each writer fsyncs); make their names durable before the rename publishes them.
        _fs.FlushDirectory(TempPath);
        string? old = null;
        if (_fs.DirectoryExists(Destination))
        {
            old = AtomicFile.TempName(Destination) + ".old";
            _fs.MoveDirectory(Destination, old);
        }
        try
        {
            _fs.MoveDirectory(TempPath, Destination);
        }
        catch
        {
            if (old != null) TryMoveBack(old);
            throw;
        }
        _committed = true;
        _fs.FlushDirectory(parent);
        if (old != null) _fs.DeleteDirectory(old);
    }

    private void TryMoveBack(string old)
    {
        try
        {
            _fs.MoveDirectory(old, Destination);
        }
        catch (IOException)
        {
            // The older dataset stays under its temp name; the caller sees the original failure.
        }
    }

    public void Dispose()
    {
        if (_committed) return;
        try
        {
            if (_fs.DirectoryExists(TempPath)) _fs.DeleteDirectory(TempPath);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
