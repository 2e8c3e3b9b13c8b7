using Bert.Cli.Commands;
using Bert.Runtime.Data;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using NUnit.Framework;

namespace Bert.Tests.Reliability;

/// <summary>Issue 17: the default job (`bert pretrain` with no options) trains the tiny sizes without dropout;
/// an explicit --preset keeps the published configuration.</summary>
public class DefaultJobTests
{
    [Test]
    public void TheDefaultModelIsTinyWithoutDropout()
    {
        var (config, name) = PretrainCommand.ModelOf(new PretrainSettings());
        Assert.That((config.Layers, config.Hidden, config.Heads, config.Intermediate), Is.EqualTo((2, 128, 2, 512)));
        Assert.That((config.HiddenDropout, config.AttentionDropout), Is.EqualTo((0f, 0f)));
        Assert.That(name, Is.EqualTo(PretrainCommand.DefaultModelName));
        Assert.That(ModelPresets.NameOf(config), Is.EqualTo("tiny"), "the sizes are BERT-Tiny's");
    }

    [Test]
    public void AnExplicitTinyPresetKeepsBertsDropout()
    {
        var (config, name) = PretrainCommand.ModelOf(new PretrainSettings { Preset = "tiny" });
        Assert.That((config.HiddenDropout, config.AttentionDropout), Is.EqualTo((0.1f, 0.1f)));
        Assert.That(name, Is.EqualTo("tiny"));
    }

    [Test]
    public void ResumingTheDefaultJobWithPresetTinyIsAnotherRun()
    {
        var vocab = Bert.Tests.Data.SyntheticCorpus.Vocabulary;
        Assert.That(new PretrainSettings().Fingerprint(vocab)["preset"],
            Is.Not.EqualTo(new PretrainSettings { Preset = "tiny" }.Fingerprint(vocab)["preset"]));
    }

    [Test]
    public void TheDefaultScheduleIsShortSequencesThenAFifthOfTheStepsLong()
    {
        var d = new PretrainSettings();
        var phases = PhasePlan.Create(d.Steps, d.LongFraction,
            (d.Seq, PretrainingDataOptions.DefaultMaxPredictions(d.Seq), d.Batch, d.MicroBatch),
            (d.SeqLong, PretrainingDataOptions.DefaultMaxPredictions(d.SeqLong), d.BatchLong, d.MicroBatchLong));
        Assert.That(phases.Select(p => (p.SeqLength, p.MaxPredictions, p.BatchSize, p.Steps)),
            Is.EqualTo(new[] { (32, 8, 32, 4675L), (128, 20, 32, 825L) }), "the README's schedule: 4,675 steps at S=32, then 825 at S=128, batch 32");
        Assert.That(d.LearningRate, Is.EqualTo(1e-3));
        Assert.That(d.VocabSize, Is.EqualTo(8000));
    }

    [Test]
    public void EveryCommandLineDefaultIsTheSettingsDefault()
    {
        var d = new PretrainSettings();
        var r = PretrainCommand.Create().Parse(Array.Empty<string>());
        Assert.That(r.Errors, Is.Empty);
        Assert.Multiple(() =>
        {
            Assert.That(r.GetValue<long>("--steps"), Is.EqualTo(d.Steps));
            Assert.That(r.GetValue<int>("--batch"), Is.EqualTo(d.Batch));
            Assert.That(r.GetValue<int>("--batch-long"), Is.EqualTo(d.BatchLong));
            Assert.That(r.GetValue<double>("--lr"), Is.EqualTo(d.LearningRate));
            Assert.That(r.GetValue<double>("--long-fraction"), Is.EqualTo(d.LongFraction));
            Assert.That(r.GetValue<int>("--seq"), Is.EqualTo(d.Seq));
            Assert.That(r.GetValue<int>("--seq-long"), Is.EqualTo(d.SeqLong));
            Assert.That(r.GetValue<string>("--out"), Is.EqualTo(d.Output));
            Assert.That(r.GetValue<ulong>("--seed"), Is.EqualTo(d.Seed));
            Assert.That(r.GetValue<long>("--checkpoint-every"), Is.EqualTo(d.CheckpointEvery));
            Assert.That(r.GetValue<int>("--keep"), Is.EqualTo(d.Keep));
            Assert.That(r.GetValue<long>("--eval-sequences"), Is.EqualTo(d.EvalSequences));
            Assert.That(r.GetValue<int>("--vocab-size"), Is.EqualTo(d.VocabSize));
            Assert.That(r.GetValue<string>("--device"), Is.EqualTo(d.Device));
            Assert.That(r.GetValue<bool>("--tensorboard"), Is.EqualTo(d.TensorBoard));
            Assert.That(r.GetValue<double>("--dist-timeout"), Is.EqualTo(d.DistTimeoutSeconds));
        });
    }
}
