using System.Text;
using System.Text.Json;
using Bert.Runtime;
using Bert.Runtime.IO;
using NUnit.Framework;

namespace Bert.Tests.IO;

public class ConfigJsonTests
{
    internal static BertConfig Tiny(string name = "tiny") => new()
    {
        Name = name,
        VocabSize = 99,
        MaxPositions = 19,
        TypeVocabSize = 2,
        Hidden = 32,
        Layers = 2,
        Heads = 4,
        Intermediate = 37,
        HiddenActivation = Activation.Gelu,
        HiddenDropout = 0.1f,
        AttentionDropout = 0.1f,
        LayerNormEps = 1e-12f,
        InitializerRange = 0.02f,
        HasPooler = true,
        HasMlmHead = true,
        HasNspHead = true,
    };

    private static ModelConfigFile RoundTrip(BertConfig config, IReadOnlyList<string>? labels = null) =>
        ConfigJson.Parse(ConfigJson.Serialize(config, labels), "config.json", "unused");

    [Test]
    public void PretrainingConfigRoundTripsWithHuggingFaceKeys()
    {
        var config = Tiny() with { HiddenActivation = Activation.GeluTanh, HiddenDropout = 0.15f, AttentionDropout = 0f, LayerNormEps = 1e-5f, InitializerRange = 0.03f, ClassifierDropout = 0.2f };
        var bytes = ConfigJson.Serialize(config);
        using var doc = JsonDocument.Parse(bytes);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("architectures")[0].GetString(), Is.EqualTo("BertForPreTraining"));
        Assert.That(root.GetProperty("model_type").GetString(), Is.EqualTo("bert"));
        Assert.That(root.GetProperty("hidden_act").GetString(), Is.EqualTo("gelu_new"));
        Assert.That(root.GetProperty("pad_token_id").GetInt32(), Is.EqualTo(0));
        Assert.That(root.GetProperty("position_embedding_type").GetString(), Is.EqualTo("absolute"));
        Assert.That(root.GetProperty("torch_dtype").GetString(), Is.EqualTo("float32"));
        // Floats as their shortest decimal, as Python's json writes them.
        Assert.That(root.GetProperty("hidden_dropout_prob").GetRawText(), Is.EqualTo("0.15"));
        Assert.That(root.GetProperty("layer_norm_eps").GetDouble(), Is.EqualTo(1e-5).Within(1e-12));
        foreach (var key in new[] { "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size", "initializer_range" })
            Assert.That(root.TryGetProperty(key, out _), key);
        Assert.That(root.TryGetProperty("id2label", out _), Is.False, "no labels for a pretraining model");

        var back = RoundTrip(config);
        Assert.That(back.Model, Is.EqualTo(config));
        Assert.That(back.LabelNames, Is.Null);
    }

    [Test]
    public void ClassifierConfigRoundTripsLabels()
    {
        var config = Tiny() with { HasMlmHead = false, HasNspHead = false, ClassificationLabels = 3 };
        var labels = new[] { "negative", "neutral", "positive" };
        var bytes = ConfigJson.Serialize(config, labels);
        using var doc = JsonDocument.Parse(bytes);
        Assert.That(doc.RootElement.GetProperty("architectures")[0].GetString(), Is.EqualTo("BertForSequenceClassification"));
        Assert.That(doc.RootElement.GetProperty("id2label").GetProperty("2").GetString(), Is.EqualTo("positive"));
        Assert.That(doc.RootElement.GetProperty("label2id").GetProperty("neutral").GetInt32(), Is.EqualTo(1));
        var back = RoundTrip(config, labels);
        Assert.That(back.Model, Is.EqualTo(config));
        Assert.That(back.LabelNames, Is.EqualTo(labels));

        var defaults = RoundTrip(config with { ClassificationLabels = 2 });
        Assert.That(defaults.LabelNames, Is.EqualTo(new[] { "LABEL_0", "LABEL_1" }));
    }

    [TestCase("BertForPreTraining", true, true, true, 0, 0, false)]
    [TestCase("BertModel", true, false, false, 0, 0, false)]
    [TestCase("BertForMaskedLM", false, true, false, 0, 0, false)]
    [TestCase("BertForNextSentencePrediction", true, false, true, 0, 0, false)]
    [TestCase("BertForSequenceClassification", true, false, false, 4, 0, false)]
    [TestCase("BertForTokenClassification", false, false, false, 0, 4, false)]
    [TestCase("BertForQuestionAnswering", false, false, false, 0, 0, true)]
    public void ArchitecturesMapToHeadsBothWays(string arch, bool pooler, bool mlm, bool nsp, int cls, int tok, bool span)
    {
        var config = Tiny() with { HasPooler = pooler, HasMlmHead = mlm, HasNspHead = nsp, ClassificationLabels = cls, TokenClassificationLabels = tok, HasSpanHead = span };
        Assert.That(ConfigJson.Architecture(config), Is.EqualTo(arch));
        Assert.That(RoundTrip(config).Model, Is.EqualTo(config));
    }

    [Test]
    public void ReadsARealHuggingFaceConfig()
    {
        // bert-base-uncased's config.json as transformers 4.x saves it.
        const string hf = """
        {
          "architectures": ["BertForMaskedLM"],
          "attention_probs_dropout_prob": 0.1,
          "gradient_checkpointing": false,
          "hidden_act": "gelu",
          "hidden_dropout_prob": 0.1,
          "hidden_size": 768,
          "initializer_range": 0.02,
          "intermediate_size": 3072,
          "layer_norm_eps": 1e-12,
          "max_position_embeddings": 512,
          "model_type": "bert",
          "num_attention_heads": 12,
          "num_hidden_layers": 12,
          "pad_token_id": 0,
          "position_embedding_type": "absolute",
          "transformers_version": "4.6.0.dev0",
          "type_vocab_size": 2,
          "use_cache": true,
          "vocab_size": 30522
        }
        """;
        var c = ConfigJson.Parse(Encoding.UTF8.GetBytes(hf), "bert-base-uncased/config.json", "bert-base-uncased").Model;
        Assert.That((c.Name, c.VocabSize, c.Hidden, c.Layers, c.Heads, c.Intermediate, c.MaxPositions), Is.EqualTo(("bert-base-uncased", 30522, 768, 12, 12, 3072, 512)));
        Assert.That((c.HasMlmHead, c.HasNspHead, c.HasPooler), Is.EqualTo((true, false, false)));
        Assert.That(c.LayerNormEps, Is.EqualTo(1e-12f));
        Assert.That(c.HiddenActivation, Is.EqualTo(Activation.Gelu));
    }

    [Test]
    public void MinimalConfigTakesBertDefaults()
    {
        var c = ConfigJson.Parse("""{"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}"""u8, "c.json", "dir").Model;
        Assert.That(c.Name, Is.EqualTo("dir"));
        Assert.That((c.MaxPositions, c.TypeVocabSize, c.HiddenDropout, c.AttentionDropout, c.InitializerRange, c.LayerNormEps, c.HiddenActivation),
            Is.EqualTo((512, 2, 0.1f, 0.1f, 0.02f, 1e-12f, Activation.Gelu)));
        Assert.That(c.HasMlmHead && c.HasNspHead && c.HasPooler, "no architectures: BertForPreTraining");
    }

    private const string Base = "\"vocab_size\": 99, \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 37";

    [TestCase("{\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 37}", "vocab_size", "(absent)", "missing")]
    [TestCase("{\"vocab_size\": 99, \"hidden_size\": 32, \"num_hidden_layers\": 2, \"intermediate_size\": 37}", "num_attention_heads", "(absent)", "missing")]
    [TestCase("{\"vocab_size\": \"99\", \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 37}", "vocab_size", "\"99\"", "integer")]
    [TestCase("{\"vocab_size\": 99.5, \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 37}", "vocab_size", "99.5", "32-bit integer")]
    [TestCase("{\"vocab_size\": 99, \"hidden_size\": 0, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 37}", "hidden_size", "0", "positive")]
    [TestCase("{\"vocab_size\": 99, \"hidden_size\": 32, \"num_hidden_layers\": -1, \"num_attention_heads\": 4, \"intermediate_size\": 37}", "num_hidden_layers", "-1", "positive")]
    [TestCase("{\"vocab_size\": 99, \"hidden_size\": 30, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 37}", "hidden_size", "30", "divisible")]
    [TestCase("{" + Base + ", \"hidden_act\": \"swish\"}", "hidden_act", "\"swish\"", "unsupported activation")]
    [TestCase("{" + Base + ", \"hidden_act\": 3}", "hidden_act", "3", "string")]
    [TestCase("{" + Base + ", \"model_type\": \"roberta\"}", "model_type", "\"roberta\"", "bert")]
    [TestCase("{" + Base + ", \"architectures\": [\"BertLMHeadModel\"]}", "architectures", "\"BertLMHeadModel\"", "unsupported architecture")]
    [TestCase("{" + Base + ", \"architectures\": \"BertModel\"}", "architectures", "\"BertModel\"", "array")]
    [TestCase("{" + Base + ", \"position_embedding_type\": \"relative_key\"}", "position_embedding_type", "\"relative_key\"", "absolute")]
    [TestCase("{" + Base + ", \"hidden_dropout_prob\": 1.5}", "hidden_dropout_prob", "1.5", "probability")]
    [TestCase("{" + Base + ", \"attention_probs_dropout_prob\": \"0.1\"}", "attention_probs_dropout_prob", "\"0.1\"", "number")]
    [TestCase("{" + Base + ", \"layer_norm_eps\": 0}", "layer_norm_eps", "0", "positive")]
    [TestCase("{" + Base + ", \"pad_token_id\": 200}", "pad_token_id", "200", "[0, 99)")]
    [TestCase("{" + Base + ", \"id2label\": {\"0\": \"a\", \"2\": \"b\"}}", "id2label", "0, 2", "without gaps")]
    [TestCase("{" + Base + ", \"id2label\": {\"0\": 5}}", "id2label.0", "5", "strings")]
    [TestCase("{" + Base + ", \"id2label\": {\"0\": \"a\", \"1\": \"b\"}, \"label2id\": {\"a\": 1, \"b\": 0}}", "label2id.a", "1", "disagrees")]
    [TestCase("{" + Base + ", \"id2label\": {\"0\": \"a\"}, \"num_labels\": 3}", "num_labels", "3", "disagrees")]
    [TestCase("{" + Base + ", \"vocab_size\": 5}", "vocab_size", "(repeated)", "duplicate")]
    [TestCase("[1, 2]", "(root)", "Array", "object")]
    [TestCase("{\"vocab_size\": 99,", "(file)", "line 1", "not valid JSON")]
    public void InvalidConfigNamesFileKeyAndValue(string json, string key, string value, string phrase)
    {
        var e = Assert.Throws<ConfigFormatException>(() => ConfigJson.Parse(Encoding.UTF8.GetBytes(json), "/models/x/config.json", "x"))!;
        Assert.That(e.File, Is.EqualTo("/models/x/config.json"));
        Assert.That(e.Field, Is.EqualTo(key));
        Assert.That(e.Value, Does.StartWith(value));
        Assert.That(e.Message, Does.Contain(phrase));
        Assert.That(e.Message, Does.Contain("/models/x/config.json").And.Contain(key));
    }

    [Test]
    public void UnrepresentableHeadsAreRefusedOnWrite()
    {
        Assert.Throws<ArgumentException>(() => ConfigJson.Serialize(Tiny() with { HasPooler = false }));  // MLM + NSP without pooler
        Assert.Throws<ArgumentException>(() => ConfigJson.Serialize(Tiny() with { ClassificationLabels = 2 }));  // pretraining + classifier
        Assert.Throws<ArgumentException>(() => ConfigJson.Serialize(Tiny() with { HasMlmHead = false, HasNspHead = false, ClassificationLabels = 2 }, ["a", "b", "c"]));
    }

    [Test]
    public void ReadsAndWritesFilesAtomically()
    {
        using var dir = new TempDirectory("cfg");
        string path = dir["config.json"];
        ConfigJson.Write(PhysicalFileSystem.Instance, path, Tiny("mini"));
        Assert.That(ConfigJson.Read(path).Model, Is.EqualTo(Tiny("mini")));
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1));
    }
}
