namespace Bert.Runtime.IO;

/// <summary>Moves tensors between a flat F32 buffer carved by a parameter table and safetensors files.</summary>
public static class ParameterTensors
{
    /// <summary>Throws unless every table row lies inside a buffer of <paramref name="length"/> elements.</summary>
    public static void CheckFits(IReadOnlyList<ParameterInfo> table, long length, string bufferName)
    {
        ArgumentNullException.ThrowIfNull(table);
        foreach (var p in table)
        {
            if (p.Offset < 0 || p.Offset + p.Count > length)
                throw new ArgumentException(
                    $"parameter '{p.Name}' {p.ShapeText} at offset {p.Offset} does not fit the {length}-element {bufferName} buffer",
                    bufferName);
            if (p.Offset + p.Count > int.MaxValue)
                throw new ArgumentException($"parameter '{p.Name}' ends past element 2^31 of the {bufferName} buffer", bufferName);
        }
    }

    /// <summary>One entry per table row, each a slice of <paramref name="flat"/>, named prefix + row name.</summary>
    public static List<SafetensorsEntry> Entries(IReadOnlyList<ParameterInfo> table, ReadOnlyMemory<float> flat,
        SafetensorsDType dtype, string prefix = "", string bufferName = "parameters")
    {
        CheckFits(table, flat.Length, bufferName);
        var entries = new List<SafetensorsEntry>(table.Count);
        foreach (var p in table)
            entries.Add(new SafetensorsEntry(prefix + p.Name, dtype, p.Shape, flat.Slice((int)p.Offset, (int)p.Count)));
        return entries;
    }

    /// <summary>Fills every table row from the tensor named prefix + row name. Loads nothing unless
    /// names and shapes match exactly; otherwise throws listing every difference.</summary>
    /// <exception cref="TensorMismatchException">Any tensor missing, unexpected or of another shape.</exception>
    public static TensorLoadReport LoadExact(SafetensorsFile file, IReadOnlyList<ParameterInfo> table, Span<float> flat,
        string prefix = "", string bufferName = "parameters")
    {
        CheckFits(table, flat.Length, bufferName);
        var report = Compare(file, table, prefix);
        report.ThrowIfNotExact();
        Load(file, table, flat, prefix, report);
        return report;
    }

    /// <summary>Compares the file's tensors with the table once per prefix (a file may hold several
    /// buffers of one layout, e.g. both AdamW moments): every table row must appear under every
    /// prefix with its shape, and the file must hold nothing else.</summary>
    public static TensorLoadReport Compare(SafetensorsFile file, IReadOnlyList<ParameterInfo> table, params string[] prefixes)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(table);
        if (prefixes.Length == 0) prefixes = [""];
        var report = new TensorLoadReport(file.Path);
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (string prefix in prefixes)
        {
            foreach (var p in table)
            {
                string name = prefix + p.Name;
                expected.Add(name);
                if (!file.TryGet(name, out var t))
                    report.Issues.Add(new TensorIssue(TensorIssueKind.Missing, name, p.ShapeText, null));
                else if (!t.ShapeEquals(p.Shape))
                    report.Issues.Add(new TensorIssue(TensorIssueKind.Mismatched, name, p.ShapeText, t.ShapeText));
            }
        }
        foreach (var t in file.Tensors)
            if (!expected.Contains(t.Name))
                report.Issues.Add(new TensorIssue(TensorIssueKind.Unexpected, t.Name, null, t.ShapeText));
        return report;
    }

    /// <summary>Reads every row after a clean <see cref="Compare"/>.</summary>
    public static void Load(SafetensorsFile file, IReadOnlyList<ParameterInfo> table, Span<float> flat, string prefix,
        TensorLoadReport? report = null)
    {
        ArgumentNullException.ThrowIfNull(file);
        CheckFits(table, flat.Length, "destination");
        foreach (var p in table)
        {
            file[prefix + p.Name].ReadAsFloat32(flat.Slice((int)p.Offset, (int)p.Count));
            report?.Loaded.Add(prefix + p.Name);
        }
    }
}
