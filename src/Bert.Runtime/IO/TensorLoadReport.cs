using System.Text;

namespace Bert.Runtime.IO;

public enum TensorIssueKind
{
    /// <summary>The model has the tensor; the file does not.</summary>
    Missing,
    /// <summary>The file has the tensor; the model does not.</summary>
    Unexpected,
    /// <summary>Both have it with different shapes (or a tied copy that differs).</summary>
    Mismatched,
}

/// <summary>One tensor that could not be matched between a model and a file.</summary>
/// <param name="Name">The model's name (for Unexpected: the file's name).</param>
/// <param name="Expected">The model's shape, e.g. "[30522, 768]"; null for Unexpected.</param>
/// <param name="Actual">The file's shape; null for Missing.</param>
/// <param name="Detail">Extra context (the name in the file when renamed, why a tied copy was refused).</param>
public sealed record TensorIssue(TensorIssueKind Kind, string Name, string? Expected, string? Actual, string? Detail = null)
{
    public override string ToString() => Kind switch
    {
        TensorIssueKind.Missing => $"missing    {Name} {Expected} (not in the file)",
        TensorIssueKind.Unexpected => $"unexpected {Name} {Actual} (not in the model)",
        _ => $"mismatched {Name}: model {Expected}, file {Actual}",
    } + (Detail is null ? "" : $" — {Detail}");
}

/// <summary>What happened to each tensor when a file was loaded into a parameter table.</summary>
public sealed class TensorLoadReport
{
    public TensorLoadReport(string file) => File = file;

    public string File { get; }
    /// <summary>Model names that were filled from the file.</summary>
    public List<string> Loaded { get; } = [];
    /// <summary>File names read under another model name (legacy gamma/beta, missing "bert." prefix).</summary>
    public List<(string FileName, string ModelName)> Renamed { get; } = [];
    /// <summary>File tensors deliberately not loaded, and why (tied copies, buffers).</summary>
    public List<(string FileName, string Reason)> Skipped { get; } = [];
    public List<TensorIssue> Issues { get; } = [];

    public IEnumerable<TensorIssue> Missing => Issues.Where(i => i.Kind == TensorIssueKind.Missing);
    public IEnumerable<TensorIssue> Unexpected => Issues.Where(i => i.Kind == TensorIssueKind.Unexpected);
    public IEnumerable<TensorIssue> Mismatched => Issues.Where(i => i.Kind == TensorIssueKind.Mismatched);

    /// <summary>Every model tensor loaded, nothing unexpected or mismatched.</summary>
    public bool IsExact => Issues.Count == 0;

    /// <summary>Every issue, one per line, missing first.</summary>
    public string DescribeIssues()
    {
        var sb = new StringBuilder();
        foreach (var kind in new[] { TensorIssueKind.Missing, TensorIssueKind.Unexpected, TensorIssueKind.Mismatched })
            foreach (var issue in Issues.Where(i => i.Kind == kind))
                sb.Append("  ").Append(issue).Append('\n');
        return sb.ToString();
    }

    /// <summary>A human summary: counts, then renames, skips and issues.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append($"{File}: loaded {Loaded.Count} tensors");
        if (Renamed.Count > 0) sb.Append($", {Renamed.Count} under legacy names");
        if (Skipped.Count > 0) sb.Append($", skipped {Skipped.Count}");
        sb.Append($"; {Missing.Count()} missing, {Unexpected.Count()} unexpected, {Mismatched.Count()} mismatched\n");
        foreach (var (f, reason) in Skipped) sb.Append($"  skipped    {f} — {reason}\n");
        sb.Append(DescribeIssues());
        return sb.ToString().TrimEnd('\n');
    }

    /// <summary>Throws <see cref="TensorMismatchException"/> listing every issue when there is any.</summary>
    public void ThrowIfNotExact()
    {
        if (!IsExact) throw new TensorMismatchException(this);
    }
}

/// <summary>A file's tensors do not match the model's parameter table; the message lists every
/// missing, unexpected and mismatched tensor with both shapes.</summary>
public sealed class TensorMismatchException(TensorLoadReport report)
    : FormatException($"{report.File}: the tensors do not match the model " +
        $"({report.Missing.Count()} missing, {report.Unexpected.Count()} unexpected, {report.Mismatched.Count()} mismatched):\n" +
        report.DescribeIssues().TrimEnd('\n'))
{
    public TensorLoadReport Report { get; } = report;
}
