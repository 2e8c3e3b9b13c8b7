using Bert.Runtime;
using Bert.Runtime.IO;
using NUnit.Framework;

namespace Bert.Tests.IO;

public class ParameterLayoutTests
{
    private static BertConfig BertBase(bool heads = true) => new()
    {
        Name = "base",
        VocabSize = 30522,
        MaxPositions = 512,
        TypeVocabSize = 2,
        Hidden = 768,
        Layers = 12,
        Heads = 12,
        Intermediate = 3072,
        HasPooler = heads,
        HasMlmHead = heads,
        HasNspHead = heads,
    };

    [Test]
    public void BertBasePretrainingHasTheKnownParameterCount()
    {
        // transformers' BertForPreTraining(bert-base-uncased): 110,106,428 parameters (decoder tied).
        var table = ParameterLayout.ForPretraining(BertBase());
        Assert.That(ParameterLayout.Total(table), Is.EqualTo(110_106_428L));
        Assert.That(table, Has.Count.EqualTo(5 + 16 * 12 + 2 + 5 + 2));
    }

    [Test]
    public void ForPretrainingAddsTheHeadsWhateverTheConfigDeclares()
    {
        var bare = BertBase(heads: false);
        Assert.That(ParameterLayout.ForPretraining(bare).Select(p => p.Name), Is.EqualTo(ParameterLayout.For(BertBase()).Select(p => p.Name)));
        // A config whose heads no HuggingFace architecture (and so no built-in class) has is refused by name.
        var e = Assert.Throws<ArgumentException>(() => ParameterLayout.For(bare))!;
        Assert.That(e.Message, Does.Contain("no HuggingFace BERT architecture matches"));
        Assert.That(ParameterLayout.For(bare with { HasPooler = true }).Any(p => p.Name.StartsWith("cls.", StringComparison.Ordinal)), Is.False, "BertModel");
    }

    [Test]
    public void LayoutFollowsTheGeneratorRule()
    {
        var config = ConfigJsonTests.Tiny();
        var table = ParameterLayout.ForPretraining(config);
        string L(int l, string s) => $"bert.encoder.layer.{l}.{s}";
        var expected = new List<string>
        {
            "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
        };
        for (int l = 0; l < 2; l++)
            expected.AddRange([L(l, "attention.self.query.weight"), L(l, "attention.self.key.weight"), L(l, "attention.self.value.weight"),
                L(l, "attention.output.dense.weight"), L(l, "intermediate.dense.weight"), L(l, "output.dense.weight")]);
        expected.AddRange(["bert.pooler.dense.weight", "cls.predictions.transform.dense.weight", "cls.seq_relationship.weight",
            "bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"]);
        for (int l = 0; l < 2; l++)
            expected.AddRange([L(l, "attention.self.query.bias"), L(l, "attention.self.key.bias"), L(l, "attention.self.value.bias"),
                L(l, "attention.output.dense.bias"), L(l, "attention.output.LayerNorm.weight"), L(l, "attention.output.LayerNorm.bias"),
                L(l, "intermediate.dense.bias"), L(l, "output.dense.bias"), L(l, "output.LayerNorm.weight"), L(l, "output.LayerNorm.bias")]);
        expected.AddRange(["bert.pooler.dense.bias", "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias", "cls.seq_relationship.bias"]);
        Assert.That(table.Select(p => p.Name), Is.EqualTo(expected));

        // Decayed rows form one prefix; offsets are contiguous from 0.
        int firstUndecayed = table.ToList().FindIndex(p => !p.Decay);
        Assert.That(table.Take(firstUndecayed).All(p => p.Decay && p.Init == ParameterInit.Normal));
        Assert.That(table.Skip(firstUndecayed).All(p => !p.Decay));
        long offset = 0;
        foreach (var p in table)
        {
            Assert.That(p.Offset, Is.EqualTo(offset), p.Name);
            offset += p.Count;
        }
        Assert.That(table.Where(p => p.Name.EndsWith("LayerNorm.weight")).All(p => p.Init == ParameterInit.Ones));
        Assert.That(table.Where(p => p.Name.EndsWith(".bias")).All(p => p.Init == ParameterInit.Zeros));
        var shapes = table.ToDictionary(p => p.Name, p => p.ShapeText);
        Assert.That(shapes["bert.encoder.layer.1.intermediate.dense.weight"], Is.EqualTo("[37, 32]"));
        Assert.That(shapes["bert.encoder.layer.1.output.dense.weight"], Is.EqualTo("[32, 37]"));
        Assert.That(shapes["cls.predictions.bias"], Is.EqualTo("[99]"));
        Assert.That(shapes["cls.seq_relationship.weight"], Is.EqualTo("[2, 32]"));
    }

    [Test]
    public void FineTuningHeadsUseHuggingFaceNames()
    {
        var cls = ParameterLayout.For(ConfigJsonTests.Tiny() with { HasMlmHead = false, HasNspHead = false, ClassificationLabels = 3 });
        Assert.That(cls.Single(p => p.Name == "classifier.weight").ShapeText, Is.EqualTo("[3, 32]"));
        Assert.That(cls[^1].Name, Is.EqualTo("classifier.bias"));
        var qa = ParameterLayout.For(ConfigJsonTests.Tiny() with { HasPooler = false, HasMlmHead = false, HasNspHead = false, HasSpanHead = true });
        Assert.That(qa.Select(p => p.Name), Does.Contain("qa_outputs.weight").And.Contain("qa_outputs.bias"));
        Assert.Throws<ArgumentException>(() => ParameterLayout.For(ConfigJsonTests.Tiny() with { HasPooler = false }));
    }
}
