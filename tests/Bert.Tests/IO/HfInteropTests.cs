using System.Text.Json;
using Bert.Runtime;
using Bert.Runtime.IO;
using NUnit.Framework;

namespace Bert.Tests.IO;

public class HfInteropTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("hf");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private static readonly BertConfig Config = ConfigJsonTests.Tiny();
    private static readonly IReadOnlyList<ParameterInfo> Table = ParameterLayout.ForPretraining(Config);
    private static readonly int Total = (int)ParameterLayout.Total(Table);

    private static float[] Weights(int seed)
    {
        var w = new float[Total];
        BertModelBase.InitializeHost(w, Table, 0.5f, (ulong)seed);
        // LayerNorm ones and zero biases would hide swapped tensors: perturb everything.
        for (int i = 0; i < w.Length; i++) w[i] += i * 1e-5f;
        return w;
    }

    private static float[] Slice(float[] flat, string name)
    {
        var p = Table.Single(t => t.Name == name);
        return flat.AsSpan((int)p.Offset, (int)p.Count).ToArray();
    }

    /// <summary>Writes a HuggingFace-style file from our weights, renaming or dropping tensors and
    /// adding extra ones.</summary>
    private string WriteHf(float[] weights, Func<string, string?> rename, IEnumerable<SafetensorsEntry>? extra = null,
        SafetensorsDType dtype = SafetensorsDType.F32)
    {
        var entries = new List<SafetensorsEntry>();
        foreach (var p in Table)
        {
            string? name = rename(p.Name);
            if (name is null) continue;
            entries.Add(new SafetensorsEntry(name, dtype, p.Shape, weights.AsMemory((int)p.Offset, (int)p.Count)));
        }
        if (extra is not null) entries.AddRange(extra);
        string dir = _dir["hf-" + Guid.NewGuid().ToString("N")[..6]];
        Directory.CreateDirectory(dir);
        SafetensorsWriter.Write(PhysicalFileSystem.Instance, Path.Combine(dir, "model.safetensors"), entries, new Dictionary<string, string> { ["format"] = "pt" });
        return dir;
    }

    private static SafetensorsEntry PositionIds(int n)
    {
        var bytes = new byte[n * 8];
        for (int i = 0; i < n; i++) BitConverter.TryWriteBytes(bytes.AsSpan(i * 8), (long)i);
        return SafetensorsEntry.FromBytes("bert.embeddings.position_ids", SafetensorsDType.I64, [1, n], bytes);
    }

    [Test]
    public void ExportThenImportIsExact()
    {
        var w = Weights(1);
        string dir = _dir["export"];
        HfInterop.Export(PhysicalFileSystem.Instance, dir, Config, Table, w);
        Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model.safetensors", "config.json" }));
        Assert.That(ConfigJson.Read(Path.Combine(dir, "config.json")).Model, Is.EqualTo(Config));
        using (var f = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors")))
        {
            Assert.That(f.Metadata["format"], Is.EqualTo("pt"), "transformers requires it");
            Assert.That(f.Contains(HfInterop.DecoderWeight), Is.False, "tied: HuggingFace re-ties it on load");
        }

        var back = new float[Total];
        var report = HfInterop.Import(dir, Table, back);
        Assert.That(report.IsExact, report.Describe());
        Assert.That(report.Loaded, Has.Count.EqualTo(Table.Count));
        Assert.That(back, Is.EqualTo(w));
    }

    [Test]
    public void ExportInBFloat16RoundsAndSaysSo()
    {
        var w = Weights(2);
        string dir = _dir["bf16"];
        HfInterop.Export(PhysicalFileSystem.Instance, dir, Config, Table, w, SafetensorsDType.BF16);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        Assert.That(doc.RootElement.GetProperty("torch_dtype").GetString(), Is.EqualTo("bfloat16"));
        var back = new float[Total];
        Assert.That(HfInterop.Import(dir, Table, back).IsExact);
        for (int i = 0; i < Total; i++)
            Assert.That(back[i], Is.EqualTo(FloatConversions.BFloat16ToSingle(FloatConversions.SingleToBFloat16(w[i]))));
        Assert.That(new FileInfo(Path.Combine(dir, "model.safetensors")).Length, Is.LessThan(Total * 2 + 16_000));
    }

    [Test]
    public void ImportsLegacyNamesTiedDecoderAndPositionIds()
    {
        var w = Weights(3);
        string dir = WriteHf(w,
            n => n.Contains("LayerNorm.") ? n.Replace(".weight", ".gamma").Replace(".bias", ".beta") : n,
            [
                PositionIds(Config.MaxPositions),
                new(HfInterop.DecoderWeight, SafetensorsDType.F32, [Config.VocabSize, Config.Hidden], Slice(w, HfInterop.WordEmbeddings)),
                new(HfInterop.DecoderBias, SafetensorsDType.F32, [Config.VocabSize], Slice(w, HfInterop.MlmBias)),
            ]);
        var back = new float[Total];
        var report = HfInterop.Import(dir, Table, back);
        Assert.That(report.IsExact, report.Describe());
        Assert.That(back, Is.EqualTo(w));
        int layerNorms = Table.Count(p => p.Name.Contains("LayerNorm."));
        Assert.That(report.Renamed, Has.Count.EqualTo(layerNorms));
        Assert.That(report.Renamed, Does.Contain(("bert.encoder.layer.1.output.LayerNorm.gamma", "bert.encoder.layer.1.output.LayerNorm.weight")));
        Assert.That(report.Skipped.Select(s => s.FileName), Is.EquivalentTo(new[] { "bert.embeddings.position_ids", HfInterop.DecoderWeight, HfInterop.DecoderBias }));
    }

    [Test]
    public void ImportsABertModelWithoutPrefixAndReportsTheMissingHeads()
    {
        var w = Weights(4);
        string dir = WriteHf(w, n => n.StartsWith("bert.", StringComparison.Ordinal) ? n["bert.".Length..] : null);
        var back = new float[Total];
        Array.Fill(back, 7f);
        var report = HfInterop.Import(dir, Table, back);
        string[] heads = Table.Where(p => p.Name.StartsWith("cls.", StringComparison.Ordinal)).Select(p => p.Name).ToArray();
        Assert.That(heads, Has.Length.EqualTo(7));
        Assert.That(report.Missing.Select(i => i.Name), Is.EquivalentTo(heads));
        Assert.That(report.Unexpected, Is.Empty);
        Assert.That(report.Mismatched, Is.Empty);
        foreach (var p in Table)
        {
            var got = back.AsSpan((int)p.Offset, (int)p.Count).ToArray();
            if (heads.Contains(p.Name)) Assert.That(got, Is.All.EqualTo(7f), $"{p.Name} left as it was");
            else Assert.That(got, Is.EqualTo(Slice(w, p.Name)), p.Name);
        }
        Assert.That(report.Describe(), Does.Contain("7 missing").And.Contain("missing    cls.predictions.transform.dense.weight [32, 32]"));
    }

    [Test]
    public void ReportsEveryMissingUnexpectedAndMismatchedTensorWithBothShapes()
    {
        var w = Weights(5);
        string dir = WriteHf(w,
            n => n switch
            {
                "bert.pooler.dense.bias" => null,                       // missing
                "cls.seq_relationship.weight" => null,                  // missing
                _ => n,
            },
            [
                new("classifier.weight", SafetensorsDType.F32, [3, 32], new float[96]),                         // unexpected
                new("bert.encoder.layer.2.output.dense.bias", SafetensorsDType.F32, [32], new float[32]),       // unexpected (no layer 2)
            ]);
        // Mismatched shapes: rewrite two tensors with other shapes by building a second file.
        string mismatched = WriteHf(w, n => n is "bert.embeddings.position_embeddings.weight" or "cls.predictions.bias" ? null : n,
            [
                new("bert.embeddings.position_embeddings.weight", SafetensorsDType.F32, [512, 32], new float[512 * 32]),
                new("cls.predictions.bias", SafetensorsDType.F32, [100], new float[100]),
            ]);

        var back = new float[Total];
        var r = HfInterop.Import(dir, Table, back);
        Assert.That(r.Missing.Select(i => (i.Name, i.Expected)), Is.EquivalentTo(new[] { ("bert.pooler.dense.bias", "[32]"), ("cls.seq_relationship.weight", "[2, 32]") }));
        Assert.That(r.Unexpected.Select(i => (i.Name, i.Actual)), Is.EquivalentTo(new[] { ("classifier.weight", "[3, 32]"), ("bert.encoder.layer.2.output.dense.bias", "[32]") }));

        var back2 = new float[Total];
        var r2 = HfInterop.Import(mismatched, Table, back2);
        Assert.That(r2.Mismatched.Select(i => (i.Name, i.Expected, i.Actual)), Is.EquivalentTo(new[]
        {
            ("bert.embeddings.position_embeddings.weight", "[19, 32]", "[512, 32]"),
            ("cls.predictions.bias", "[99]", "[100]"),
        }));
        var e = Assert.Throws<TensorMismatchException>(r2.ThrowIfNotExact)!;
        Assert.That(e.Message, Does.Contain("mismatched bert.embeddings.position_embeddings.weight: model [19, 32], file [512, 32]"));
        Assert.That(e.Message, Does.Contain("mismatched cls.predictions.bias: model [99], file [100]"));
        Assert.That(Slice(back2, "cls.predictions.bias"), Is.All.EqualTo(0f), "a mismatched tensor is not loaded");
    }

    [Test]
    public void UntiedDecoderThatDiffersIsReported()
    {
        var w = Weights(6);
        var other = Slice(w, HfInterop.WordEmbeddings);
        other[17] += 1f;
        string dir = WriteHf(w, n => n, [new(HfInterop.DecoderWeight, SafetensorsDType.F32, [Config.VocabSize, Config.Hidden], other)]);
        var r = HfInterop.Import(dir, Table, new float[Total]);
        var issue = r.Mismatched.Single();
        Assert.That(issue.Name, Is.EqualTo(HfInterop.DecoderWeight));
        Assert.That(issue.Detail, Does.Contain("1 of 3168 values differ"));
    }

    [Test]
    public void DecoderStandsInForAbsentWordEmbeddingsAndDecoderBiasForAbsentMlmBias()
    {
        var w = Weights(7);
        string dir = WriteHf(w, n => n is HfInterop.WordEmbeddings or HfInterop.MlmBias ? null : n,
            [
                new(HfInterop.DecoderWeight, SafetensorsDType.F32, [Config.VocabSize, Config.Hidden], Slice(w, HfInterop.WordEmbeddings)),
                new(HfInterop.DecoderBias, SafetensorsDType.F32, [Config.VocabSize], Slice(w, HfInterop.MlmBias)),
            ]);
        var back = new float[Total];
        var r = HfInterop.Import(dir, Table, back);
        Assert.That(r.IsExact, r.Describe());
        Assert.That(back, Is.EqualTo(w));
        Assert.That(r.Renamed, Does.Contain((HfInterop.DecoderWeight, HfInterop.WordEmbeddings)));
    }

    [Test]
    public void TwoFileTensorsForOneParameterAreReported()
    {
        var w = Weights(8);
        string dir = WriteHf(w, n => n, [new("bert.embeddings.LayerNorm.gamma", SafetensorsDType.F32, [32], new float[32])]);
        var r = HfInterop.Import(dir, Table, new float[Total]);
        var issue = r.Unexpected.Single();
        Assert.That(issue.Detail, Does.Contain("second tensor for 'bert.embeddings.LayerNorm.weight'"));
    }

    [Test]
    public void ImportsTheTorchWrittenLegacyBertModel()
    {
        string dir = Path.Combine(SafetensorsTests.GoldenDirectory(), "hf_bertmodel_legacy");
        var config = ConfigJson.Read(Path.Combine(dir, "config.json")).Model;
        Assert.That((config.HasPooler, config.HasMlmHead, config.HasNspHead), Is.EqualTo((true, false, false)), "BertModel");
        var table = ParameterLayout.ForPretraining(config);
        var flat = new float[ParameterLayout.Total(table)];
        var report = HfInterop.Import(dir, table, flat);
        Assert.That(report.Missing.Select(i => i.Name), Is.All.StartWith("cls."));
        Assert.That(report.Missing.Count(), Is.EqualTo(7));
        Assert.That(report.Unexpected, Is.Empty);
        Assert.That(report.Mismatched, Is.Empty);
        Assert.That(report.Skipped.Single().FileName, Is.EqualTo("embeddings.position_ids"));
        Assert.That(report.Renamed.Count(r => r.FileName.EndsWith(".gamma") || r.FileName.EndsWith(".beta")), Is.EqualTo(6));

        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "expected.json")));
        foreach (var entry in doc.RootElement.EnumerateObject())
        {
            if (entry.Name == "embeddings.position_ids") continue;
            var p = table.Single(t => t.Name == HfInterop.CanonicalName(entry.Name));
            var expected = entry.Value.GetProperty("values").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();
            Assert.That(flat.AsSpan((int)p.Offset, (int)p.Count).ToArray(), Is.EqualTo(expected), entry.Name);
        }
    }

    [Test]
    public void MissingWeightsFileExplainsWhatIsThere()
    {
        string dir = _dir["pt-only"];
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, "pytorch_model.bin"), [1, 2, 3]);
        var e = Assert.Throws<FileNotFoundException>(() => HfInterop.Import(dir, Table, new float[Total]))!;
        Assert.That(e.Message, Does.Contain("pytorch_model.bin").And.Contain("safe_serialization=True"));
        Assert.Throws<FileNotFoundException>(() => HfInterop.WeightsPath(_dir["nothing-here"]));
    }

    [TestCase("embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.weight")]
    [TestCase("bert.encoder.layer.3.output.LayerNorm.beta", "bert.encoder.layer.3.output.LayerNorm.bias")]
    [TestCase("encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.self.query.weight")]
    [TestCase("pooler.dense.bias", "bert.pooler.dense.bias")]
    [TestCase("cls.predictions.transform.LayerNorm.gamma", "cls.predictions.transform.LayerNorm.weight")]
    [TestCase("cls.predictions.bias", "cls.predictions.bias")]
    [TestCase("classifier.weight", "classifier.weight")]
    [TestCase("bert.encoder.layer.0.gamma", "bert.encoder.layer.0.gamma")]
    public void CanonicalNames(string file, string model) => Assert.That(HfInterop.CanonicalName(file), Is.EqualTo(model));
}
