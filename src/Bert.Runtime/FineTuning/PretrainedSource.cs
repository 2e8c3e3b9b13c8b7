using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// Where pretrained weights come from: a checkpoint written by this project (a step-N directory, or a
/// run's checkpoint root, whose newest complete checkpoint is used after its manifest checksums are
/// verified) or a HuggingFace model directory (config.json, model.safetensors, vocab.txt), also given as a
/// hub cache repository (models--org--name) or a model id found offline in the HuggingFace cache (<see cref="HfCache"/>).
/// </summary>
public sealed class PretrainedSource
{
    private const string VocabFile = "vocab.txt";

    private PretrainedSource(string directory, ModelConfigFile config, long? step)
    {
        Directory = directory;
        ConfigFile = config;
        Step = step;
    }

    /// <summary>The directory the weights are read from.</summary>
    public string Directory { get; }

    public ModelConfigFile ConfigFile { get; }

    /// <summary>The sizes in config.json (vocabulary included).</summary>
    public BertConfig Config => ConfigFile.Model;

    /// <summary>The checkpoint's optimizer step; null for a HuggingFace directory.</summary>
    public long? Step { get; }

    public string WeightsPath => Path.Combine(Directory, HfInterop.WeightsFile);

    public string VocabularyPath => Path.Combine(Directory, VocabFile);

    /// <summary>Opens <paramref name="path"/> (see the class summary).</summary>
    /// <exception cref="CheckpointFormatException">Neither a checkpoint nor a model directory, or a corrupt checkpoint.</exception>
    /// <exception cref="ConfigFormatException">A malformed config.json.</exception>
    public static PretrainedSource Open(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        // A HuggingFace cache repository or model id (offline, as transformers' local_files_only) gives its snapshot.
        if (HfCache.Resolve(path) is { } resolved) path = resolved;
        string full = CheckpointReader.ResolvePointer(PhysicalFileSystem.Instance, Path.GetFullPath(path));
        if (!System.IO.Directory.Exists(full))
            throw new CheckpointFormatException(full, "directory", "(absent)", "checkpoint directory does not exist");
        if (CheckpointReader.FindLatest(full) is not null)
        {
            var ckpt = CheckpointReader.Open(full, verify: true, cancellationToken: cancellationToken);
            return new PretrainedSource(ckpt.Directory, ckpt.ConfigFile, ckpt.Step);
        }
        string config = Path.Combine(full, ConfigJson.FileName);
        if (File.Exists(config) && File.Exists(Path.Combine(full, HfInterop.WeightsFile)))
            return new PretrainedSource(full, ConfigJson.Read(config), null);
        throw new CheckpointFormatException(full, "directory", "(no checkpoint)",
            "neither a checkpoint (a step-N directory with manifest.json, or a run's checkpoint root) " +
            "nor a model directory with config.json and model.safetensors");
    }

    /// <summary>The vocabulary stored beside the weights.</summary>
    /// <exception cref="FileNotFoundException">No vocab.txt in the directory.</exception>
    public Vocabulary LoadVocabulary()
    {
        if (!File.Exists(VocabularyPath))
            throw new FileNotFoundException($"{Directory}: no {VocabFile} beside the weights; the tokenizer needs the vocabulary the model was trained with", VocabularyPath);
        var vocabulary = Vocabulary.Load(VocabularyPath);
        if (vocabulary.Count != Config.VocabSize)
            throw new InvalidDataException($"{VocabularyPath}: {vocabulary.Count} tokens, but config.json vocab_size is {Config.VocabSize}");
        return vocabulary;
    }

    /// <summary>Whether text is lowercased and stripped of accents before WordPiece: tokenizer_config.json's
    /// "do_lower_case" when present; otherwise uncased unless a vocabulary token (not a [SPECIAL]
    /// one) holds an uppercase letter, which an uncased vocabulary never does.</summary>
    public bool LowerCase(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        string tokenizerConfig = Path.Combine(Directory, HfTokenizerFiles.ConfigFile);
        return HfTokenizerFiles.LowerCase(File.Exists(tokenizerConfig) ? File.ReadAllBytes(tokenizerConfig) : null, tokenizerConfig, vocabulary.Tokens);
    }

    /// <summary>The preset ("tiny" … "large") whose encoder has config.json's sizes; null for any other size
    /// (which loads all the same: sizes are run-time data).</summary>
    public string? PresetName => ModelPresets.NameOf(Config);
}
