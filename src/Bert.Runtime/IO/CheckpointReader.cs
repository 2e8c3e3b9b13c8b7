using System.Globalization;

namespace Bert.Runtime.IO;

/// <summary>Finds and opens checkpoints written by <see cref="CheckpointWriter"/>.</summary>
public static class CheckpointReader
{
    /// <summary>The complete checkpoints under a root (directories "step-N" holding manifest.json),
    /// newest first. Temp directories and directories without a manifest are not listed.</summary>
    public static IReadOnlyList<(long Step, string Directory)> ListComplete(IFileSystem fs, string root)
    {
        ArgumentNullException.ThrowIfNull(fs);
        var result = new List<(long Step, string Directory)>();
        foreach (var dir in fs.EnumerateDirectories(root, CheckpointWriter.StepPrefix + "*"))
        {
            string name = Path.GetFileName(dir);
            if (name.Contains(AtomicFile.TempMarker, StringComparison.Ordinal)) continue;
            bool setAside = name.EndsWith(CheckpointWriter.PreviousSuffix, StringComparison.Ordinal);
            var digits = name.AsSpan(CheckpointWriter.StepPrefix.Length, name.Length - CheckpointWriter.StepPrefix.Length
                - (setAside ? CheckpointWriter.PreviousSuffix.Length : 0));
            if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long step)) continue;
            if (!fs.FileExists(Path.Combine(dir, CheckpointManifest.FileName))) continue;
            // A "step-N.prev" (set aside while step N was re-saved, then a crash) stands in for step N
            // only while no complete "step-N" exists.
            if (setAside && fs.FileExists(Path.Combine(dir[..^CheckpointWriter.PreviousSuffix.Length], CheckpointManifest.FileName))) continue;
            result.Add((step, dir));
        }
        result.Sort((a, b) => b.Step.CompareTo(a.Step));
        return result;
    }

    /// <summary>A "latest" pointer file (as <see cref="CheckpointWriter"/> writes it: one line naming a
    /// step directory beside it) resolves to that directory; any other path is returned as given.</summary>
    /// <exception cref="CheckpointFormatException">The pointer names no step directory.</exception>
    public static string ResolvePointer(IFileSystem fs, string full)
    {
        if (!fs.FileExists(full) || Path.GetFileName(full) != CheckpointWriter.LatestFile) return full;
        string text;
        using (var s = fs.OpenRead(full))
        {
            if (s.Length > 256)
                throw new CheckpointFormatException(full, "(file)", $"{s.Length} bytes", "a latest pointer is one line naming a step directory");
            var bytes = new byte[s.Length];
            s.ReadExactly(bytes);
            text = System.Text.Encoding.UTF8.GetString(bytes).Trim();
        }
        if (!text.StartsWith(CheckpointWriter.StepPrefix, StringComparison.Ordinal) || text != Path.GetFileName(text))
            throw new CheckpointFormatException(full, "(file)", text, "a latest pointer must name a step-N directory beside it");
        string target = Path.Combine(Path.GetDirectoryName(full)!, text);
        // The pointer is replaced after the directory is complete; if it was pruned or is being re-saved,
        // the newest complete checkpoint of the same root is what "latest" means.
        if (fs.FileExists(Path.Combine(target, CheckpointManifest.FileName))) return target;
        var complete = ListComplete(fs, Path.GetDirectoryName(full)!);
        return complete.Count > 0 ? complete[0].Directory : target;
    }

    /// <summary>The checkpoint directory <paramref name="path"/> designates: itself when it holds a
    /// manifest.json, else the newest complete "step-N" inside it; null when there is none.</summary>
    public static string? FindLatest(string path, IFileSystem? fileSystem = null)
    {
        var fs = fileSystem ?? PhysicalFileSystem.Instance;
        string full = ResolvePointer(fs, Path.GetFullPath(path));
        if (fs.FileExists(Path.Combine(full, CheckpointManifest.FileName))) return full;
        var complete = ListComplete(fs, full);
        return complete.Count > 0 ? complete[0].Directory : null;
    }

    /// <summary>Opens the checkpoint <paramref name="path"/> designates (see <see cref="FindLatest"/>),
    /// verifying every file's size and XXH64 checksum against the manifest unless <paramref name="verify"/> is false.</summary>
    /// <exception cref="CheckpointFormatException">No complete checkpoint, or a corrupt one.</exception>
    public static Checkpoint Open(string path, bool verify = true, IFileSystem? fileSystem = null,
        CancellationToken cancellationToken = default)
    {
        var fs = fileSystem ?? PhysicalFileSystem.Instance;
        string full = ResolvePointer(fs, Path.GetFullPath(path));
        if (!fs.DirectoryExists(full))
            throw new CheckpointFormatException(full, "directory", "(absent)", "checkpoint directory does not exist");
        string dir = FindLatest(full, fs)
            ?? throw new CheckpointFormatException(full, CheckpointManifest.FileName, "(absent)",
                "no complete checkpoint here: neither a manifest.json nor a step-N directory holding one");
        string manifestPath = Path.Combine(dir, CheckpointManifest.FileName);
        byte[] bytes;
        using (var s = fs.OpenRead(manifestPath))
        {
            bytes = new byte[s.Length];
            s.ReadExactly(bytes);
        }
        var manifest = CheckpointManifest.Parse(bytes, manifestPath);
        foreach (string required in new[] { CheckpointWriter.ModelFile, ConfigJson.FileName })
            if (manifest.Find(required) is null)
                throw new CheckpointFormatException(manifestPath, "files", required, "a checkpoint must list this file");
        if (verify) manifest.Verify(fs, dir, cancellationToken);
        var config = ConfigJson.Read(Path.Combine(dir, ConfigJson.FileName));
        return new Checkpoint(fs, dir, manifest, config);
    }
}

/// <summary>An opened, verified checkpoint directory.</summary>
public sealed class Checkpoint
{
    private readonly IFileSystem _fs;

    internal Checkpoint(IFileSystem fs, string directory, CheckpointManifest manifest, ModelConfigFile config)
    {
        _fs = fs;
        Directory = directory;
        Manifest = manifest;
        ConfigFile = config;
    }

    public string Directory { get; }
    public CheckpointManifest Manifest { get; }
    public long Step => Manifest.Step;
    public ModelConfigFile ConfigFile { get; }
    public BertConfig Config => ConfigFile.Model;
    public bool HasOptimizerState => Manifest.Find(CheckpointWriter.OptimizerFile) is not null;
    public bool HasTrainerState => Manifest.Find(CheckpointWriter.TrainerStateFile) is not null;

    /// <summary>Fills the parameters from model.safetensors.</summary>
    /// <param name="parameters">F32[total] flat buffer carved by <paramref name="table"/>.</param>
    /// <exception cref="TensorMismatchException">The table differs from the stored tensors; lists every
    /// missing, unexpected and mismatched tensor with both shapes. Nothing is loaded then.</exception>
    public TensorLoadReport ReadParameters(IReadOnlyList<ParameterInfo> table, Span<float> parameters)
    {
        using var file = SafetensorsFile.Open(Path.Combine(Directory, CheckpointWriter.ModelFile));
        return ParameterTensors.LoadExact(file, table, parameters);
    }

    /// <summary>Fills the AdamW moment buffers (same layout as the parameters).</summary>
    /// <exception cref="InvalidOperationException">The checkpoint holds no optimizer state.</exception>
    public void ReadOptimizerState(IReadOnlyList<ParameterInfo> table, Span<float> adamM, Span<float> adamV)
    {
        if (!HasOptimizerState)
            throw new InvalidOperationException($"{Directory}: checkpoint has no {CheckpointWriter.OptimizerFile} (weights only)");
        ParameterTensors.CheckFits(table, adamM.Length, "AdamM");
        ParameterTensors.CheckFits(table, adamV.Length, "AdamV");
        using var file = SafetensorsFile.Open(Path.Combine(Directory, CheckpointWriter.OptimizerFile));
        ParameterTensors.Compare(file, table, CheckpointWriter.FirstMomentPrefix, CheckpointWriter.SecondMomentPrefix).ThrowIfNotExact();
        ParameterTensors.Load(file, table, adamM, CheckpointWriter.FirstMomentPrefix);
        ParameterTensors.Load(file, table, adamV, CheckpointWriter.SecondMomentPrefix);
    }

    /// <summary>Whether the checkpoint stores a file of this name (an extra file such as vocab.txt).</summary>
    public bool HasFile(string name) => Manifest.Find(name) is not null;

    /// <summary>The bytes of a stored file (verified with the rest when the checkpoint was opened).</summary>
    public byte[] ReadFile(string name)
    {
        if (!HasFile(name)) throw new FileNotFoundException($"{Directory}: checkpoint has no file '{name}'", Path.Combine(Directory, name));
        using var s = _fs.OpenRead(Path.Combine(Directory, name));
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>The trainer's opaque state; empty when none was stored.</summary>
    public byte[] ReadTrainerState()
    {
        return HasTrainerState ? ReadFile(CheckpointWriter.TrainerStateFile) : [];
    }
}
