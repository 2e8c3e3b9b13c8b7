namespace Bert.Runtime.Data;

/// <summary>What <see cref="BrownPretrainingData.Prepare"/> made (or found cached) under the data root.</summary>
/// <param name="Corpus">The converted corpus text files.</param>
/// <param name="VocabPath">data/brown/vocab-N.txt, learned from the training split.</param>
/// <param name="Datasets">Sequence length → dataset directory (data/brown/pretrain-N/seqS).</param>
/// <param name="HeldOutDatasets">Sequence length → held-out dataset directory (data/brown/heldout-N/seqS),
/// made from the held-out documents with dupe factor 1 and its own seed.</param>
public sealed record BrownPretrainingFiles(BrownCorpusFiles Corpus, string VocabPath, IReadOnlyDictionary<int, string> Datasets,
    IReadOnlyDictionary<int, string> HeldOutDatasets);

/// <summary>
/// The default pretraining data, in one call: the Brown corpus converted, a WordPiece vocabulary
/// learned from its training split, and one shard dataset per sequence length (for the 128/512
/// schedule). Every step is skipped when its output already exists with the same settings, so a
/// trainer can call this at every start.
/// </summary>
public static class BrownPretrainingData
{
    public static BrownPretrainingFiles Prepare(string dataRoot, IReadOnlyList<int> seqLengths, int vocabSize = 8000,
        int dupeFactor = 5, ulong seed = 12345, IProgress<PrepareProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var corpus = BrownCorpus.Prepare(dataRoot, cancellationToken);
        string brownDir = Path.GetDirectoryName(corpus.TrainPath)!;
        string vocabPath = Path.Combine(brownDir, $"vocab-{vocabSize}.txt");
        Vocabulary vocab;
        TextCorpus? text = null;
        if (File.Exists(vocabPath))
        {
            vocab = Vocabulary.Load(vocabPath);
        }
        else
        {
            text = TextCorpus.Read(corpus.TrainPath, CorpusFormat.Documents, null, cancellationToken);
            vocab = VocabularyTrainer.Train(text, new VocabularyTrainerOptions { VocabularySize = vocabSize }, null, cancellationToken);
            vocab.Save(vocabPath);
            vocab = Vocabulary.Load(vocabPath);
        }

        var datasets = new Dictionary<int, string>();
        TokenizedCorpus? tokens = null;
        int built = 0, toBuild = 2 * seqLengths.Count;
        foreach (int seq in seqLengths)
        {
            var options = new PretrainingDataOptions { SeqLength = seq, DupeFactor = dupeFactor, Seed = seed };
            string dir = PretrainingDataBuilder.DatasetDirectory(Path.Combine(brownDir, $"pretrain-{vocabSize}"), seq);
            datasets[seq] = dir;
            if (IsCurrent(dir, vocab, options)) { built++; continue; }
            text ??= TextCorpus.Read(corpus.TrainPath, CorpusFormat.Documents, null, cancellationToken);
            tokens ??= TokenizedCorpus.Tokenize(text, new BertTokenizer(vocab), null, cancellationToken);
            PretrainingDataBuilder.Build(tokens, corpus.TrainPath, vocab, options, dir,
                PrepareProgress.ForDataset(progress, $"train seq{seq}", built++, toBuild), cancellationToken);
        }

        var heldOut = new Dictionary<int, string>();
        TokenizedCorpus? heldOutTokens = null;
        foreach (int seq in seqLengths)
        {
            var options = new PretrainingDataOptions { SeqLength = seq, DupeFactor = 1, Seed = seed + 1 };
            string dir = PretrainingDataBuilder.DatasetDirectory(Path.Combine(brownDir, $"heldout-{vocabSize}"), seq);
            heldOut[seq] = dir;
            if (IsCurrent(dir, vocab, options)) { built++; continue; }
            heldOutTokens ??= TokenizedCorpus.Tokenize(TextCorpus.Read(corpus.HeldOutPath, CorpusFormat.Documents, null, cancellationToken),
                new BertTokenizer(vocab), null, cancellationToken);
            PretrainingDataBuilder.Build(heldOutTokens, corpus.HeldOutPath, vocab, options, dir,
                PrepareProgress.ForDataset(progress, $"held-out seq{seq}", built++, toBuild), cancellationToken);
        }
        return new BrownPretrainingFiles(corpus, vocabPath, datasets, heldOut);
    }

    internal static bool IsCurrent(string dir, Vocabulary vocab, PretrainingDataOptions options)
    {
        string statsPath = Path.Combine(dir, PretrainingDataBuilder.StatsFileName);
        if (!File.Exists(statsPath)) return false;
        try
        {
            var s = PretrainingStats.FromJson(File.ReadAllText(statsPath));
            return s.VocabHash == vocab.Hash.ToString("x16") && s.SeqLength == options.SeqLength
                && s.MaxPredictions == options.ResolvedMaxPredictions && s.DupeFactor == options.DupeFactor
                && s.Seed == options.Seed && s.WholeWordMask == options.WholeWordMask && s.LowerCase == options.LowerCase
                && s.ShortSeqProb == options.ShortSeqProb && s.MaskedLmProb == options.MaskedLmProb;
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }
}
