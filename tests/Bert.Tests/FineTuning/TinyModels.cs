using Bert.Dsl;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;

namespace Bert.Tests.FineTuning;

/// <summary>A small classifier for training tests: one layer, odd sizes, vocabulary of the synthetic task.</summary>
[BertModel]
[Embeddings(VocabSize = 25, MaxPositions = 16, TypeVocabSize = 2, Hidden = 32)]
[EncoderLayer(Heads = 4, Intermediate = 37)]
[Repeat(1)]
[Pooler]
[ClassificationHead(Labels = 2)]
public partial class TinySyntheticClassifier;

/// <summary>Checkpoints of the BERT-Tiny preset over a small word vocabulary, written to a temp folder.</summary>
internal static class TinyCheckpoints
{
    /// <summary>The words of the test sentences; each is one WordPiece token.</summary>
    public static readonly string[] Words =
    [
        "the", "man", "went", "to", "store", "park", "a", "good", "bad", "film", "was", "great", "awful", "it", ".", ",",
        "is", "not", "very", "and", "where", "did", "go", "?", "john", "paris", "lives", "in", "who",
    ];

    public static Vocabulary Vocabulary { get; } = Vocabulary.FromTokens(Bert.Runtime.Data.Vocabulary.SpecialTokens.Concat(Words), "tiny-test-vocab");

    /// <summary>A BERT-Tiny pretraining model over <see cref="Vocabulary"/>.</summary>
    public static BertModelBase CreatePretraining(IBackend backend, int maxBatch, int maxSeq, int maxPredictions) =>
        ModelPresets.Create("tiny", backend, maxBatch, maxSeq, maxPredictions, Vocabulary.Count);

    /// <summary>Saves <paramref name="model"/> as checkpoint step <paramref name="step"/> under <paramref name="root"/>
    /// with vocab.txt; returns the step directory.</summary>
    public static string Save(BertModelBase model, string root, long step = 1)
    {
        var host = new float[model.ParameterTotal];
        model.Backend.Download<float>(host, model.Parameters);
        var vocab = string.Concat(Vocabulary.Tokens.Select(t => t + "\n"));
        return new CheckpointWriter(root).Save(new CheckpointContent
        {
            Step = step,
            Config = model.Config,
            Table = model.ParameterTable,
            Parameters = host,
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = System.Text.Encoding.UTF8.GetBytes(vocab) },
        });
    }

    /// <summary>A randomly initialized BERT-Tiny checkpoint (seed <paramref name="seed"/>).</summary>
    public static string WriteRandom(IBackend backend, string root, ulong seed = 3)
    {
        using var model = CreatePretraining(backend, 1, 8, 1);
        model.InitializeParameters(seed);
        return Save(model, root);
    }
}
