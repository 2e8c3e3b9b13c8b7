using System.Text.Json;
using System.Text.Json.Nodes;
using Bert.Cli;
using Bert.Cli.Commands;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;
using Bert.Tests.Data;
using Bert.Tests.Generator;
using Bert.Tests.Model;
using NUnit.Framework;

namespace Bert.Tests.IO;

/// <summary>
/// The dump the GPU machine's transformers check reads (bench/reference/parity/hf_tokenizer_check.py, stage
/// "tokenizer" of bench/gpu/run-all.sh): a `bert export` directory (model, vocab.txt, tokenizer files) and, for a
/// few texts (casing, accents, punctuation, CJK, unknown words), Bert's token ids and masked-LM logits at every
/// position. BERT_UPDATE_PARITY_GOLDEN=1 writes it from the Brown corpus; the committed dump is checked here
/// against what Bert computes now, so it cannot go stale.
/// </summary>
[Category("Parity")]
public class HfTokenizerDumpTests
{
    private static string Dump => GeneratorHarness.RepositoryFile("bench", "results", "parity", "tokenizer");

    private static readonly string[] Texts =
    [
        "The Man went to the STORE.",
        "Héllo wörld, naïve café! It's 3:45pm.",
        "unaffable pretraining of BERT-style models",
        "你好 world (parenthesized) \"quoted\" text...",
    ];

    /// <summary>Bert's ids and logits for the texts, from the export in <paramref name="model"/>.</summary>
    private static List<(string Text, int[] Ids, float[] Logits)> Compute(string model)
    {
        var source = PretrainedSource.Open(model);
        var vocabulary = source.LoadVocabulary();
        var tokenizer = new BertTokenizer(vocabulary, source.LowerCase(vocabulary));
        using var backend = new CpuBackend(2);
        int maxSeq = 48;
        using var bert = new BertForPreTraining(backend, 1, maxSeq, maxSeq, source.Config);
        PretrainedLoader.Load(bert, source.WeightsPath, 0);
        bert.Training = false;
        var result = new List<(string, int[], float[])>();
        foreach (var text in Texts)
        {
            var ids = new List<int> { vocabulary.ClsId };
            tokenizer.Encode(text, ids);
            ids.Add(vocabulary.SepId);
            int s = ids.Count;
            using var idBuffer = Upload(backend, ids.ToArray());
            using var types = Upload(backend, new int[s]);
            using var mask = Upload(backend, Enumerable.Repeat(1, s).ToArray());
            using var positions = Upload(backend, Enumerable.Range(0, s).ToArray());
            bert.Forward(new BertBatch { Batch = 1, Seq = s, Predictions = s, InputIds = idBuffer, TokenTypeIds = types, AttentionMask = mask, MlmPositions = positions });
            var logits = new float[s * source.Config.VocabSize];
            backend.Download<float>(logits, bert.MlmLogits);
            result.Add((text, ids.ToArray(), logits));
        }
        return result;
    }

    private static DeviceBuffer Upload(IBackend backend, int[] data)
    {
        var buffer = backend.Allocate(data.Length, DType.I32, "test");
        backend.Upload<int>(buffer, data);
        return buffer;
    }

    [Test]
    public void CommittedDumpMatchesWhatBertComputesNow()
    {
        if (Environment.GetEnvironmentVariable("BERT_UPDATE_PARITY_GOLDEN") == "1") Write();
        string model = Path.Combine(Dump, "model");
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(Dump, "expected.json")))!.AsObject();
        using (var tok = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(model, HfTokenizerFiles.ConfigFile))))
        {
            Assert.That(tok.RootElement.GetProperty("do_lower_case").GetBoolean(), Is.EqualTo(expected["do_lower_case"]!.GetValue<bool>()));
            Assert.That(tok.RootElement.GetProperty("model_max_length").GetInt32(), Is.EqualTo(expected["model_max_length"]!.GetValue<int>()));
        }
        var now = Compute(model);
        var cases = expected["texts"]!.AsArray();
        Assert.That(cases.Count, Is.EqualTo(now.Count));
        for (int i = 0; i < now.Count; i++)
        {
            var c = cases[i]!.AsObject();
            Assert.That(c["text"]!.GetValue<string>(), Is.EqualTo(now[i].Text));
            Assert.That(c["input_ids"]!.AsArray().Select(n => n!.GetValue<int>()), Is.EqualTo(now[i].Ids), now[i].Text);
            var rows = c["mlm_logits"]!.AsArray();
            int v = rows[0]!.AsArray().Count;
            double worst = 0;
            for (int r = 0; r < rows.Count; r++)
            {
                var row = rows[r]!.AsArray();
                for (int k = 0; k < v; k++) worst = Math.Max(worst, Math.Abs(row[k]!.GetValue<double>() - now[i].Logits[r * v + k]));
            }
            Assert.That(worst, Is.LessThan(1e-4), now[i].Text);
        }
    }

    /// <summary>Writes the dump: a 500-token WordPiece vocabulary learned from the Brown training split, an odd-sized
    /// model (L2 H32 A2 I37, 64 positions) with perturbed weights, saved as a checkpoint, exported with `bert export`.</summary>
    private static void Write()
    {
        string brown = GeneratorHarness.RepositoryFile("data", "brown", "brown-train.txt");
        if (!File.Exists(brown)) Assert.Ignore($"{brown} not found: run scripts/setup.sh to write the dump");
        using var dir = TestPaths.NewTempDirectory();
        var vocabulary = VocabularyTrainer.Train(TextCorpus.Read(brown), new VocabularyTrainerOptions { VocabularySize = 500 });
        var config = BertForPreTraining.ResolveConfig(new BertConfig
        {
            Name = "tokenizer-check", VocabSize = vocabulary.Count, Hidden = 32, Layers = 2, Heads = 2, Intermediate = 37, MaxPositions = 64,
        });
        var table = ParameterLayout.ForPretraining(config);
        var weights = TestWeights.Create(table, ParameterLayout.Total(table), 0.02f, 123);
        var vocabText = string.Concat(vocabulary.Tokens.Select(t => t + "\n"));
        new CheckpointWriter(dir.File("ckpt")).Save(new CheckpointContent
        {
            Step = 1, Config = config, Table = table, Parameters = weights,
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = System.Text.Encoding.UTF8.GetBytes(vocabText) },
        });
        string model = Path.Combine(Dump, "model");
        if (Directory.Exists(Dump)) Directory.Delete(Dump, recursive: true);
        Assert.That(ExportCommand.Run(dir.File("ckpt"), model, SafetensorsDType.F32, TextWriter.Null), Is.EqualTo(ExitCodes.Ok));
        var texts = new JsonArray();
        foreach (var (text, ids, logits) in Compute(model))
        {
            var rows = new JsonArray();
            for (int r = 0; r < ids.Length; r++)
                rows.Add(new JsonArray(logits.Skip(r * config.VocabSize).Take(config.VocabSize).Select(x => (JsonNode)JsonValue.Create(Math.Round(x, 6))).ToArray()));
            texts.Add(new JsonObject { ["text"] = text, ["input_ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()), ["mlm_logits"] = rows });
        }
        var json = new JsonObject
        {
            ["producer"] = "Bert (CPU, fp32): tests/Bert.Tests/IO/HfTokenizerDumpTests.cs",
            ["do_lower_case"] = true,
            ["model_max_length"] = config.MaxPositions,
            ["texts"] = texts,
        };
        File.WriteAllText(Path.Combine(Dump, "expected.json"), json.ToJsonString() + "\n");
        File.WriteAllText(Path.Combine(Dump, "README.md"),
            "# transformers loads a `bert export` as Bert trained it\n\nmodel/ is `bert export` of an odd-sized BERT over a 500-token vocabulary learned from " +
            "the Brown corpus; expected.json holds Bert's token ids and masked-LM logits (CPU, fp32) for a few texts. Written by " +
            "tests/Bert.Tests/IO/HfTokenizerDumpTests.cs (BERT_UPDATE_PARITY_GOLDEN=1), checked on the GPU machine by " +
            "bench/reference/parity/hf_tokenizer_check.py (stage \"tokenizer\" of bench/gpu/run-all.sh).\n");
    }
}
