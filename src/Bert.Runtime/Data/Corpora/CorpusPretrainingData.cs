namespace Bert.Runtime.Data;

/// <summary>What <see cref="CorpusPretrainingData.Prepare"/> made: the vocabulary, and the training and
/// held-out datasets per sequence length.</summary>
public sealed record CorpusPretrainingFiles(string VocabPath, IReadOnlyDictionary<int, string> Datasets,
    IReadOnlyDictionary<int, string> HeldOutDatasets, int TrainDocuments, int HeldOutDocuments);

/// <summary>
/// `bert pretrain --corpus FILE...`: from text to datasets in one step, as the default job does for the
/// Brown corpus. The documents of all files (the corpus format: one sentence per line, documents
/// separated by blank lines) are split deterministically, every 20th document held out; a WordPiece
/// vocabulary is learned from the training documents unless one is given; S=128 and S=512 datasets
/// (and held-out ones) are written under the run directory and reused while they are current.
/// The corpus is held in memory: for corpora far larger than RAM, prepare datasets with `bert prepare`
/// per shard of the input and pass them with --data.
/// </summary>
public static class CorpusPretrainingData
{
    public const int HeldOutEvery = 20;

    public static CorpusPretrainingFiles Prepare(IReadOnlyList<string> corpusFiles, string workDirectory, string? vocabPath,
        IReadOnlyList<int> seqLengths, int vocabSize = 8000, int dupeFactor = 5, ulong seed = 12345,
        IProgress<PrepareProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (corpusFiles.Count == 0) throw new ArgumentException("no corpus files", nameof(corpusFiles));
        var train = new List<string[]>();
        var held = new List<string[]>();
        foreach (var file in corpusFiles)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"--corpus {file}: file not found", file);
            var text = TextCorpus.Read(file, CorpusFormat.Documents, null, cancellationToken);
            foreach (var d in text.Documents)
                ((train.Count + held.Count) % HeldOutEvery == HeldOutEvery - 1 ? held : train).Add(d);
        }
        if (train.Count == 0)
            throw new InvalidDataException($"--corpus {string.Join(" ", corpusFiles)}: no documents (the corpus format is one sentence per line, documents separated by blank lines)");
        string source = string.Join(", ", corpusFiles.Select(Path.GetFileName));
        var trainText = new TextCorpus(train, source);
        Directory.CreateDirectory(workDirectory);

        Vocabulary vocab;
        string resolvedVocab;
        if (vocabPath is not null)
        {
            vocab = Vocabulary.Load(vocabPath);
            resolvedVocab = Path.GetFullPath(vocabPath);
        }
        else
        {
            resolvedVocab = Path.Combine(workDirectory, "vocab.txt");
            if (File.Exists(resolvedVocab)) vocab = Vocabulary.Load(resolvedVocab);
            else
            {
                vocab = VocabularyTrainer.Train(trainText, new VocabularyTrainerOptions { VocabularySize = vocabSize }, null, cancellationToken);
                vocab.Save(resolvedVocab);
                vocab = Vocabulary.Load(resolvedVocab);
            }
        }

        var datasets = new Dictionary<int, string>();
        var heldOut = new Dictionary<int, string>();
        TokenizedCorpus? tokens = null, heldTokens = null;
        foreach (int seq in seqLengths)
        {
            var options = new PretrainingDataOptions { SeqLength = seq, DupeFactor = dupeFactor, Seed = seed };
            string dir = PretrainingDataBuilder.DatasetDirectory(Path.Combine(workDirectory, "data"), seq);
            datasets[seq] = dir;
            if (BrownPretrainingData.IsCurrent(dir, vocab, options)) continue;
            tokens ??= TokenizedCorpus.Tokenize(trainText, new BertTokenizer(vocab), null, cancellationToken);
            PretrainingDataBuilder.Build(tokens, source, vocab, options, dir, progress, cancellationToken);
        }
        if (held.Count > 0)
            foreach (int seq in seqLengths)
            {
                var options = new PretrainingDataOptions { SeqLength = seq, DupeFactor = 1, Seed = seed + 1 };
                string dir = PretrainingDataBuilder.DatasetDirectory(Path.Combine(workDirectory, "heldout"), seq);
                heldOut[seq] = dir;
                if (BrownPretrainingData.IsCurrent(dir, vocab, options)) continue;
                heldTokens ??= TokenizedCorpus.Tokenize(new TextCorpus(held, source + " (held out)"), new BertTokenizer(vocab), null, cancellationToken);
                PretrainingDataBuilder.Build(heldTokens, source + " (held out)", vocab, options, dir, progress, cancellationToken);
            }
        return new CorpusPretrainingFiles(resolvedVocab, datasets, heldOut, train.Count, held.Count);
    }
}
