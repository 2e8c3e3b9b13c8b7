using Bert.Cli.Commands;
using Bert.Runtime.Presets;
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
}
