using Bert.Runtime.Data;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.Reliability;

/// <summary>Issue 17: preparing the train and held-out sets at two sequence lengths said "100.0% instances" four
/// times without naming the dataset, the bar returning to 0 for each.</summary>
public class PrepareProgressTests
{
    /// <summary>Reports synchronously, in order (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class Recorder : IProgress<PrepareProgress>
    {
        public readonly List<PrepareProgress> Reports = [];
        public void Report(PrepareProgress value) { lock (Reports) Reports.Add(value); }
    }

    [Test]
    public void EachDatasetIsNamedAndTheFractionCoversThemAll()
    {
        using var dir = new Bert.Tests.Data.TempDirectory();
        string corpus = SyntheticCorpus.Write(Path.Combine(dir.Path, "c.txt"), 60, 6, seed: 3);
        string vocab = Path.Combine(dir.Path, "vocab.txt");
        SyntheticCorpus.Vocabulary.Save(vocab);
        var recorder = new Recorder();
        CorpusPretrainingData.Prepare([corpus], Path.Combine(dir.Path, "work"), vocab, [32, 64], dupeFactor: 1, progress: recorder);

        var names = recorder.Reports.Select(r => r.Stage[..r.Stage.IndexOf(':')]).Distinct().ToArray();
        Assert.That(names, Is.EqualTo(new[] { "train seq32", "train seq64", "held-out seq32", "held-out seq64" }));
        // One bar over the four datasets: dataset k of 4 reports within [k/4, (k+1)/4].
        for (int k = 0; k < names.Length; k++)
            Assert.That(recorder.Reports.Where(r => r.Stage.StartsWith(names[k] + ":", StringComparison.Ordinal)).Select(r => r.Fraction),
                Is.All.InRange(k / 4.0, (k + 1) / 4.0), names[k]);
    }

    [Test]
    public void ForDatasetScalesAndNames()
    {
        var recorder = new Recorder();
        var p = PrepareProgress.ForDataset(recorder, "held-out seq512", 3, 4)!;
        p.Report(new PrepareProgress(PrepareProgress.Instances, 0.5, InstancesWritten: 7));
        Assert.That(recorder.Reports.Single(), Is.EqualTo(new PrepareProgress("held-out seq512: instances", 0.875, InstancesWritten: 7)));
        Assert.That(PrepareProgress.ForDataset(null, "x", 0, 1), Is.Null);
    }
}
