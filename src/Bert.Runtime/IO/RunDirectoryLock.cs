using System.Globalization;

namespace Bert.Runtime.IO;

/// <summary>Thrown when another process holds the lock of an output directory.</summary>
public sealed class DirectoryLockedException(string directory, string message) : IOException(message)
{
    public string Directory { get; } = directory;
}

/// <summary>
/// An exclusive lock on an output directory (a run, a fine-tuning output, a dataset), held from
/// <see cref="Acquire"/> until <see cref="Dispose"/> or process exit: an advisory lock (flock on Unix,
/// a share-none open on Windows) on "DIR/.lock". The kernel drops it when the holder dies, so a crashed
/// run never leaves a stale lock. The holder's PID and command go to "DIR/.lock.owner" (written after
/// the lock is taken) so a second process can say who holds it. A directory the lock created and
/// nothing else wrote into is removed again on <see cref="Dispose"/>.
/// </summary>
public sealed class RunDirectoryLock : IDisposable
{
    public const string LockFile = ".lock";
    public const string OwnerFile = ".lock.owner";

    private readonly FileStream _stream;

    private readonly bool _created;

    private RunDirectoryLock(string directory, FileStream stream, bool created)
    {
        Directory = directory;
        _stream = stream;
        _created = created;
    }

    public string Directory { get; }

    /// <summary>Creates <paramref name="directory"/> if needed and locks it.</summary>
    /// <param name="what">What the caller is doing, for the owner file ("pretrain", "prepare"...).</param>
    /// <exception cref="DirectoryLockedException">Another process (or another lock in this one) holds it.</exception>
    /// <param name="option">The option that named the directory, for messages.</param>
    public static RunDirectoryLock Acquire(string directory, string what, string option = "--out")
    {
        string full = Path.GetFullPath(directory);
        bool created = !System.IO.Directory.Exists(full);
        try
        {
            System.IO.Directory.CreateDirectory(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && !DiskFull.Is(e))
        {
            // e.g. a path component is a file: .NET says "Could not find a part of the path", which
            // reads like a missing input; this is an output that cannot be created.
            throw new IOException($"{option} {directory}: cannot create the output directory ({e.Message})", e);
        }
        string lockPath = Path.Combine(full, LockFile);
        FileStream stream;
        try
        {
            // .NET takes flock(LOCK_EX | LOCK_NB) for FileShare.None on Unix.
            stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException && !DiskFull.Is(e))
        {
            string owner = "another process";
            try
            {
                string text = File.ReadAllText(Path.Combine(full, OwnerFile)).Trim();
                if (text.Length > 0 && text.Length < 300) owner = text;
            }
            catch (Exception)
            {
                // No owner file yet (the holder is just starting): the generic wording stays.
            }
            throw new DirectoryLockedException(full,
                $"{option} {full}: in use by {owner}; wait for it to finish (or stop it) or choose another output directory");
        }
        try
        {
            string owner = $"pid {Environment.ProcessId} ({what}, since {DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)} UTC)";
            AtomicFile.Write(PhysicalFileSystem.Instance, Path.Combine(full, OwnerFile),
                s => s.Write(System.Text.Encoding.UTF8.GetBytes(owner + "\n")));
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        return new RunDirectoryLock(full, stream, created);
    }

    public void Dispose()
    {
        try
        {
            File.Delete(Path.Combine(Directory, OwnerFile));
        }
        catch (Exception)
        {
            // Best effort: a stale owner file only words a later message; the lock itself is released below.
        }
        // A command that failed before writing anything leaves no directory behind: when this lock
        // created the directory and it holds nothing else, the lock file and the directory go.
        if (_created)
        {
            try
            {
                if (System.IO.Directory.EnumerateFileSystemEntries(Directory).All(e => Path.GetFileName(e) == LockFile))
                {
                    File.Delete(Path.Combine(Directory, LockFile));
                    System.IO.Directory.Delete(Directory, recursive: false);
                }
            }
            catch (Exception)
            {
                // Best effort: something else appeared in the directory; it stays.
            }
        }
        _stream.Dispose();
    }
}
