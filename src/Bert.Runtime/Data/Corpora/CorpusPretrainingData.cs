namespace Bert.Runtime.Data;

/// <summary>What <see cref="CorpusPretrainingData.Prepare"/> made: the vocabulary, and the training and
/// held-out datasets per sequence length.</summary>
public sealed record CorpusPretrainingFiles(string VocabPath, IReadOnlyDictionary<int, string> Datasets,
    IReadOnlyDictionary<int, string> HeldOutDatasets, int TrainDocuments, int HeldOutDocuments);

/// <summary>
/// `bert pretrain --corpus FILE...`: from text to datasets in one step, as the default job does for the
/// Brown corpus. The documents of all inputs (files, directories, globs, .gz; the corpus format: one
/// sentence per line, documents separated by blank lines) are split deterministically, every 20th document
/// held out; a WordPiece vocabulary is learned from the training documents unless one is given; S=128 and
/// S=512 datasets (and held-out ones) are written under the run directory and reused while they are
/// current. Everything streams (vocabulary counting and <see cref="PretrainingDataBuilder"/>), so memory
/// is bounded whatever the corpus size.
/// </summary>
public static class CorpusPretrainingData
{
    public const int HeldOutEvery = 20;

    private static bool HeldOut(long document) => document % HeldOutEvery == HeldOutEvery - 1;

    public static CorpusPretrainingFiles Prepare(IReadOnlyList<string> corpusFiles, string workDirectory, string? vocabPath,
        IReadOnlyList<int> seqLengths, int vocabSize = 8000, int dupeFactor = 5, ulong seed = 12345,
        IProgress<PrepareProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (corpusFiles.Count == 0) throw new ArgumentException("no corpus files", nameof(corpusFiles));
        IReadOnlyList<string> files;
        try
        {
            files = CorpusInputs.Expand(corpusFiles);
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException("--corpus " + e.Message, e.FileName, e);
        }
        string source = string.Join(", ", files.Take(3).Select(Path.GetFileName)) + (files.Count > 3 ? $" … ({files.Count} files)" : "");
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
                var counts = VocabularyTrainer.CountWords(new DocumentReader(files, CorpusFormat.Documents), new VocabularyTrainerOptions(),
                    d => !HeldOut(d), cancellationToken);
                if (counts.Count == 0)
                    throw new InvalidDataException($"--corpus {string.Join(" ", corpusFiles)}: no documents (the corpus format is one sentence per line, documents separated by blank lines)");
                vocab = VocabularyTrainer.Train(counts, new VocabularyTrainerOptions { VocabularySize = vocabSize }, source, null, cancellationToken);
                vocab.Save(resolvedVocab);
                vocab = Vocabulary.Load(resolvedVocab);
            }
        }

        var datasets = new Dictionary<int, string>();
        var heldOut = new Dictionary<int, string>();
        int trainDocuments = 0, heldDocuments = 0, built = 0, toBuild = 2 * seqLengths.Count;
        foreach (int seq in seqLengths)
        {
            var options = new PretrainingDataOptions { SeqLength = seq, DupeFactor = dupeFactor, Seed = seed };
            string dir = PretrainingDataBuilder.DatasetDirectory(Path.Combine(workDirectory, "data"), seq);
            datasets[seq] = dir;
            if (!BrownPretrainingData.IsCurrent(dir, vocab, options))
                PretrainingDataBuilder.Build(files, CorpusFormat.Documents, vocab, options, dir,
                    PrepareProgress.ForDataset(progress, $"train seq{seq}", built, toBuild), cancellationToken, include: d => !HeldOut(d),
                    corpusName: source);
            built++;
            trainDocuments = PretrainingStats.FromJson(File.ReadAllText(Path.Combine(dir, PretrainingDataBuilder.StatsFileName))).Documents;
        }
        foreach (int seq in seqLengths)
        {
            var options = new PretrainingDataOptions { SeqLength = seq, DupeFactor = 1, Seed = seed + 1 };
            string dir = PretrainingDataBuilder.DatasetDirectory(Path.Combine(workDirectory, "heldout"), seq);
            try
            {
                if (!BrownPretrainingData.IsCurrent(dir, vocab, options))
                    PretrainingDataBuilder.Build(files, CorpusFormat.Documents, vocab, options, dir,
                        PrepareProgress.ForDataset(progress, $"held-out seq{seq}", built++, toBuild), cancellationToken, include: HeldOut,
                        corpusName: source + " (held out)");
            }
            catch (CorpusFormatException) when (!Directory.Exists(dir))
            {
                continue; // fewer than 20 documents (or none with two sentences among the held-out ones): no held-out set
            }
            heldOut[seq] = dir;
            heldDocuments = PretrainingStats.FromJson(File.ReadAllText(Path.Combine(dir, PretrainingDataBuilder.StatsFileName))).Documents;
        }
        return new CorpusPretrainingFiles(resolvedVocab, datasets, heldOut, trainDocuments, heldDocuments);
    }
}
