using System.Text;
using System.Text.RegularExpressions;

namespace Bert.Runtime.Data;

/// <summary>
/// The input files of a corpus: each argument is a file, a directory (every file under it, recursively,
/// hidden ones excluded) or a glob (`*`, `?`, `**`, e.g. `wiki/**/*.txt.gz`). Files ending in .gz are read
/// decompressed. The order is the arguments' order, each directory or glob in ordinal path order, with
/// duplicates dropped, so the same arguments always give the same corpus.
/// </summary>
public static class CorpusInputs
{
    /// <summary>The files the arguments name.</summary>
    /// <exception cref="FileNotFoundException">An argument names nothing (the message says which).</exception>
    public static IReadOnlyList<string> Expand(IEnumerable<string> arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        var files = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var argument in arguments)
        {
            ArgumentException.ThrowIfNullOrEmpty(argument);
            IEnumerable<string> found;
            if (argument.IndexOfAny(['*', '?']) >= 0) found = Glob(argument);
            else if (File.Exists(argument)) found = [Path.GetFullPath(argument)];
            else if (Directory.Exists(argument))
                found = Directory.EnumerateFiles(argument, "*", new EnumerationOptions
                    {
                        RecurseSubdirectories = true, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System, IgnoreInaccessible = false,
                    })
                    .Where(f => !Path.GetFileName(f).StartsWith('.'))
                    .Select(Path.GetFullPath).Order(StringComparer.Ordinal);
            else throw new FileNotFoundException($"{argument}: no such corpus file or directory", argument);
            int before = files.Count;
            foreach (var f in found)
                if (seen.Add(f)) files.Add(f);
            if (files.Count == before && !found.Any())
                throw new FileNotFoundException($"{argument}: matches no file", argument);
        }
        return files;
    }

    private static IEnumerable<string> Glob(string pattern)
    {
        // The longest leading directory without a wildcard is the root; the rest is matched under it:
        // `**` any number of directories, `*` any characters but '/', `?` one such character.
        string full = Path.GetFullPath(pattern.Replace('\\', '/')).Replace('\\', '/');
        var parts = full.Split('/');
        int first = Array.FindIndex(parts, p => p.IndexOfAny(['*', '?']) >= 0);
        string root = string.Join('/', parts[..first]);
        if (root.Length == 0) root = "/";
        if (!Directory.Exists(root)) return [];
        var regex = new StringBuilder("^");
        string rest = string.Join('/', parts[first..]);
        for (int i = 0; i < rest.Length; i++)
        {
            char c = rest[i];
            if (c == '*' && i + 1 < rest.Length && rest[i + 1] == '*')
            {
                bool slash = i + 2 < rest.Length && rest[i + 2] == '/';
                regex.Append(slash ? "(?:.*/)?" : ".*");
                i += slash ? 2 : 1;
            }
            else if (c == '*') regex.Append("[^/]*");
            else if (c == '?') regex.Append("[^/]");
            else regex.Append(Regex.Escape(c.ToString()));
        }
        var match = new Regex(regex.Append('$').ToString(), RegexOptions.CultureInvariant);
        bool recursive = rest.Contains('/') || rest.Contains("**", StringComparison.Ordinal);
        return Directory.EnumerateFiles(root, "*", new EnumerationOptions
            {
                RecurseSubdirectories = recursive, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System,
            })
            .Select(f => Path.GetFullPath(f))
            .Where(f => match.IsMatch(Path.GetRelativePath(root, f).Replace('\\', '/')) && !Path.GetFileName(f).StartsWith('.'))
            .Order(StringComparer.Ordinal);
    }

    /// <summary>Total bytes of the files (compressed size for .gz), for progress.</summary>
    public static long TotalBytes(IReadOnlyList<string> files) => files.Sum(f => new FileInfo(f).Length);
}

/// <summary>
/// Streams the documents of corpus files in the <see cref="CorpusFormat"/> given, one at a time, in file
/// order (a document never spans two files), holding one document in memory. Lines are trimmed; documents
/// without a sentence are dropped; invalid UTF-8 names the file and byte.
/// </summary>
public sealed class DocumentReader
{
    private readonly IReadOnlyList<string> _files;
    private readonly CorpusFormat _format;
    private long _doneBytes;

    public DocumentReader(IReadOnlyList<string> files, CorpusFormat format)
    {
        ArgumentNullException.ThrowIfNull(files);
        _files = files;
        _format = format;
        TotalBytes = CorpusInputs.TotalBytes(files);
    }

    /// <summary>Bytes of all the files (compressed for .gz).</summary>
    public long TotalBytes { get; }

    /// <summary>The files, in reading order.</summary>
    public IReadOnlyList<string> Files => _files;

    /// <summary>Bytes of the files read so far (safe to read from another thread).</summary>
    public long BytesRead => Interlocked.Read(ref _doneBytes);

    /// <summary>Characters of text (UTF-16, no line ends) of the documents returned so far.</summary>
    public long Chars { get; private set; }

    /// <summary>Each document's sentences.</summary>
    public IEnumerable<string[]> Documents(CancellationToken cancellationToken = default)
    {
        var current = new List<string>();
        var paragraph = new System.Text.StringBuilder();
        var ranges = new List<Range>();
        long before = 0;
        foreach (var path in _files)
        {
            using var reader = new Utf8LineReader(path, (p, f, v, m) => new CorpusFormatException(p, f, v, m));
            long lines = 0;
            while (reader.TryReadLine(out var line))
            {
                if ((++lines & 0xFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    Interlocked.Exchange(ref _doneBytes, before + reader.Position);
                }
                var text = line.Trim();
                if (!text.IsEmpty)
                {
                    if (_format == CorpusFormat.Documents) current.Add(text.ToString());
                    else
                    {
                        if (paragraph.Length > 0) paragraph.Append(' ');
                        paragraph.Append(text);
                    }
                    continue;
                }
                if (End() is { } document) yield return document;
            }
            if (End() is { } last) yield return last;
            before += reader.Length;
            Interlocked.Exchange(ref _doneBytes, before);
        }

        string[]? End()
        {
            if (_format == CorpusFormat.Paragraphs && paragraph.Length > 0)
            {
                string all = paragraph.ToString();
                ranges.Clear();
                SentenceSplitter.Split(all, ranges);
                foreach (var r in ranges) current.Add(all[r]);
                paragraph.Clear();
            }
            if (current.Count == 0) return null;
            var document = current.ToArray();
            current.Clear();
            foreach (var s in document) Chars += s.Length;
            return document;
        }
    }
}
