using Bert.Cli;
using Bert.Cli.Commands;
using NUnit.Framework;

namespace Bert.Tests.Generator;

/// <summary>`bert info --preset NAME`: the table summary and totals, and errors for bad input.</summary>
public class InfoCommandTests
{
    private static string Info(string preset, int? vocab = null, bool full = false)
    {
        var text = new StringWriter();
        InfoCommand.Write(text, preset, vocab, full);
        return text.ToString();
    }

    [Test]
    public void Base_PrintsLayerZero_SummarizesTheRest_AndTotals()
    {
        var text = Info("base");
        Assert.That(text, Does.Contain("BertBase (preset \"base\"): 12 layers, hidden 768, 12 heads"));
        Assert.That(text, Does.Contain("bert.encoder.layer.0.attention.self.query.weight"));
        Assert.That(text, Does.Not.Contain("bert.encoder.layer.5.attention"));
        Assert.That(text, Does.Contain("bert.encoder.layer.1 … 11").And.Contain("7,087,872 each"));
        Assert.That(text, Does.Contain("109,482,240"));
        Assert.That(text, Does.Contain("110,106,428"));
        Assert.That(text, Does.Contain("[30522, 768]"));
        // HuggingFace module order: embeddings, layer 0, pooler, heads.
        int word = text.IndexOf("bert.embeddings.word_embeddings.weight", StringComparison.Ordinal);
        int position = text.IndexOf("bert.embeddings.position_embeddings.weight", StringComparison.Ordinal);
        int emb = text.IndexOf("bert.embeddings.LayerNorm.bias", StringComparison.Ordinal);
        int layer = text.IndexOf("bert.encoder.layer.0.attention.self.query.weight", StringComparison.Ordinal);
        int pooler = text.IndexOf("bert.pooler.dense.weight", StringComparison.Ordinal);
        int mlm = text.IndexOf("cls.predictions.transform.dense.weight", StringComparison.Ordinal);
        Assert.That(new[] { word, position, emb, layer, pooler, mlm }, Is.Ordered.And.All.GreaterThan(0));
    }

    [Test]
    public void Full_PrintsEveryLayer()
    {
        var text = Info("large", full: true);
        Assert.That(text, Does.Contain("bert.encoder.layer.23.output.LayerNorm.bias"));
        Assert.That(text, Does.Contain("335,141,888").And.Contain("336,226,108"));
    }

    [Test]
    public void VocabSize_RelaysOutTheTable()
    {
        var text = Info("tiny", vocab: 8000);
        Assert.That(text, Does.Contain("vocabulary 8000").And.Contain("[8000, 128]"));
        long expected = Bert.Runtime.Presets.ModelPresets.TotalParameters("tiny") - 129L * (30522 - 8000);
        Assert.That(text, Does.Contain(expected.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Test]
    public void UnknownPreset_IsAUserErrorListingTheValidNames()
    {
        var e = Assert.Throws<UserException>(() => Info("giant"));
        Assert.That(e!.Message, Does.Contain("'giant'").And.Contain("tiny, mini, small, medium, base, large"));
        Assert.That(e.ExitCode, Is.EqualTo(ExitCodes.Usage));
    }

    [Test]
    public void NonPositiveVocabSize_IsAUserError()
    {
        var e = Assert.Throws<UserException>(() => Info("tiny", vocab: 0));
        Assert.That(e!.Message, Does.Contain("--vocab-size").And.Contain("0"));
    }
}
