using Bert.Runtime.IO;

namespace Bert.Cli;

/// <summary>Refuses an output that would overwrite a command's own input: the same file or directory,
/// or an output inside an input directory (e.g. `export --out` pointed at the checkpoint it reads,
/// which once replaced its fp32 weights with bf16; a `latest` pointer counts as the step directory it names). Paths are compared after resolving symlinks.</summary>
internal static class OutputPaths
{
    /// <exception cref="UserException">The output overlaps one of the inputs (exit 2).</exception>
    public static void RefuseOverlap(string outputOption, string output, params (string Option, string? Path)[] inputs)
    {
        string o = Canonical(output);
        foreach (var (option, path) in inputs)
        {
            if (string.IsNullOrEmpty(path)) continue;
            string i = Canonical(path);
            // A checkpoint's "latest" pointer file stands for the step directory it names.
            if (Path.GetFileName(i) == CheckpointWriter.LatestFile && File.Exists(i))
            {
                try
                {
                    i = Canonical(CheckpointReader.ResolvePointer(PhysicalFileSystem.Instance, i));
                }
                catch (CheckpointFormatException)
                {
                    // Not a pointer: the reader reports it; compared as written.
                }
            }
            bool same = string.Equals(o, i, StringComparison.Ordinal);
            bool inside = o.StartsWith(i.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal)
                && Directory.Exists(i);
            if (same || inside)
                throw new UserException(
                    $"{outputOption} {output}: {(same ? "is" : "lies inside")} the input {option} {path}; writing there would overwrite what is read; choose another {outputOption}",
                    ExitCodes.Usage);
        }
    }

    /// <summary>The absolute path with every symlink among its existing components resolved.</summary>
    internal static string Canonical(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        if (full.Length == 0) return Path.DirectorySeparatorChar.ToString();
        string root = Path.GetPathRoot(full) ?? "";
        string current = root;
        var parts = full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        for (int k = 0; k < parts.Length; k++)
        {
            string next = Path.Combine(current, parts[k]);
            try
            {
                FileSystemInfo info = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
                if (info.Exists && info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target)
                    next = Canonical(target.FullName);
            }
            catch (IOException)
            {
                // A link loop: compared as written.
            }
            current = next;
        }
        return current;
    }
}
