using System.Text;
using Bert.Runtime.IO;

namespace Bert.Runtime.FineTuning;

/// <summary>What loading pretrained weights did to each tensor.</summary>
/// <param name="Source">The safetensors file read.</param>
/// <param name="Loaded">Model tensors read from the file.</param>
/// <param name="Initialized">Model tensors the file lacks, initialized as BERT does (the new head:
/// weights Normal(0, initializer range), biases 0).</param>
/// <param name="Dropped">File tensors the model has no place for (the pretraining heads; the pooler
/// of a model without one), with their shapes.</param>
/// <param name="Skipped">File tensors deliberately ignored (tied copies, buffers) and why.</param>
public sealed record PretrainedLoadReport(string Source, IReadOnlyList<string> Loaded, IReadOnlyList<string> Initialized,
    IReadOnlyList<string> Dropped, IReadOnlyList<string> Skipped)
{
    /// <summary>One line of counts, then the initialized and dropped tensors by name.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append($"{Source}: loaded {Loaded.Count} tensors, initialized {Initialized.Count}, dropped {Dropped.Count}");
        if (Skipped.Count > 0) sb.Append($", skipped {Skipped.Count}");
        if (Loaded.Count > 0) sb.Append("\n  loaded      ").Append(Summarize(Loaded));
        foreach (var n in Initialized) sb.Append("\n  initialized ").Append(n);
        foreach (var n in Dropped) sb.Append("\n  dropped     ").Append(n);
        foreach (var n in Skipped) sb.Append("\n  skipped     ").Append(n);
        return sb.ToString();
    }

    /// <summary>Tensor names grouped by module: "bert.embeddings (5), bert.encoder.layer.0-11 (192), bert.pooler (2)".</summary>
    public static string Summarize(IEnumerable<string> names)
    {
        var groups = new List<(string Module, int Count)>();
        var layers = new SortedSet<int>();
        int layerTensors = 0;
        foreach (var name in names)
        {
            var parts = name.Split('.');
            if (parts.Length > 3 && parts[0] == "bert" && parts[1] == "encoder" && parts[2] == "layer" && int.TryParse(parts[3], out int layer))
            {
                layers.Add(layer);
                layerTensors++;
                continue;
            }
            string module = parts.Length > 2 ? parts[0] + "." + parts[1] : parts[0];
            int i = groups.FindIndex(g => g.Module == module);
            if (i < 0) groups.Add((module, 1));
            else groups[i] = (module, groups[i].Count + 1);
        }
        if (layers.Count > 0)
        {
            string range = layers.Count == layers.Max - layers.Min + 1 ? $"{layers.Min}-{layers.Max}" : string.Join(",", layers);
            int at = groups.FindIndex(g => g.Module == "bert.embeddings") + 1;
            groups.Insert(at, ($"bert.encoder.layer.{range}", layerTensors));
        }
        return string.Join(", ", groups.Select(g => $"{g.Module} ({g.Count})"));
    }
}

/// <summary>
/// Starts a model from pretrained weights: every tensor whose HuggingFace name and shape the model
/// shares with the checkpoint is loaded (embeddings, encoder, pooler), tensors only the model has are
/// initialized as BERT initializes them, and tensors only the checkpoint has (the MLM and NSP heads)
/// are dropped. This is transformers' from_pretrained for a BertFor* head over a BertForPreTraining
/// checkpoint.
/// </summary>
public static class PretrainedLoader
{
    private static readonly string[] EncoderPrefixes = ["bert.embeddings.", "bert.encoder."];

    /// <summary>Initializes every parameter (seeded), overwrites the ones the source has, uploads.</summary>
    /// <exception cref="InvalidDataException">A shared tensor has another shape, or the source lacks part
    /// of the encoder (it is then not a pretrained BERT for this model).</exception>
    public static PretrainedLoadReport Load(BertModelBase model, string weightsPath, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        var table = model.ParameterTable;
        var host = new float[model.ParameterTotal];
        BertModelBase.InitializeHost(host, table, model.Config.InitializerRange, seed);
        var report = HfInterop.Import(weightsPath, table, host);
        var mismatched = report.Mismatched.ToList();
        if (mismatched.Count > 0)
            throw new InvalidDataException($"{report.File}: {mismatched.Count} tensors have another shape than the model's:\n" +
                                           string.Join("\n", mismatched.Select(i => "  " + i)));
        var initialized = report.Missing.Select(i => i.Name).ToList();
        var encoderMissing = initialized.Where(n => EncoderPrefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal))).ToList();
        if (encoderMissing.Count > 0)
            throw new InvalidDataException($"{report.File}: not a pretrained encoder for {model.Config.Name}: {encoderMissing.Count} " +
                                           $"embedding/encoder tensors are missing, e.g. {encoderMissing[0]}");
        model.Backend.Upload<float>(model.Parameters, host);
        return new PretrainedLoadReport(report.File, report.Loaded.ToList(),
            initialized.Select(n => $"{n} {table[model.ParameterIndex(n)].ShapeText}").ToList(),
            report.Unexpected.Select(i => $"{i.Name} {i.Actual}").ToList(),
            report.Skipped.Select(s => $"{s.FileName} ({s.Reason})").ToList());
    }
}
