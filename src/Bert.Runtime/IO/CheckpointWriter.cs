using System.Globalization;

namespace Bert.Runtime.IO;

/// <summary>What one checkpoint holds. The parameter table carves <see cref="Parameters"/> (and the
/// moments, which share its layout); tied tensors have no row and are not stored.</summary>
public sealed class CheckpointContent
{
    /// <summary>Optimizer steps taken; names the directory ("step-000123").</summary>
    public required long Step { get; init; }
    public required BertConfig Config { get; init; }
    /// <summary>Class names of a classification head (config.json id2label); null for LABEL_i.</summary>
    public IReadOnlyList<string>? LabelNames { get; init; }
    public required IReadOnlyList<ParameterInfo> Table { get; init; }
    /// <summary>F32[total] flat parameters.</summary>
    public required ReadOnlyMemory<float> Parameters { get; init; }
    /// <summary>F32[total] AdamW first moments; empty for a weights-only checkpoint.</summary>
    public ReadOnlyMemory<float> AdamM { get; init; }
    /// <summary>F32[total] AdamW second moments; empty exactly when <see cref="AdamM"/> is.</summary>
    public ReadOnlyMemory<float> AdamV { get; init; }
    /// <summary>The trainer's own state (step, schedule, RNG, data cursor), stored as given; may be empty.</summary>
    public ReadOnlyMemory<byte> TrainerState { get; init; }
    /// <summary>Further files stored beside the weights and listed in the manifest (e.g. "vocab.txt",
    /// which export copies); plain names only.</summary>
    public IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? ExtraFiles { get; init; }
    /// <summary>Extra "__metadata__" entries for model.safetensors ("format": "pt" is always set).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}

/// <summary>Options of <see cref="CheckpointWriter"/>.</summary>
public sealed record CheckpointWriterOptions
{
    /// <summary>Complete checkpoints kept; older ones are deleted after a new one is complete. Default 3.</summary>
    public int KeepLast { get; init; } = 3;
    /// <summary>Refuse to start a save when the volume reports less free space than the checkpoint
    /// needs (the save would fail part-way anyway). Default true.</summary>
    public bool CheckFreeSpace { get; init; } = true;
}

/// <summary>
/// Writes checkpoints so that a crash at any point leaves the previous complete checkpoint loadable:
/// everything goes into "step-000123.tmp-XXXXXXXX/" (each file fsynced, manifest.json with sizes and
/// XXH64 checksums written last), the directory is fsynced and renamed to "step-000123/", the root is
/// fsynced, then the "latest" pointer file is replaced atomically and checkpoints beyond
/// <see cref="CheckpointWriterOptions.KeepLast"/> are removed. Stale temp entries of a crashed save
/// are removed at the start of the next one. One writer per root at a time.
/// </summary>
public sealed class CheckpointWriter
{
    public const string ModelFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string TrainerStateFile = "trainer-state.bin";
    public const string LatestFile = "latest";
    public const string StepPrefix = "step-";
    /// <summary>Prefixes of the moment tensors in optimizer.safetensors (PyTorch's AdamW state names).</summary>
    public const string FirstMomentPrefix = "exp_avg.";
    public const string SecondMomentPrefix = "exp_avg_sq.";

    private readonly IFileSystem _fs;
    private readonly CheckpointWriterOptions _options;

    /// <param name="root">The directory that holds the step-* checkpoints (created if absent).</param>
    public CheckpointWriter(string root, CheckpointWriterOptions? options = null, IFileSystem? fileSystem = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        Root = Path.GetFullPath(root);
        _options = options ?? new CheckpointWriterOptions();
        if (_options.KeepLast < 1)
            throw new ArgumentOutOfRangeException(nameof(options), _options.KeepLast, "KeepLast must be at least 1");
        _fs = fileSystem ?? PhysicalFileSystem.Instance;
    }

    public string Root { get; }

    public static string DirectoryName(long step) => StepPrefix + step.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>Writes a checkpoint and returns its directory.</summary>
    /// <exception cref="DiskFullException">The volume is (or became) full; earlier checkpoints are intact.</exception>
    public string Save(CheckpointContent content, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        if (content.Step < 0) throw new ArgumentOutOfRangeException(nameof(content), content.Step, "step must be non-negative");
        bool hasMoments = !content.AdamM.IsEmpty || !content.AdamV.IsEmpty;
        long total = content.Parameters.Length;
        if (hasMoments && (content.AdamM.Length != total || content.AdamV.Length != total))
            throw new ArgumentException(
                $"moment buffers have {content.AdamM.Length} and {content.AdamV.Length} elements; parameters have {total}", nameof(content));

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
        if (content.Metadata is not null)
            foreach (var (k, v) in content.Metadata) metadata[k] = v;
        metadata["step"] = content.Step.ToString(CultureInfo.InvariantCulture);
        var weights = ParameterTensors.Entries(content.Table, content.Parameters, SafetensorsDType.F32);
        List<SafetensorsEntry>? moments = null;
        if (hasMoments)
        {
            moments = ParameterTensors.Entries(content.Table, content.AdamM, SafetensorsDType.F32, FirstMomentPrefix, "AdamM");
            moments.AddRange(ParameterTensors.Entries(content.Table, content.AdamV, SafetensorsDType.F32, SecondMomentPrefix, "AdamV"));
        }
        byte[] config = ConfigJson.Serialize(content.Config, content.LabelNames);
        var extra = content.ExtraFiles ?? new Dictionary<string, ReadOnlyMemory<byte>>();
        foreach (var name in extra.Keys)
        {
            if (name.Length == 0 || name != Path.GetFileName(name) || name is "." or ".." || name.Contains(AtomicFile.TempMarker, StringComparison.Ordinal)
                || name is ModelFile or OptimizerFile or TrainerStateFile or CheckpointManifest.FileName or ConfigJson.FileName)
                throw new ArgumentException($"extra checkpoint file name '{name}' is not a plain, unreserved file name", nameof(content));
        }

        _fs.CreateDirectory(Root);
        RecoverSetAside(_fs, Root);
        AtomicFile.CleanStale(_fs, Root);

        string final = Path.Combine(Root, DirectoryName(content.Step));
        if (_options.CheckFreeSpace && _fs.AvailableFreeSpace(Root) is long free)
        {
            long needed = SafetensorsWriter.FileSize(weights, metadata) + config.Length + content.TrainerState.Length
                + extra.Values.Sum(b => (long)b.Length)
                + (moments is null ? 0 : SafetensorsWriter.FileSize(moments));
            if (needed > free)
                throw new DiskFullException(final,
                    $"cannot write checkpoint '{final}': it needs {needed} bytes but only {free} are free on the volume; earlier checkpoints are unchanged");
        }

        string temp = AtomicFile.TempPath(final);
        try
        {
            _fs.CreateDirectory(temp);
            var files = new List<ManifestEntry>
            {
                WriteHashed(temp, ModelFile, s => SafetensorsWriter.WriteTo(s, weights, metadata, cancellationToken)),
                WriteHashed(temp, ConfigJson.FileName, s => s.Write(config)),
            };
            if (moments is not null)
            {
                var optimizerMetadata = new Dictionary<string, string> { ["format"] = "pt", ["optimizer"] = "adamw" };
                files.Add(WriteHashed(temp, OptimizerFile, s => SafetensorsWriter.WriteTo(s, moments, optimizerMetadata, cancellationToken)));
            }
            if (!content.TrainerState.IsEmpty)
                files.Add(WriteHashed(temp, TrainerStateFile, s => s.Write(content.TrainerState.Span)));
            foreach (var (name, bytes) in extra.OrderBy(e => e.Key, StringComparer.Ordinal))
                files.Add(WriteHashed(temp, name, s => s.Write(bytes.Span)));
            cancellationToken.ThrowIfCancellationRequested();
            var manifest = new CheckpointManifest(content.Step, files,
                DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
            byte[] manifestBytes = manifest.Serialize();
            AtomicFile.WriteDurable(_fs, Path.Combine(temp, CheckpointManifest.FileName), s => s.Write(manifestBytes));
            _fs.FlushDirectory(temp);

            if (_fs.DirectoryExists(final) && IsIdentical(final, files, cancellationToken))
            {
                // Re-saving the same state (a --resume of a finished run, a stop right after a periodic
                // save): the complete copy on disk already holds these bytes; it is never moved.
                AtomicFile.TryDeleteDirectory(_fs, temp);
            }
            else
            {
                string? aside = null;
                if (_fs.DirectoryExists(final))
                {
                    // Re-saving a step with other content (after resuming from an older one): the complete
                    // copy steps aside under "step-N.prev", which readers still load while "step-N" is
                    // absent, so a crash between the two renames leaves a complete step N either way.
                    aside = final + PreviousSuffix;
                    if (_fs.DirectoryExists(aside)) _fs.DeleteDirectory(aside);
                    _fs.MoveDirectory(final, aside);
                }
                _fs.MoveDirectory(temp, final);
                if (aside is not null)
                {
                    _fs.FlushDirectory(Root);
                    _fs.DeleteDirectory(aside);
                }
            }
        }
        catch (Exception e)
        {
            AtomicFile.TryDeleteDirectory(_fs, temp);
            if (DiskFull.Is(e) && e is not DiskFullException)
                throw new DiskFullException(final,
                    $"cannot write checkpoint '{final}': no space left on device; earlier checkpoints are unchanged", e);
            throw;
        }
        _fs.FlushDirectory(Root);

        AtomicFile.Write(_fs, Path.Combine(Root, LatestFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(DirectoryName(content.Step) + "\n")));
        Prune();
        AtomicFile.CleanStale(_fs, Root);
        return final;
    }

    /// <summary>The suffix of a complete checkpoint set aside while the same step is re-saved.</summary>
    public const string PreviousSuffix = ".prev";

    /// <summary>Finishes what a crash interrupted while a step was re-saved: a "step-N.prev" whose
    /// "step-N" is complete is deleted; one whose "step-N" is absent is renamed back.</summary>
    internal static void RecoverSetAside(IFileSystem fs, string root)
    {
        if (!fs.DirectoryExists(root)) return;
        bool changed = false;
        foreach (var aside in fs.EnumerateDirectories(root, StepPrefix + "*" + PreviousSuffix))
        {
            string name = Path.GetFileName(aside);
            if (name.Contains(AtomicFile.TempMarker, StringComparison.Ordinal)) continue;
            string final = aside[..^PreviousSuffix.Length];
            if (fs.FileExists(Path.Combine(final, CheckpointManifest.FileName)))
                fs.DeleteDirectory(aside);
            else
            {
                if (fs.DirectoryExists(final)) fs.DeleteDirectory(final);
                fs.MoveDirectory(aside, final);
            }
            changed = true;
        }
        if (changed) fs.FlushDirectory(root);
    }

    /// <summary>Whether the complete checkpoint in <paramref name="directory"/> lists exactly
    /// <paramref name="files"/> (names, sizes, XXH64) and its files still match them on disk.</summary>
    private bool IsIdentical(string directory, List<ManifestEntry> files, CancellationToken cancellationToken)
    {
        string manifestPath = Path.Combine(directory, CheckpointManifest.FileName);
        if (!_fs.FileExists(manifestPath)) return false;
        try
        {
            byte[] bytes;
            using (var s = _fs.OpenRead(manifestPath))
            {
                bytes = new byte[s.Length];
                s.ReadExactly(bytes);
            }
            var existing = CheckpointManifest.Parse(bytes, manifestPath);
            if (existing.Files.Count != files.Count
                || !files.All(f => existing.Find(f.Name) is { } e && e.Bytes == f.Bytes && e.XxHash64 == f.XxHash64))
                return false;
            existing.Verify(_fs, directory, cancellationToken);
            return true;
        }
        catch (CheckpointFormatException)
        {
            return false; // a damaged copy is replaced, not kept
        }
    }

    /// <summary>Removes complete checkpoints beyond the newest KeepLast. Each goes out of sight with one
    /// rename (to a temp name) before it is deleted, so a crash mid-delete never leaves a half
    /// checkpoint that looks complete.</summary>
    private void Prune()
    {
        var complete = CheckpointReader.ListComplete(_fs, Root);
        for (int i = _options.KeepLast; i < complete.Count; i++)
        {
            string doomed = AtomicFile.TempPath(complete[i].Directory);
            _fs.MoveDirectory(complete[i].Directory, doomed);
            _fs.DeleteDirectory(doomed);
        }
    }

    private ManifestEntry WriteHashed(string directory, string name, Action<Stream> write)
    {
        using var stream = _fs.CreateNew(Path.Combine(directory, name));
        using var hashing = new HashingWriteStream(stream);
        write(hashing);
        _fs.FlushToDisk(stream);
        return new ManifestEntry(name, hashing.Length, hashing.HashHex());
    }
}
