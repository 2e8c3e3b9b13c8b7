using System.Text;
using Bert.Runtime.Data;
using Bert.Runtime.IO;

namespace Bert.Runtime.Training;

/// <summary>A resumed run's settings differ from those the checkpoint was trained with.</summary>
public sealed class CheckpointSettingsMismatchException(string checkpoint, string key, string current, string saved)
    : Exception($"{checkpoint}: setting '{key}' is {current} but the checkpoint was trained with {saved}; resume with the same settings")
{
    public string Checkpoint { get; } = checkpoint;
    public string Key { get; } = key;
    public string Current { get; } = current;
    public string Saved { get; } = saved;
}

/// <summary>What a checkpoint gives a resumed run besides the weights (already in the model when
/// this is returned): the trainer state for the <see cref="Trainer"/> constructor and the AdamW
/// moments for <see cref="RestoreOptimizer"/>.</summary>
public sealed class ResumePoint
{
    internal ResumePoint(string directory, TrainerState state, IReadOnlyDictionary<string, string> settings, float[] adamM, float[] adamV)
    {
        Directory = directory;
        State = state;
        Settings = settings;
        AdamM = adamM;
        AdamV = adamV;
    }

    /// <summary>The checkpoint directory (step-N).</summary>
    public string Directory { get; }
    public long Step => State.Step;
    public TrainerState State { get; }
    /// <summary>The run settings stored with the state.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; }
    /// <summary>F32[ParameterTotal] first moments.</summary>
    public float[] AdamM { get; }
    /// <summary>F32[ParameterTotal] second moments.</summary>
    public float[] AdamV { get; }

    /// <summary>Uploads the moments into the trainer's optimizer (after the trainer is built); a sharded optimizer
    /// keeps its shard of them.</summary>
    public void RestoreOptimizer(AdamWOptimizer optimizer) => optimizer.UploadMoments(AdamM, AdamV);
}

/// <summary>
/// The checkpoints of one training run (a root holding step-N directories): saving a
/// <see cref="Trainer"/> (weights, AdamW moments, trainer state with the run's settings, the
/// vocabulary) through the crash-safe <see cref="CheckpointWriter"/>, and loading the newest complete
/// one for an exact resume. `bert pretrain` and the tests share this code path.
/// </summary>
public sealed class TrainingCheckpoints
{
    /// <summary>The vocabulary stored in every checkpoint (canonical form: each token and "\n").</summary>
    public const string VocabularyFile = "vocab.txt";

    private readonly IFileSystem _fs;
    private readonly CheckpointWriter _writer;

    /// <param name="root">Directory of the step-N checkpoints (created by the first save).</param>
    /// <param name="keepLast">Complete checkpoints kept.</param>
    /// <param name="fileSystem">File operations (a fault-injecting one in tests).</param>
    public TrainingCheckpoints(string root, int keepLast = 3, IFileSystem? fileSystem = null)
    {
        _fs = fileSystem ?? PhysicalFileSystem.Instance;
        _writer = new CheckpointWriter(root, new CheckpointWriterOptions { KeepLast = keepLast }, _fs);
        Root = _writer.Root;
    }

    public string Root { get; }

    /// <summary>Complete checkpoints, newest first.</summary>
    public IReadOnlyList<(long Step, string Directory)> Complete => CheckpointReader.ListComplete(_fs, Root);

    /// <summary>Saves the trainer's model, moments and state at its current step; returns the directory.
    /// Data-parallel, every rank calls it (sharded moments are gathered from all ranks first); rank 0 alone writes and
    /// the others return null.</summary>
    /// <param name="settings">Run settings a resume must repeat (see <see cref="Load"/>).</param>
    public string? Save(Trainer trainer, Vocabulary vocabulary, IReadOnlyDictionary<string, string> settings,
        CancellationToken cancellationToken = default)
    {
        var model = trainer.Model;
        var be = model.Backend;
        bool writes = trainer.Communicator.Rank == 0;
        if (!writes && trainer.Optimizer.Shard is null) return null;
        var m = writes ? new float[model.ParameterTotal] : [];
        var v = writes ? new float[model.ParameterTotal] : [];
        trainer.Optimizer.DownloadMoments(m, v); // sharded: a collective, in which only rank 0 keeps the result
        if (!writes) return null;
        var p = new float[model.ParameterTotal];
        be.Download<float>(p, model.Parameters);
        return _writer.Save(new CheckpointContent
        {
            Step = trainer.Step,
            Config = model.Config,
            Table = model.ParameterTable,
            Parameters = p,
            AdamM = m,
            AdamV = v,
            TrainerState = TrainerStateJson.Write(trainer.State, settings),
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { [VocabularyFile] = VocabularyBytes(vocabulary) },
        }, cancellationToken);
    }

    /// <summary>Loads the newest complete checkpoint for a resume: checks the files against the
    /// manifest, the tensors against the model's table and the stored settings against
    /// <paramref name="settings"/> (keys present in both must be equal), then writes the weights into
    /// <paramref name="model"/>. Nothing in the model changes when a check fails.</summary>
    /// <exception cref="CheckpointFormatException">No complete checkpoint, a corrupt one, or one without trainer or optimizer state.</exception>
    /// <exception cref="TensorMismatchException">The checkpoint is of another model; lists every tensor with both shapes.</exception>
    /// <exception cref="CheckpointSettingsMismatchException">A setting differs.</exception>
    public ResumePoint Load(BertModelBase model, IReadOnlyDictionary<string, string> settings)
    {
        var ckpt = CheckpointReader.Open(Root, verify: true, _fs);
        string statePath = Path.Combine(ckpt.Directory, CheckpointWriter.TrainerStateFile);
        if (!ckpt.HasTrainerState || !ckpt.HasOptimizerState)
            throw new CheckpointFormatException(statePath, "files", "(absent)",
                $"a weights-only checkpoint (no {CheckpointWriter.TrainerStateFile} or {CheckpointWriter.OptimizerFile}) cannot be resumed");
        var (state, saved) = TrainerStateJson.Read(ckpt.ReadTrainerState(), statePath);
        if (state.Step != ckpt.Step)
            throw new CheckpointFormatException(statePath, "step", state.Step.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"differs from the manifest's step {ckpt.Step}");

        // Tensors before settings: a checkpoint of another model is best explained tensor by tensor.
        var p = new float[model.ParameterTotal];
        ckpt.ReadParameters(model.ParameterTable, p);
        foreach (var (k, v) in settings.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            if (saved.TryGetValue(k, out var old) && old != v)
                throw new CheckpointSettingsMismatchException(ckpt.Directory, k, v, old);
        var m = new float[model.ParameterTotal];
        var vv = new float[model.ParameterTotal];
        ckpt.ReadOptimizerState(model.ParameterTable, m, vv);
        model.Backend.Upload<float>(model.Parameters, p);
        return new ResumePoint(ckpt.Directory, state, saved, m, vv);
    }

    /// <summary>vocab.txt in canonical form: its XXH64 is <see cref="Vocabulary.Hash"/>.</summary>
    public static byte[] VocabularyBytes(Vocabulary vocabulary)
    {
        var sb = new StringBuilder(vocabulary.Count * 8);
        foreach (var t in vocabulary.Tokens) sb.Append(t).Append('\n');
        return new UTF8Encoding(false).GetBytes(sb.ToString());
    }
}
