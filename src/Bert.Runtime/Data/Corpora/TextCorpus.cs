
namespace Bert.Runtime.Data;

/// <summary>How a corpus text file is laid out.</summary>
public enum CorpusFormat
{
    /// <summary>The format of google-research/bert's create_pretraining_data.py: one sentence per
    /// line, documents separated by blank lines.</summary>
    Documents = 0,

    /// <summary>Raw prose: documents separated by blank lines; the lines of a document are joined and
    /// split into sentences by <see cref="SentenceSplitter"/> (hard-wrapped text is fine).</summary>
    Paragraphs = 1,
}

/// <summary>
/// A corpus in memory as documents of sentences (untokenized text). Lines are trimmed; documents with
/// no sentence are dropped.
/// </summary>
public sealed class TextCorpus
{
    public TextCorpus(IReadOnlyList<string[]> documents, string source)
    {
        Documents = documents;
        Source = source;
        foreach (var d in documents)
        {
            SentenceCount += d.Length;
            foreach (var s in d) CharCount += s.Length;
        }
    }

    /// <summary>Each document's sentences, in file order.</summary>
    public IReadOnlyList<string[]> Documents { get; }

    /// <summary>The file the corpus was read from.</summary>
    public string Source { get; }

    public long SentenceCount { get; }

    /// <summary>UTF-16 characters of text (no line ends).</summary>
    public long CharCount { get; }

    /// <summary>Reads <paramref name="path"/>; throws <see cref="FileNotFoundException"/> when it is
    /// missing and <see cref="CorpusFormatException"/> on invalid UTF-8 (with the byte offset) or when
    /// the file holds no text at all.</summary>
    public static TextCorpus Read(string path, CorpusFormat format = CorpusFormat.Documents,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: corpus file not found", path);
        var reader = new DocumentReader([path], format);
        var documents = new List<string[]>();
        foreach (var document in reader.Documents(cancellationToken))
        {
            documents.Add(document);
            if ((documents.Count & 0xFF) == 0) progress?.Report(reader.TotalBytes == 0 ? 1 : (double)reader.BytesRead / reader.TotalBytes);
        }
        progress?.Report(1);
        if (documents.Count == 0)
            throw new CorpusFormatException(path, "documents", "0", "the corpus holds no text (empty or only blank lines)");
        return new TextCorpus(documents, path);
    }

    /// <summary>Writes documents in the <see cref="CorpusFormat.Documents"/> format, atomically.</summary>
    public static void Write(string path, IEnumerable<IReadOnlyList<string>> documents)
    {
        AtomicFile.Write(path, stream =>
        {
            using var w = new StreamWriter(stream, Utf8LineReader.Utf8NoBom, 1 << 16, leaveOpen: true) { NewLine = "\n" };
            bool first = true;
            foreach (var doc in documents)
            {
                if (!first) w.WriteLine();
                first = false;
                foreach (var s in doc) w.WriteLine(s);
            }
            w.Flush();
        });
    }
}
