using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

public class VocabularyTrainerTests
{
    private static TextCorpus Corpus() => new(SyntheticCorpus.Documents(40, 20, seed: 3), "synthetic");

    [Test]
    public void LayoutSpecialsCharactersAndContinuations()
    {
        var v = VocabularyTrainer.Train(Corpus(), new VocabularyTrainerOptions { VocabularySize = 120 });
        Assert.That(v.Tokens.Take(5), Is.EqualTo(new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }));
        Assert.That(v.Count, Is.EqualTo(120));
        var chars = Corpus().Documents.SelectMany(d => d).SelectMany(s => s).Where(c => c != ' ').Distinct();
        foreach (char c in chars)
        {
            Assert.That(v.TryGetId(c.ToString(), out _), $"'{c}' in the vocabulary");
            Assert.That(v.TryGetContinuationId(c.ToString(), out _), $"'##{c}' in the vocabulary");
        }
    }

    [Test]
    public void IsDeterministicAndLearnsFrequentUnits()
    {
        var options = new VocabularyTrainerOptions { VocabularySize = 150 };
        var a = VocabularyTrainer.Train(Corpus(), options);
        var b = VocabularyTrainer.Train(Corpus(), options);
        Assert.That(a.Tokens, Is.EqualTo(b.Tokens));
        Assert.That(a.Hash, Is.EqualTo(b.Hash));
        // The syllables are the corpus's building blocks: the frequent ones are merged early.
        Assert.That(a.TryGetId("ka", out _) || a.TryGetContinuationId("ka", out _));
        // Training words never tokenize to [UNK].
        var tok = new BertTokenizer(a);
        foreach (var s in Corpus().Documents[0]) Assert.That(tok.Encode(s), Does.Not.Contain(a.UnkId));
    }

    [Test]
    public void MergesByFrequencyWithContinuationPrefix()
    {
        // "low" ×5, "lower" ×1, "newest" ×6, "widest" ×3: the classic BPE example.
        var counts = new Dictionary<string, long> { ["low"] = 5, ["lower"] = 1, ["newest"] = 6, ["widest"] = 3 };
        var v = VocabularyTrainer.Train(counts, new VocabularyTrainerOptions { VocabularySize = 1000, MinFrequency = 2 });
        var merged = v.Tokens.Skip(5).SkipWhile(t => t.Length == 1 || (t.StartsWith("##") && t.Length == 3)).ToList();
        // First merges: ##e+##s (9), then ##es+##t (9), then l+##o (7) ...
        Assert.That(merged.Take(3), Is.EqualTo(new[] { "##es", "##est", "lo" }));
        Assert.That(merged, Does.Contain("newest").And.Contain("low"));
        Assert.That(merged, Does.Not.Contain("lower"), "pairs seen once are not merged at min frequency 2");
    }

    [Test]
    public void TooSmallSizeIsRejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            VocabularyTrainer.Train(Corpus(), new VocabularyTrainerOptions { VocabularySize = 10 }))!;
        Assert.That(e.Message, Does.Contain("10").And.Contain("characters"));
    }
}
