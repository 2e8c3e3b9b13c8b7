namespace Bert.Runtime.IO;

/// <summary>
/// Moves weights between our flat parameter buffer and HuggingFace transformers model directories
/// (model.safetensors + config.json), under HuggingFace's BertForPreTraining names.
/// Import accepts what real checkpoints contain: legacy LayerNorm "gamma"/"beta" names, BertModel
/// files without the "bert." prefix (and without heads), the tied MLM decoder weight present or
/// absent, "cls.predictions.decoder.bias" duplicating "cls.predictions.bias", and the
/// "bert.embeddings.position_ids" buffer. Every tensor that cannot be matched is reported with both
/// shapes, none silently dropped.
/// </summary>
public static class HfInterop
{
    public const string WeightsFile = "model.safetensors";
    public const string DecoderWeight = "cls.predictions.decoder.weight";
    public const string DecoderBias = "cls.predictions.decoder.bias";
    public const string WordEmbeddings = "bert.embeddings.word_embeddings.weight";
    public const string MlmBias = "cls.predictions.bias";
    public const string PositionIds = "bert.embeddings.position_ids";

    private static readonly string[] BaseModelPrefixes = ["embeddings.", "encoder.", "pooler."];

    /// <summary>Writes a directory transformers' from_pretrained loads: model.safetensors (the table's
    /// tensors, decoder tied and therefore absent) and config.json.</summary>
    /// <param name="parameters">F32[total] flat buffer carved by <paramref name="table"/>.</param>
    /// <param name="dtype">Stored type: F32, or BF16/F16 (rounded to nearest even) for half-size files.</param>
    public static void Export(IFileSystem fs, string outputDirectory, BertConfig config, IReadOnlyList<ParameterInfo> table,
        ReadOnlyMemory<float> parameters, SafetensorsDType dtype = SafetensorsDType.F32,
        IReadOnlyList<string>? labelNames = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(fs);
        ArgumentNullException.ThrowIfNull(config);
        if (!dtype.IsWritableFloat())
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "export writes F32, BF16 or F16");
        var entries = ParameterTensors.Entries(table, parameters, dtype);
        string torchDtype = dtype switch
        {
            SafetensorsDType.BF16 => "bfloat16",
            SafetensorsDType.F16 => "float16",
            _ => "float32",
        };
        var configBytes = ConfigJson.Serialize(config, labelNames, torchDtype);
        fs.CreateDirectory(outputDirectory);
        // transformers refuses safetensors files whose metadata lacks "format": "pt".
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        SafetensorsWriter.Write(fs, Path.Combine(outputDirectory, WeightsFile), entries, metadata, cancellationToken);
        AtomicFile.Write(fs, Path.Combine(outputDirectory, ConfigJson.FileName), s => s.Write(configBytes));
    }

    /// <summary>The safetensors file of a HuggingFace model directory (or <paramref name="source"/> itself
    /// when it is a file).</summary>
    /// <exception cref="FileNotFoundException">No model.safetensors; the message says what was found instead.</exception>
    public static string WeightsPath(string source)
    {
        if (File.Exists(source)) return source;
        string path = Path.Combine(source, WeightsFile);
        if (File.Exists(path)) return path;
        if (!Directory.Exists(source))
            throw new FileNotFoundException($"'{source}' is neither a model directory nor a safetensors file", source);
        string hint = File.Exists(Path.Combine(source, "pytorch_model.bin"))
            ? "; it has pytorch_model.bin, which is not read (convert it: load with transformers and save_pretrained(dir, safe_serialization=True))"
            : File.Exists(Path.Combine(source, "model.safetensors.index.json"))
                ? "; it has a sharded model.safetensors.index.json, which is not read (BERT checkpoints fit one file: save with max_shard_size large enough)"
                : "";
        throw new FileNotFoundException($"'{source}' has no {WeightsFile}{hint}", path);
    }

    /// <summary>The model name a file tensor maps to: legacy LayerNorm gamma/beta become weight/bias;
    /// BertModel names gain the "bert." prefix.</summary>
    public static string CanonicalName(string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        string name = fileName;
        if (name.Contains("LayerNorm.", StringComparison.Ordinal))
        {
            if (name.EndsWith(".gamma", StringComparison.Ordinal)) name = name[..^".gamma".Length] + ".weight";
            else if (name.EndsWith(".beta", StringComparison.Ordinal)) name = name[..^".beta".Length] + ".bias";
        }
        foreach (var prefix in BaseModelPrefixes)
            if (name.StartsWith(prefix, StringComparison.Ordinal)) return "bert." + name;
        return name;
    }

    /// <summary>Reads a HuggingFace model's weights into the rows of <paramref name="table"/> that it
    /// has. Rows it lacks are reported Missing and left as they were (initialize the buffer first);
    /// file tensors the table lacks are reported Unexpected; shape conflicts are reported Mismatched
    /// and not loaded. Call <see cref="TensorLoadReport.ThrowIfNotExact"/> to demand an exact match.</summary>
    /// <param name="source">A model directory or a .safetensors file.</param>
    /// <param name="parameters">F32[total] flat buffer carved by <paramref name="table"/>.</param>
    public static TensorLoadReport Import(string source, IReadOnlyList<ParameterInfo> table, Span<float> parameters)
    {
        ArgumentNullException.ThrowIfNull(table);
        ParameterTensors.CheckFits(table, parameters.Length, "parameters");
        using var file = SafetensorsFile.Open(WeightsPath(source));
        var report = new TensorLoadReport(file.Path);
        var byName = new Dictionary<string, ParameterInfo>(table.Count, StringComparer.Ordinal);
        foreach (var p in table) byName[p.Name] = p;
        var sourceOf = new Dictionary<string, string>(StringComparer.Ordinal);
        SafetensorsTensor? decoderWeight = null, decoderBias = null;

        foreach (var t in file.Tensors)
        {
            string name = CanonicalName(t.Name);
            if (!byName.TryGetValue(name, out var p))
            {
                if (name == PositionIds) report.Skipped.Add((t.Name, "position-id buffer (arange), not a parameter"));
                else if (name == DecoderWeight) decoderWeight = t;
                else if (name == DecoderBias) decoderBias = t;
                else report.Issues.Add(new TensorIssue(TensorIssueKind.Unexpected, t.Name, null, t.ShapeText));
                continue;
            }
            if (sourceOf.TryGetValue(name, out var earlier))
            {
                report.Issues.Add(new TensorIssue(TensorIssueKind.Unexpected, t.Name, null, t.ShapeText,
                    $"a second tensor for '{name}', already read from '{earlier}'"));
                continue;
            }
            sourceOf[name] = t.Name;
            Read(t, p, parameters, report);
        }

        if (decoderWeight is not null) ResolveTied(decoderWeight, WordEmbeddings, "the word embeddings (tied)", byName, sourceOf, parameters, report);
        if (decoderBias is not null) ResolveTied(decoderBias, MlmBias, MlmBias, byName, sourceOf, parameters, report);

        foreach (var p in table)
            if (!sourceOf.ContainsKey(p.Name))
                report.Issues.Add(new TensorIssue(TensorIssueKind.Missing, p.Name, p.ShapeText, null));
        return report;
    }

    private static bool Read(SafetensorsTensor t, ParameterInfo p, Span<float> parameters, TensorLoadReport report)
    {
        if (!t.ShapeEquals(p.Shape))
        {
            report.Issues.Add(new TensorIssue(TensorIssueKind.Mismatched, p.Name, p.ShapeText, t.ShapeText,
                t.Name == p.Name ? null : $"stored as '{t.Name}'"));
            return false;
        }
        t.ReadAsFloat32(parameters.Slice((int)p.Offset, (int)p.Count));
        report.Loaded.Add(p.Name);
        if (t.Name != p.Name) report.Renamed.Add((t.Name, p.Name));
        return true;
    }

    /// <summary>A file tensor that duplicates a model row (the tied decoder weight, the decoder bias):
    /// equal to the row's loaded values → skipped; the row absent from the file → loaded in its place;
    /// different → reported, since the model cannot hold both.</summary>
    private static void ResolveTied(SafetensorsTensor t, string target, string what, Dictionary<string, ParameterInfo> byName,
        Dictionary<string, string> sourceOf, Span<float> parameters, TensorLoadReport report)
    {
        if (!byName.TryGetValue(target, out var p))
        {
            report.Issues.Add(new TensorIssue(TensorIssueKind.Unexpected, t.Name, null, t.ShapeText, $"duplicates '{target}', which the model lacks"));
            return;
        }
        if (!sourceOf.ContainsKey(target))
        {
            sourceOf[target] = t.Name;
            Read(t, p, parameters, report);
            return;
        }
        if (!t.ShapeEquals(p.Shape))
        {
            report.Issues.Add(new TensorIssue(TensorIssueKind.Mismatched, t.Name, p.ShapeText, t.ShapeText, $"should duplicate {what}"));
            return;
        }
        var values = t.ReadAsFloat32();
        var loaded = parameters.Slice((int)p.Offset, (int)p.Count);
        int differ = 0;
        for (int i = 0; i < values.Length; i++)
            if (BitConverter.SingleToInt32Bits(values[i]) != BitConverter.SingleToInt32Bits(loaded[i])) differ++;
        if (differ == 0)
            report.Skipped.Add((t.Name, $"equal to {what}"));
        else
            report.Issues.Add(new TensorIssue(TensorIssueKind.Mismatched, t.Name, p.ShapeText, t.ShapeText,
                $"{differ} of {values.Length} values differ from {what}; this model stores one copy"));
    }
}
