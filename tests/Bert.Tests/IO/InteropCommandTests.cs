using Bert.Cli;
using Bert.Cli.Commands;
using Bert.Runtime;
using Bert.Runtime.IO;
using NUnit.Framework;

namespace Bert.Tests.IO;

public class InteropCommandTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("cli");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void ImportThenExportReproducesTheHuggingFaceWeights()
    {
        string golden = Path.Combine(SafetensorsTests.GoldenDirectory(), "hf_bertmodel_legacy");
        var log = new StringWriter();
        Assert.That(ImportCommand.Run(golden, _dir["ckpt"], seed: 5, strict: false, log), Is.EqualTo(ExitCodes.Ok));
        Assert.That(log.ToString(), Does.Contain("7 missing").And.Contain("initialized with seed 5"));

        var checkpoint = CheckpointReader.Open(_dir["ckpt"]);
        Assert.That(checkpoint.Step, Is.EqualTo(0));
        Assert.That(checkpoint.HasOptimizerState, Is.False);
        Assert.That(ConfigJson.Architecture(checkpoint.Config), Is.EqualTo("BertForPreTraining"));

        log = new StringWriter();
        Assert.That(ExportCommand.Run(_dir["ckpt"], _dir["hf"], SafetensorsDType.F32, log), Is.EqualTo(ExitCodes.Ok));
        Assert.That(log.ToString(), Does.Contain("BertForPreTraining"));

        using var source = SafetensorsFile.Open(Path.Combine(golden, "model.safetensors"));
        using var exported = SafetensorsFile.Open(Path.Combine(_dir["hf"], "model.safetensors"));
        foreach (var t in source.Tensors)
        {
            if (t.Name == "embeddings.position_ids") continue;
            Assert.That(exported[HfInterop.CanonicalName(t.Name)].ReadAsFloat32(), Is.EqualTo(t.ReadAsFloat32()), t.Name);
        }
        // The heads the source lacked were initialized as in pretraining: LayerNorm weight 1, dense ~N(0, 0.02).
        Assert.That(exported["cls.predictions.transform.LayerNorm.weight"].ReadAsFloat32(), Is.All.EqualTo(1f));
        var dense = exported["cls.predictions.transform.dense.weight"].ReadAsFloat32();
        Assert.That(dense.Any(x => x != 0f) && dense.All(x => Math.Abs(x) < 0.2f));
    }

    [Test]
    public void StrictImportRefusesMissingHeads()
    {
        string golden = Path.Combine(SafetensorsTests.GoldenDirectory(), "hf_bertmodel_legacy");
        var e = Assert.Throws<UserException>(() => ImportCommand.Run(golden, _dir["ckpt"], 0, strict: true, new StringWriter()))!;
        Assert.That(e.ExitCode, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(e.Message, Does.Contain("cls.seq_relationship.weight [2, 8]"));
        Assert.That(Directory.Exists(_dir["ckpt"]), Is.False);
    }

    [Test]
    public void ImportRefusesMismatchedShapesListingThemAll()
    {
        string golden = Path.Combine(SafetensorsTests.GoldenDirectory(), "hf_bertmodel_legacy");
        string hf = _dir["hf"];
        Directory.CreateDirectory(hf);
        File.Copy(Path.Combine(golden, "model.safetensors"), Path.Combine(hf, "model.safetensors"));
        // A config that disagrees with the weights: intermediate 10 instead of 9.
        File.WriteAllText(Path.Combine(hf, "config.json"), File.ReadAllText(Path.Combine(golden, "config.json")).Replace("\"intermediate_size\": 9", "\"intermediate_size\": 10"));
        var e = Assert.Throws<UserException>(() => ImportCommand.Run(hf, _dir["ckpt"], 0, false, new StringWriter()))!;
        Assert.That(e.ExitCode, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(e.Message, Does.Contain("mismatched bert.encoder.layer.0.intermediate.dense.weight: model [10, 8], file [9, 8]"));
        Assert.That(e.Message, Does.Contain("mismatched bert.encoder.layer.0.intermediate.dense.bias: model [10], file [9]"));
        Assert.That(e.Message, Does.Contain("mismatched bert.encoder.layer.0.output.dense.weight: model [8, 10], file [8, 9]"));
    }

    [Test]
    public void CommandLineErrorsGiveDocumentedExitCodes()
    {
        string missing = _dir["no-such-checkpoint"];
        Assert.That(Program.Run(["export", "--checkpoint", missing, "--out", _dir["out"]]), Is.EqualTo(ExitCodes.BadInput));
        Assert.That(Program.Run(["import", "--hf", _dir["no-such-hf"], "--out", _dir["out"]]), Is.EqualTo(ExitCodes.BadInput));
        Assert.That(Program.Run(["export", "--checkpoint", missing, "--out", _dir["out"], "--dtype", "f8"]), Is.Not.EqualTo(ExitCodes.Ok));
        Assert.That(Program.Run(["export", "--out", _dir["out"]]), Is.Not.EqualTo(ExitCodes.Ok), "--checkpoint is required");
    }

    [Test]
    public void ExportCopiesTheVocabularyAndHonorsDType()
    {
        var config = ConfigJsonTests.Tiny();
        var table = ParameterLayout.ForPretraining(config);
        var p = new float[ParameterLayout.Total(table)];
        BertModelBase.InitializeHost(p, table, 0.02f, 1);
        new CheckpointWriter(_dir["run"]).Save(new CheckpointContent
        {
            Step = 9,
            Config = config,
            Table = table,
            Parameters = p,
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"u8.ToArray() },
        });
        Assert.That(Program.Run(["export", "--checkpoint", _dir["run"], "--out", _dir["hf"], "--dtype", "f16"]), Is.EqualTo(ExitCodes.Ok));
        Assert.That(File.ReadAllText(Path.Combine(_dir["hf"], "vocab.txt")), Is.EqualTo("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"));
        using var f = SafetensorsFile.Open(Path.Combine(_dir["hf"], "model.safetensors"));
        Assert.That(f.Tensors.All(t => t.DType == SafetensorsDType.F16));
    }

    /// <summary>What transformers reads from an export: AutoTokenizer takes tokenizer_config.json (class, casing,
    /// maximum length, special tokens) and special_tokens_map.json; from_pretrained takes config.json
    /// (architectures, model_type) and the safetensors names. Parsed here as transformers parses them.</summary>
    [TestCase(true)]
    [TestCase(false)]
    public void ExportWritesTheTokenizerFilesTransformersReads(bool uncased)
    {
        var config = ConfigJsonTests.Tiny();
        var table = ParameterLayout.ForPretraining(config);
        var p = new float[ParameterLayout.Total(table)];
        BertModelBase.InitializeHost(p, table, 0.02f, 1);
        string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n" + (uncased ? "paris\n" : "Paris\n");
        new CheckpointWriter(_dir["run"]).Save(new CheckpointContent
        {
            Step = 1, Config = config, Table = table, Parameters = p,
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = System.Text.Encoding.UTF8.GetBytes(vocab) },
        });
        Assert.That(Program.Run(["export", "--checkpoint", _dir["run"], "--out", _dir["hf"]]), Is.EqualTo(ExitCodes.Ok));

        using var tok = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_dir["hf"], "tokenizer_config.json")));
        var t = tok.RootElement;
        Assert.That(t.GetProperty("tokenizer_class").GetString(), Is.EqualTo("BertTokenizer"));
        Assert.That(t.GetProperty("do_lower_case").GetBoolean(), Is.EqualTo(uncased));
        Assert.That(t.GetProperty("model_max_length").GetInt32(), Is.EqualTo(config.MaxPositions));
        foreach (var (key, token) in new[] { ("unk_token", "[UNK]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"), ("cls_token", "[CLS]"), ("mask_token", "[MASK]") })
            Assert.That(t.GetProperty(key).GetString(), Is.EqualTo(token), key);
        using var map = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_dir["hf"], "special_tokens_map.json")));
        Assert.That(map.RootElement.GetProperty("mask_token").GetString(), Is.EqualTo("[MASK]"));
        using var cfg = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_dir["hf"], "config.json")));
        Assert.That(cfg.RootElement.GetProperty("architectures")[0].GetString(), Is.EqualTo("BertForPreTraining"));
        Assert.That(cfg.RootElement.GetProperty("model_type").GetString(), Is.EqualTo("bert"));
        using var f = SafetensorsFile.Open(Path.Combine(_dir["hf"], "model.safetensors"));
        Assert.That(f.Tensors.Select(x => x.Name), Does.Contain("bert.embeddings.word_embeddings.weight").And.Contain("cls.predictions.bias"));
    }
}
