using System.Text;

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
        catch
        {
            TryDelete(temp);
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
/// cancelled run leaves nothing partial behind.
/// </summary>
public sealed class AtomicDirectory : IDisposable
{
    private bool _committed;

    /// <param name="destination">The directory to create or replace. An existing one is replaced
    /// only when it holds nothing but files named by <paramref name="replaceable"/>.</param>
    /// <param name="replaceable">Which existing files may be discarded (for example shards and stats.json).</param>
    public AtomicDirectory(string destination, Func<string, bool> replaceable)
    {
        Destination = Path.GetFullPath(destination);
        if (Directory.Exists(Destination))
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(Destination))
            {
                if (Directory.Exists(entry) || !replaceable(Path.GetFileName(entry)))
                    throw new IOException($"{Destination}: refusing to replace a directory that holds '{Path.GetFileName(entry)}', which this command did not write; choose another output directory");
            }
        }
        string parent = Path.GetDirectoryName(Destination)!;
        Directory.CreateDirectory(parent);
        TempPath = AtomicFile.TempName(Destination);
        Directory.CreateDirectory(TempPath);
    }

    public string Destination { get; }

    /// <summary>Where to write the files until <see cref="Commit"/>.</summary>
    public string TempPath { get; }

    /// <summary>Moves the finished directory into place, replacing an older one.</summary>
    public void Commit()
    {
        string? old = null;
        if (Directory.Exists(Destination))
        {
            old = AtomicFile.TempName(Destination) + ".old";
            Directory.Move(Destination, old);
        }
        Directory.Move(TempPath, Destination);
        _committed = true;
        if (old != null) Directory.Delete(old, recursive: true);
    }

    public void Dispose()
    {
        if (_committed) return;
        try
        {
            if (Directory.Exists(TempPath)) Directory.Delete(TempPath, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
