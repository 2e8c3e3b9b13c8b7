using System.Buffers.Binary;
using System.Text;
using Bert.Cli;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Runtime.Training;
using Bert.Tests.Data;
using Bert.Tests.Reliability.Fuzz;
using NUnit.Framework;

namespace Bert.Tests.Reliability;

/// <summary>
/// The error table: invalid arguments of every command and broken input files of every kind, each
/// with the exit code of its error class (<see cref="ExitCodes"/>) and fragments the one-line message
/// must contain (the file, the field and the value). "{d}" in arguments and fragments is the fixture
/// directory. Every failing run prints "bert: error: ..." and no stack trace.
/// </summary>
[NonParallelizable] // Program.Run writes to the console
public class ErrorTableTests
{
    public sealed record Case(string Name, string[] Args, int Code, string[] Fragments)
    {
        public override string ToString() => Name;
    }

    private static Case C(string name, int code, string[] args, params string[] fragments) => new(name, args, code, fragments);

    private const string Corpus = "{d}/corpus.txt", Vocab = "{d}/vocab.txt", Out = "{d}/out/x", Data = "{d}/data";
    private const string Ckpt = "{d}/ckpt", Hf = "{d}/hf", Run = "{d}/run";

    private static string[] Prepare(params string[] extra) => Merge(["prepare", "--corpus", Corpus, "--vocab", Vocab, "--out", Out, "--seq", "16"], extra);

    private static string[] Pretrain(params string[] extra) => Merge(
    [
        "pretrain", "--data", Data, "--vocab", Vocab, "--seq", "16", "--seq-long", "32", "--batch", "2", "--batch-long", "2",
        "--steps", "2", "--long-fraction", "0.5", "--threads", "1", "--device", "cpu", "--out", "{d}/out/run",
    ], extra);

    /// <summary>The base arguments with options of <paramref name="extra"/> replacing their values there, or appended.</summary>
    private static string[] Merge(string[] baseArgs, string[] extra)
    {
        var args = baseArgs.ToList();
        for (int i = 0; i < extra.Length; i++)
        {
            bool hasValue = i + 1 < extra.Length && !extra[i + 1].StartsWith("--", StringComparison.Ordinal);
            int at = args.IndexOf(extra[i]);
            if (at >= 0 && hasValue) args[at + 1] = extra[i + 1];
            else if (at < 0)
            {
                args.Add(extra[i]);
                if (hasValue) args.Add(extra[i + 1]);
            }
            if (hasValue) i++;
        }
        return args.ToArray();
    }

    private static string[] PretrainOn(string data, string vocab, params string[] extra)
    {
        var args = Pretrain(extra);
        args[2] = data;
        args[4] = vocab;
        return args;
    }

    /// <summary>The fixture's 2-step run's settings with another run directory.</summary>
    private static string[] PretrainOut(string run, params string[] extra)
    {
        var args = Pretrain(extra);
        args[Array.IndexOf(args, "{d}/out/run")] = run;
        return args;
    }

    private static string[] Resume(string run, params string[] extra) => PretrainOut(run, ["--resume", .. extra]);

    public static readonly Case[] Cases =
    [
        // ---- arguments (2) -------------------------------------------------------------------------
        C("no command", ExitCodes.Usage, [], "Required command was not provided"),
        C("unknown command", ExitCodes.Usage, ["train"], "'train'"),
        C("unknown option", ExitCodes.Usage, ["info", "--presett", "tiny"], "'--presett'", "bert info --help"),
        C("info: unknown preset", ExitCodes.Usage, ["info", "--preset", "huge"], "--preset", "'huge'", "tiny, mini"),
        C("info: vocab size 0", ExitCodes.Usage, ["info", "--vocab-size", "0"], "--vocab-size", "0"),
        C("info: vocab size not a number", ExitCodes.Usage, ["info", "--vocab-size", "many"], "'many'", "--vocab-size"),
        C("vocab: size below the specials", ExitCodes.Usage, ["vocab", "--corpus", Corpus, "--size", "3", "--out", Out], "--size 3", "5 special tokens"),
        C("vocab: min frequency 0", ExitCodes.Usage, ["vocab", "--corpus", Corpus, "--min-frequency", "0", "--out", Out], "--min-frequency 0"),
        C("vocab: --out missing", ExitCodes.Usage, ["vocab", "--corpus", Corpus], "--out"),
        C("vocab: format unknown", ExitCodes.Usage, ["vocab", "--corpus", Corpus, "--out", Out, "--format", "xml"], "'xml'", "--format"),
        C("prepare: seq 4", ExitCodes.Usage, Prepare("--seq", "4"), "--seq 4", "[8, 65535]"),
        C("prepare: dupe 0", ExitCodes.Usage, Prepare("--dupe", "0"), "--dupe 0", "[1, 1000]"),
        C("prepare: too many predictions", ExitCodes.Usage, Prepare("--max-predictions", "20"), "--max-predictions 20", "[1, 13]"),
        C("prepare: short-seq-prob 1.5", ExitCodes.Usage, Prepare("--short-seq-prob", "1.5"), "--short-seq-prob 1.5", "[0, 1]"),
        C("prepare: masked-lm-prob 0", ExitCodes.Usage, Prepare("--masked-lm-prob", "0"), "--masked-lm-prob 0", "(0, 1]"),
        C("prepare: shard size 0", ExitCodes.Usage, Prepare("--shard-size", "0"), "--shard-size 0", "positive"),
        C("prepare: seed not a number", ExitCodes.Usage, Prepare("--seed", "-1"), "'-1'", "--seed"),
        C("export: blank checkpoint path", ExitCodes.Usage, ["export", "--checkpoint", "", "--out", Out], "--checkpoint ''", "blank"),
        C("pretrain: blank run directory", ExitCodes.Usage, Pretrain("--out", " "), "--out ' '", "blank"),
        C("export: dtype f64", ExitCodes.Usage, ["export", "--checkpoint", Ckpt, "--out", Out, "--dtype", "f64"], "'f64'", "'bf16'"),
        C("pretrain: seq-long equal to seq", ExitCodes.Usage, Pretrain("--seq", "32", "--seq-long", "32"), "--seq 32 / --seq-long 32", "must be longer", "--long-fraction 0"),
        // Issue 17: --seq alone past --seq-long named only --seq-long, as if the user had set that one.
        C("pretrain: seq past the default seq-long", ExitCodes.Usage, Pretrain("--seq", "64"), "--seq 64 / --seq-long 32", "(--seq-long) must be longer"),
        C("pretrain: seq beyond the positions", ExitCodes.Usage, Pretrain("--seq", "1000", "--seq-long", "2000"), "--seq 1000", "positions"),
        C("pretrain: lr 1e39", ExitCodes.Usage, Pretrain("--lr", "1e39"), "--lr 1E+39", "at most 1000"),
        C("pretrain: threads 100000", ExitCodes.Usage, Pretrain("--threads", "100000"), "--threads 100000", "cores"),
        C("pretrain: eval-sequences -1", ExitCodes.Usage, Pretrain("--eval-sequences", "-1"), "--eval-sequences -1", "0 (no held-out evaluation)"),
        C("pretrain: lr 1e3 diverges", ExitCodes.NonFinite, Pretrain("--lr", "1000", "--steps", "20", "--warmup", "0"), "diverged", "chance level", "lower --lr"),
        C("pretrain: batch 1000000", ExitCodes.Device, Pretrain("--batch", "1000000"), "micro-batch of 1000000", "GiB", "--micro-batch"),
        C("import: vocab.txt without [MASK]", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-vocab-nomask", "--out", Out], "{d}/hf-vocab-nomask/vocab.txt", "[MASK]", "missing"),
        C("import: vocab.txt longer than the embeddings", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-vocab-long", "--out", Out], "{d}/hf-vocab-long/vocab.txt", "25 tokens", "11 embedding rows"),
        C("export: out is the checkpoint", ExitCodes.Usage, ["export", "--checkpoint", Ckpt, "--out", "{d}/ckpt/step-000003"], "--out {d}/ckpt/step-000003", "overwrite"),
        C("eval: non-finite weights", ExitCodes.NonFinite, ["eval", "--checkpoint", "{d}/ckpt-nan/checkpoints", "--data", Data, "--vocab", Vocab, "--device", "cpu"], "{d}/ckpt-nan", "non-finite", "NaN"),
        C("import: out holds checkpoints", ExitCodes.Usage, ["import", "--hf", Hf, "--out", Ckpt], "--out", "{d}/ckpt", "already holds checkpoints"),
        C("pretrain: steps 0", ExitCodes.Usage, Pretrain("--steps", "0"), "--steps 0", "positive"),
        C("pretrain: micro-batch does not divide", ExitCodes.Usage, Pretrain("--batch", "4", "--micro-batch", "3"), "--micro-batch 3", "divide --batch 4"),
        C("pretrain: warmup beyond steps", ExitCodes.Usage, Pretrain("--warmup", "50"), "--warmup 50", "[0, 2]"),
        C("pretrain: long fraction 2", ExitCodes.Usage, Pretrain("--long-fraction", "2"), "--long-fraction 2", "[0, 1]"),
        C("pretrain: threads -1", ExitCodes.Usage, Pretrain("--threads", "-1"), "--threads -1"),
        C("pretrain: checkpoint-every -1", ExitCodes.Usage, Pretrain("--checkpoint-every", "-1"), "--checkpoint-every -1"),
        C("pretrain: keep 0", ExitCodes.Usage, Pretrain("--keep", "0"), "--keep 0", "positive"),
        C("pretrain: lr NaN", ExitCodes.Usage, Pretrain("--lr", "NaN"), "--lr NaN", "positive"),
        C("pretrain: device tpu", ExitCodes.Usage, Pretrain("--device", "tpu"), "--device tpu", "auto, cpu or cuda"),
        C("pretrain: precision fp16", ExitCodes.Usage, Pretrain("--precision", "fp16"), "fp16", "--precision"),
        C("pretrain: bf16 on the CPU", ExitCodes.Usage, Pretrain("--precision", "bf16"), "--precision bf16", "fp32"),
        C("pretrain: fused-attention maybe", ExitCodes.Usage, Pretrain("--fused-attention", "maybe"), "--fused-attention maybe", "off, on or auto"),
        C("pretrain: fused attention on the CPU", ExitCodes.Usage, Pretrain("--fused-attention", "on"), "--fused-attention on", "CPU backend", "--device cuda"),
        C("pretrain: fused attention in fp32", ExitCodes.Usage, Pretrain("--device", "cuda", "--precision", "f32", "--fused-attention", "on"),
            "--fused-attention on", "bf16", "--precision"),
        C("pretrain: cuda-graphs sometimes", ExitCodes.Usage, Pretrain("--cuda-graphs", "sometimes"), "--cuda-graphs sometimes", "off, on or auto"),
        C("pretrain: cuda graphs on the CPU", ExitCodes.Usage, Pretrain("--device", "cpu", "--cuda-graphs", "on"), "--cuda-graphs on", "CUDA backend", "--device cuda"),
        C("bench: fused attention on the CPU", ExitCodes.Usage, ["bench", "--device", "cpu", "--preset", "tiny", "--fused-attention", "on"],
            "--fused-attention on", "CPU backend"),
        C("bench: cuda graphs on the CPU", ExitCodes.Usage, ["bench", "--device", "cpu", "--preset", "tiny", "--cuda-graphs", "on"],
            "--cuda-graphs on", "CUDA backend", "--device cuda"),
        C("bench: cuda-graphs sometimes", ExitCodes.Usage, ["bench", "--device", "cpu", "--preset", "tiny", "--cuda-graphs", "sometimes"],
            "--cuda-graphs sometimes", "off, on or auto"),
        C("finetune: fused-attention yes", ExitCodes.Usage, ["finetune", "--task", "classify", "--checkpoint", Ckpt, "--data", Data, "--out", Out,
            "--fused-attention", "yes"], "--fused-attention yes", "off, on or auto"),
        C("pretrain: unknown preset", ExitCodes.Usage, Pretrain("--preset", "giant"), "--preset giant", "tiny"),
        C("pretrain: seq-long beyond the positions", ExitCodes.Usage, Pretrain("--seq-long", "1024"), "--seq-long 1024", "512 positions"),
        C("pretrain: --data without --vocab", ExitCodes.Usage, ["pretrain", "--data", Data, "--seq", "16"], "--data needs --vocab"),
        C("pretrain: checkpoints without --resume", ExitCodes.Usage, PretrainOut(Run),
            "{d}/run/checkpoints", "--resume"),
        C("pretrain: resume with other settings", ExitCodes.Usage, Resume(Run, "--lr", "0.002"), "--resume", "'lr' is 0.002", "{d}/run/checkpoints/step-000002", "0.001"),

        // ---- corpus and vocabulary files (3) ---------------------------------------------------------
        C("corpus: missing", ExitCodes.BadInput, ["vocab", "--corpus", "{d}/nope.txt", "--out", Out], "--corpus {d}/nope.txt", "no such file"),
        C("corpus: invalid UTF-8", ExitCodes.BadInput, ["vocab", "--corpus", "{d}/bad-utf8.txt", "--out", Out],
            "{d}/bad-utf8.txt", "byte 2 (line 2)", "0xFE", "invalid UTF-8"),
        C("corpus: empty", ExitCodes.BadInput, ["vocab", "--corpus", "{d}/empty.txt", "--out", Out], "{d}/empty.txt", "documents = 0", "no text"),
        C("corpus: one sentence per document", ExitCodes.BadInput,
            ["prepare", "--corpus", "{d}/singles.txt", "--vocab", Vocab, "--out", Out, "--seq", "16"], "{d}/singles.txt", "documents", "fewer than 2 sentences"),
        C("vocab: missing", ExitCodes.BadInput, ["prepare", "--corpus", Corpus, "--vocab", "{d}/nope-vocab.txt", "--out", Out], "{d}/nope-vocab.txt", "not found"),
        C("vocab: no [MASK]", ExitCodes.BadInput, ["prepare", "--corpus", Corpus, "--vocab", "{d}/vocab-nomask.txt", "--out", Out],
            "{d}/vocab-nomask.txt", "special token = [MASK]", "missing"),
        C("vocab: duplicate token", ExitCodes.BadInput, ["prepare", "--corpus", Corpus, "--vocab", "{d}/vocab-dup.txt", "--out", Out],
            "{d}/vocab-dup.txt", "line 7 = \"[PAD]\"", "duplicate token (first at line 1)"),
        C("vocab: empty line inside", ExitCodes.BadInput, ["prepare", "--corpus", Corpus, "--vocab", "{d}/vocab-gap.txt", "--out", Out],
            "{d}/vocab-gap.txt", "line 3", "empty token"),
        C("vocab: invalid UTF-8", ExitCodes.BadInput, ["prepare", "--corpus", Corpus, "--vocab", "{d}/vocab-utf8.txt", "--out", Out],
            "{d}/vocab-utf8.txt", "byte 12 (line 3)", "0xC0", "invalid UTF-8"),
        C("vocab: empty file", ExitCodes.BadInput, ["prepare", "--corpus", Corpus, "--vocab", "{d}/empty.txt", "--out", Out],
            "{d}/empty.txt", "tokens = 0", "empty"),
        C("pretrain: vocab missing", ExitCodes.BadInput, PretrainOn(Data, "{d}/nope-vocab.txt"), "{d}/nope-vocab.txt", "not found"),

        // ---- datasets (3) ----------------------------------------------------------------------------
        C("dataset: directory missing", ExitCodes.BadInput, PretrainOn("{d}/nope-data", Vocab), "{d}/nope-data/seq16", "not found", "bert prepare"),
        C("dataset: no shards", ExitCodes.BadInput, PretrainOn("{d}/data-empty", Vocab), "{d}/data-empty/seq16", "shards = 0"),
        C("dataset: records corrupted", ExitCodes.BadInput, PretrainOn("{d}/data-flip", Vocab), "{d}/data-flip/seq16/shard-00000.bin", "records checksum", "corrupted"),
        C("dataset: shard truncated", ExitCodes.BadInput, PretrainOn("{d}/data-trunc", Vocab), "{d}/data-trunc/seq16/shard-00000.bin", "record_count", "truncated"),
        C("dataset: not a shard", ExitCodes.BadInput, PretrainOn("{d}/data-magic", Vocab), "{d}/data-magic/seq16/shard-00000.bin", "magic = \"XERTSHRD\""),
        C("dataset: header corrupted", ExitCodes.BadInput, PretrainOn("{d}/data-header", Vocab), "{d}/data-header/seq16/shard-00000.bin", "header checksum"),
        C("dataset: another vocabulary", ExitCodes.BadInput, PretrainOn(Data, "{d}/vocab-other.txt"), "{d}/data/seq16/shard-00000.bin", "vocab_hash", "{d}/vocab-other.txt"),
        C("dataset: long phase missing", ExitCodes.BadInput, PretrainOn("{d}/data-short", Vocab), "{d}/data-short/seq32 not found", "the root has seq16", "--seq-long"),
        C("dataset: other max predictions", ExitCodes.BadInput, PretrainOn("{d}/data-p3", Vocab), "{d}/data-p3/seq16", "max_predictions 3", "--max-predictions 4"),
        C("prepare: output holds other files", ExitCodes.Io, ["prepare", "--corpus", Corpus, "--vocab", Vocab, "--out", "{d}/occupied", "--seq", "16"],
            "{d}/occupied/seq16", "refusing to replace", "notes.txt"),

        // ---- checkpoints (3) -------------------------------------------------------------------------
        C("checkpoint: missing", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/nope-ckpt", "--out", Out], "{d}/nope-ckpt", "does not exist"),
        C("checkpoint: none complete", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/ckpt-none", "--out", Out], "{d}/ckpt-none", "no complete checkpoint"),
        C("checkpoint: weights corrupted", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/ckpt-flip", "--out", Out],
            "{d}/ckpt-flip/step-000003/model.safetensors", "xxh64", "corrupt"),
        C("checkpoint: optimizer truncated", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/ckpt-trunc", "--out", Out],
            "{d}/ckpt-trunc/step-000003/optimizer.safetensors", "bytes", "truncated"),
        C("checkpoint: manifest not JSON", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/ckpt-json", "--out", Out],
            "{d}/ckpt-json/step-000003/manifest.json", "not valid JSON"),
        C("checkpoint: listed file missing", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/ckpt-noconfig", "--out", Out],
            "{d}/ckpt-noconfig/step-000003/config.json", "listed in manifest.json but missing"),
        C("checkpoint: config.json invalid", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/ckpt-config", "--out", Out],
            "{d}/ckpt-config/step-000003/config.json", "hidden_size", "divisible by num_attention_heads (3)"),
        C("checkpoint: weights of another model", ExitCodes.BadInput, ["export", "--checkpoint", "{d}/ckpt-shape", "--out", Out],
            "{d}/ckpt-shape/step-000003/model.safetensors", "do not match", "bert.encoder.layer.0.intermediate.dense.weight"),
        C("resume: none complete", ExitCodes.BadInput, Resume("{d}/out/fresh"), "--resume", "no complete checkpoint", "{d}/out/fresh/checkpoints"),
        C("resume: newest checkpoint corrupted", ExitCodes.BadInput, Resume("{d}/run-flip"), "{d}/run-flip/checkpoints/step-000002/model.safetensors", "xxh64"),
        C("resume: trainer state malformed", ExitCodes.BadInput, Resume("{d}/run-state"), "{d}/run-state/checkpoints/step-000002/trainer-state.bin", "step", "missing"),

        // ---- HuggingFace directories: config.json and safetensors (3) --------------------------------
        C("hf: no config.json", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-noconfig", "--out", Out], "{d}/hf-noconfig/config.json", "not found"),
        C("config: not JSON", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-json", "--out", Out], "{d}/hf-json/config.json", "(file)", "line 2", "not valid JSON"),
        C("config: key missing", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-novocab", "--out", Out], "{d}/hf-novocab/config.json", "vocab_size", "(absent)"),
        C("config: wrong type", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-type", "--out", Out], "{d}/hf-type/config.json", "hidden_size", "\"4\"", "integer"),
        C("config: unknown activation", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-act", "--out", Out], "{d}/hf-act/config.json", "hidden_act", "\"swish\""),
        C("config: invalid UTF-8", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-utf8", "--out", Out], "{d}/hf-utf8/config.json", "0xFF", "not valid UTF-8"),
        C("config: too many layers", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-layers", "--out", Out], "{d}/hf-layers/config.json", "num_hidden_layers", "2000000"),
        C("config: model too large", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-huge", "--out", Out], "{d}/hf-huge/config.json", "vocab_size", "1000000000", "parameters"),
        C("config: too many classes", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-labels", "--out", Out], "{d}/hf-labels/config.json", "num_labels", "5000", "at most 4096"),
        C("safetensors: no model.safetensors", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-pt", "--out", Out], "{d}/hf-pt", "pytorch_model.bin", "safe_serialization=True"),
        C("safetensors: header length beyond the file", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-len", "--out", Out],
            "{d}/hf-len/model.safetensors", "header length", "1099511627776"),
        C("safetensors: unknown dtype", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-dtype", "--out", Out], "{d}/hf-dtype/model.safetensors", ".dtype", "F99"),
        C("safetensors: offsets past the data", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-offsets", "--out", Out],
            "{d}/hf-offsets/model.safetensors", "data_offsets", "out of range"),
        C("safetensors: shapes differ from config", ExitCodes.BadInput, ["import", "--hf", "{d}/hf-shape", "--out", Out],
            "{d}/hf-shape/model.safetensors", "cannot import", "intermediate.dense.weight"),

        // ---- device (6) --------------------------------------------------------------------------------
        C("device: cuda unavailable", ExitCodes.Device, Pretrain("--device", "cuda"), "--device cuda"),
    ];

    private string _dir = null!;

    [OneTimeSetUp]
    public void BuildFixture()
    {
        _dir = Path.Combine(Path.GetTempPath(), "bert-error-table-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
        string F(string relative) => Path.Combine(_dir, relative);

        // Corpora and vocabularies.
        SyntheticCorpus.Write(F("corpus.txt"), 12, 6, seed: 3);
        SyntheticCorpus.Vocabulary.Save(F("vocab.txt"));
        File.WriteAllBytes(F("bad-utf8.txt"), [0x61, 0x0A, 0xFE, 0x0A]);
        File.WriteAllBytes(F("empty.txt"), []);
        File.WriteAllText(F("singles.txt"), "ka lo mi.\n\nne ru sa.\n\nti vo pe.\n");
        File.WriteAllText(F("vocab-nomask.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n");
        File.WriteAllText(F("vocab-dup.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nka\n[PAD]\n");
        File.WriteAllText(F("vocab-gap.txt"), "[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n");
        File.WriteAllBytes(F("vocab-utf8.txt"), [.. "[PAD]\n[UNK]\n"u8, 0xC0, 0x80, .. "\n[CLS]\n[SEP]\n[MASK]\n"u8]);
        Vocabulary.FromTokens([.. SyntheticCorpus.Vocabulary.Tokens, "extra"]).Save(F("vocab-other.txt"));

        // Datasets: a good one, and each way a shard can be broken.
        var vocab = Vocabulary.Load(F("vocab.txt"));
        var tokens = SyntheticCorpus.Tokenized(12, 6, seed: 3);
        void Dataset(string root, int seq, int? predictions = null) =>
            PretrainingDataBuilder.Build(tokens, "synthetic", vocab,
                new PretrainingDataOptions { SeqLength = seq, DupeFactor = 1, MaxDegreeOfParallelism = 1, MaxPredictions = predictions },
                PretrainingDataBuilder.DatasetDirectory(root, seq));
        Dataset(F("data"), 16);
        Dataset(F("data"), 32);
        foreach (var name in new[] { "data-flip", "data-trunc", "data-magic", "data-header" })
        {
            Dataset(F(name), 16);
            Dataset(F(name), 32); // the long phase is intact: the error must come from seq16
            string shard = Path.Combine(F(name), "seq16", "shard-00000.bin");
            var bytes = File.ReadAllBytes(shard);
            switch (name)
            {
                case "data-flip": bytes[^5] ^= 0x40; break;
                case "data-trunc": bytes = bytes[..^7]; break;
                case "data-magic": bytes[0] = (byte)'X'; break;
                case "data-header": bytes[30] ^= 1; break;
            }
            File.WriteAllBytes(shard, bytes);
        }
        Directory.CreateDirectory(Path.Combine(F("data-empty"), "seq16"));
        Dataset(F("data-empty"), 32);
        Dataset(F("data-p3"), 16, predictions: 3);
        Dataset(F("data-p3"), 32, predictions: 3);
        Dataset(F("data-short"), 16);
        Directory.CreateDirectory(Path.Combine(F("occupied"), "seq16"));
        File.WriteAllText(Path.Combine(F("occupied"), "seq16", "notes.txt"), "mine");

        // Checkpoints (tiny model, step 3), and each way one can be broken.
        FuzzSamples.WriteCheckpoint(F("ckpt"), 3);
        Directory.CreateDirectory(Path.Combine(F("ckpt-none"), "step-000001"));
        foreach (var name in new[] { "ckpt-flip", "ckpt-trunc", "ckpt-json", "ckpt-noconfig", "ckpt-config", "ckpt-shape" })
        {
            string step = FuzzSamples.WriteCheckpoint(F(name), 3);
            switch (name)
            {
                case "ckpt-flip": Flip(Path.Combine(step, "model.safetensors"), -9); break;
                case "ckpt-trunc": Truncate(Path.Combine(step, "optimizer.safetensors"), 16); break;
                case "ckpt-json": File.WriteAllText(Path.Combine(step, "manifest.json"), "{\n  \"format\": \"bert-checkpoint\",,\n}"); break;
                case "ckpt-noconfig": File.Delete(Path.Combine(step, "config.json")); break;
                case "ckpt-config":
                    File.WriteAllBytes(Path.Combine(step, "config.json"),
                        Replace(ConfigJson.Serialize(FuzzSamples.TinyConfig), "\"num_attention_heads\": 2", "\"num_attention_heads\": 3"));
                    Rehash(step, "config.json");
                    break;
                case "ckpt-shape":
                    File.WriteAllBytes(Path.Combine(step, "config.json"), ConfigJson.Serialize(FuzzSamples.TinyConfig with { Intermediate = 7 }));
                    Rehash(step, "config.json");
                    break;
            }
        }

        // A real 2-step run to resume, plus one with a corrupted and one with a malformed newest checkpoint.
        var runArgs = Pretrain("--checkpoint-every", "1").Select(a => a.Replace("{d}", _dir, StringComparison.Ordinal)).ToArray();
        runArgs[Array.IndexOf(runArgs, F("out/run"))] = F("run");
        Assert.That(Program.Run(runArgs), Is.EqualTo(ExitCodes.Ok), "the fixture's training run");
        CopyDirectory(F("run"), F("run-flip"));
        Flip(Path.Combine(F("run-flip"), "checkpoints", "step-000002", "model.safetensors"), -5);
        CopyDirectory(F("run"), F("ckpt-nan"));
        string nanStep = Path.Combine(F("ckpt-nan"), "checkpoints", "step-000002");
        var weights = File.ReadAllBytes(Path.Combine(nanStep, "model.safetensors"));
        BinaryPrimitives.WriteSingleLittleEndian(weights.AsSpan(weights.Length - 4), float.NaN);
        File.WriteAllBytes(Path.Combine(nanStep, "model.safetensors"), weights);
        Rehash(nanStep, "model.safetensors");
        CopyDirectory(F("run"), F("run-state"));
        string stateStep = Path.Combine(F("run-state"), "checkpoints", "step-000002");
        File.WriteAllText(Path.Combine(stateStep, CheckpointWriter.TrainerStateFile), "{\"version\": 1}");
        Rehash(stateStep, CheckpointWriter.TrainerStateFile);

        // HuggingFace directories.
        void Hf(string name, BertConfig config, Action<string>? spoil = null)
        {
            string dir = F(name);
            var table = ParameterLayout.For(FuzzSamples.TinyConfig);
            HfInterop.Export(PhysicalFileSystem.Instance, dir, config, table, FuzzSamples.Values(ParameterLayout.Total(table), 9), SafetensorsDType.F32);
            spoil?.Invoke(dir);
        }
        var tiny = FuzzSamples.TinyConfig;
        Hf("hf", tiny);
        Hf("hf-vocab-nomask", tiny, d => File.WriteAllText(Path.Combine(d, "vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n"));
        Hf("hf-vocab-long", tiny, d => File.WriteAllText(Path.Combine(d, "vocab.txt"),
            "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n" + string.Concat(Enumerable.Range(0, 20).Select(i => $"w{i}\n"))));
        Hf("hf-noconfig", tiny, d => File.Delete(Path.Combine(d, "config.json")));
        Hf("hf-json", tiny, d => File.WriteAllText(Path.Combine(d, "config.json"), "{\n  \"vocab_size\": ,\n}"));
        Hf("hf-novocab", tiny, d => EditConfig(d, "\"vocab_size\": 11", "\"vocabulary\": 11"));
        Hf("hf-type", tiny, d => EditConfig(d, "\"hidden_size\": 4", "\"hidden_size\": \"4\""));
        Hf("hf-act", tiny, d => EditConfig(d, "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swish\""));
        Hf("hf-utf8", tiny, d => File.WriteAllBytes(Path.Combine(d, "config.json"),
            Replace(File.ReadAllBytes(Path.Combine(d, "config.json")), "\"fuzz\"", "\"fu\u00ffz\"") is var c ? Latin1(c) : []));
        Hf("hf-layers", tiny, d => EditConfig(d, "\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2000000"));
        Hf("hf-huge", tiny, d =>
        {
            EditConfig(d, "\"vocab_size\": 11", "\"vocab_size\": 1000000000");
            EditConfig(d, "\"hidden_size\": 4", "\"hidden_size\": 8");
        });
        Hf("hf-labels", tiny, d => File.WriteAllText(Path.Combine(d, "config.json"),
            "{\"architectures\": [\"BertForSequenceClassification\"], \"vocab_size\": 11, \"hidden_size\": 4, \"num_hidden_layers\": 1, " +
            "\"num_attention_heads\": 2, \"intermediate_size\": 6, \"num_labels\": 5000}"));
        Hf("hf-pt", tiny, d =>
        {
            File.Move(Path.Combine(d, "model.safetensors"), Path.Combine(d, "pytorch_model.bin"));
        });
        Hf("hf-len", tiny, d =>
        {
            string p = Path.Combine(d, "model.safetensors");
            var bytes = File.ReadAllBytes(p);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1UL << 40);
            File.WriteAllBytes(p, bytes);
        });
        Hf("hf-dtype", tiny, d => EditHeader(d, "\"F32\"", "\"F99\""));
        Hf("hf-offsets", tiny, d => EditLastOffset(d));
        Hf("hf-shape", tiny, d => EditConfig(d, "\"intermediate_size\": 6", "\"intermediate_size\": 7"));
    }

    [OneTimeTearDown]
    public void RemoveFixture()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void FailsWithTheDocumentedCodeAndAMessageNamingFileFieldAndValue(Case c)
    {
        string[] args = c.Args.Select(Expand).ToArray();
        var stderr = new StringWriter();
        var stdout = new StringWriter();
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        int code;
        try
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
            code = Program.Run(args);
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
        string message = stderr.ToString();
        TestContext.Out.WriteLine($"bert {string.Join(' ', c.Args)}\n→ {code}: {message}");
        Assert.That(code, Is.EqualTo(c.Code), $"bert {string.Join(' ', args)}\n{message}");
        Assert.That(message, Does.StartWith("bert: error: "));
        Assert.That(message, Does.Not.Contain("   at "), "no stack trace");
        foreach (var fragment in c.Fragments) Assert.That(message, Does.Contain(Expand(fragment)));
        Assert.That(Directory.Exists(Expand(Out)) && Directory.EnumerateFileSystemEntries(Expand(Out)).Any(), Is.False, "a failed command leaves no output");
    }

    private string Expand(string s) => s.Replace("{d}", _dir, StringComparison.Ordinal);

    /// <summary>Every exception class the commands can meet, and the exit code it maps to.</summary>
    public static IEnumerable<TestCaseData> ExceptionClasses()
    {
        yield return new TestCaseData(new ShardFormatException("f", "magic", "x", "bad"), ExitCodes.BadInput);
        yield return new TestCaseData(new VocabularyFormatException("f", "line 1", "x", "bad"), ExitCodes.BadInput);
        yield return new TestCaseData(new CorpusFormatException("f", "byte 1", "x", "bad"), ExitCodes.BadInput);
        yield return new TestCaseData(new SafetensorsFormatException("f", "header length", "x", "bad"), ExitCodes.BadInput);
        yield return new TestCaseData(new ConfigFormatException("f", "hidden_size", "x", "bad"), ExitCodes.BadInput);
        yield return new TestCaseData(new CheckpointFormatException("f", "xxh64", "x", "bad"), ExitCodes.BadInput);
        yield return new TestCaseData(new TensorMismatchException(new TensorLoadReport("f")), ExitCodes.BadInput);
        yield return new TestCaseData(new InvalidDataException("f: field 'step' is missing"), ExitCodes.BadInput);
        yield return new TestCaseData(new FileNotFoundException("f: not found"), ExitCodes.BadInput);
        yield return new TestCaseData(new DirectoryNotFoundException("d: not found"), ExitCodes.BadInput);
        yield return new TestCaseData(new DiskFullException("f", "no space left on device"), ExitCodes.Io);
        yield return new TestCaseData(new IOException("No space left on device", DiskFull.HResult), ExitCodes.Io);
        yield return new TestCaseData(new IOException("read-only file system"), ExitCodes.Io);
        yield return new TestCaseData(new UnauthorizedAccessException("permission denied"), ExitCodes.Io);
        yield return new TestCaseData(new OperationCanceledException(), 130); // a cancelled command exits as a shell reports Ctrl+C
        yield return new TestCaseData(new NonFiniteException(7, "loss is NaN"), ExitCodes.NonFinite);
        yield return new TestCaseData(new DllNotFoundException("libcuda.so.1"), ExitCodes.Device);
        yield return new TestCaseData(new GraphCaptureException("--cuda-graphs on: Download inside a captured step needs the host"), ExitCodes.Device);
        yield return new TestCaseData(new Bert.Native.Testing.FakeCudaException("CUDA_ERROR_OUT_OF_MEMORY"), ExitCodes.Device);
        yield return new TestCaseData(new UserException("--x: bad"), ExitCodes.Usage);
        yield return new TestCaseData(new UserException("f: bad", ExitCodes.BadInput), ExitCodes.BadInput);
        yield return new TestCaseData(new NullReferenceException(), ExitCodes.Internal);
        yield return new TestCaseData(new ArgumentOutOfRangeException("index"), ExitCodes.Internal);
        yield return new TestCaseData(new IndexOutOfRangeException(), ExitCodes.Internal);
    }

    [TestCaseSource(nameof(ExceptionClasses))]
    public void ExceptionClassesMapToTheirExitCodes(Exception e, int code)
    {
        var user = CliErrors.Translate(e);
        Assert.That(user?.ExitCode ?? ExitCodes.Internal, Is.EqualTo(code));
        if (user is not null && e is not OperationCanceledException) Assert.That(user.Message, Is.EqualTo(e.Message));
    }

    private static void Flip(string path, int fromEnd)
    {
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length + fromEnd] ^= 0x10;
        File.WriteAllBytes(path, bytes);
    }

    private static void Truncate(string path, int bytes)
    {
        using var s = new FileStream(path, FileMode.Open);
        s.SetLength(s.Length - bytes);
    }

    /// <summary>Rewrites a checkpoint's manifest entry for <paramref name="name"/> so the edited file verifies.</summary>
    private static void Rehash(string directory, string name)
    {
        string manifestPath = Path.Combine(directory, CheckpointManifest.FileName);
        var manifest = CheckpointManifest.Parse(File.ReadAllBytes(manifestPath), manifestPath);
        string path = Path.Combine(directory, name);
        var files = manifest.Files.Select(f => f.Name == name
            ? f with { Bytes = new FileInfo(path).Length, XxHash64 = CheckpointManifest.HashFile(PhysicalFileSystem.Instance, path) }
            : f).ToArray();
        File.WriteAllBytes(manifestPath, (manifest with { Files = files }).Serialize());
    }

    private static byte[] Replace(byte[] utf8, string from, string to)
    {
        string text = Encoding.UTF8.GetString(utf8);
        Assert.That(text, Does.Contain(from));
        return Encoding.UTF8.GetBytes(text.Replace(from, to, StringComparison.Ordinal));
    }

    /// <summary>UTF-8 text with its one non-ASCII character (U+00FF) stored as the single byte 0xFF (invalid UTF-8).</summary>
    private static byte[] Latin1(byte[] utf8) => Encoding.Latin1.GetBytes(Encoding.UTF8.GetString(utf8));

    private static void EditConfig(string dir, string from, string to)
    {
        string path = Path.Combine(dir, "config.json");
        File.WriteAllBytes(path, Replace(File.ReadAllBytes(path), from, to));
    }

    /// <summary>Edits the JSON header of model.safetensors keeping its length (the edit must keep the size).</summary>
    private static void EditHeader(string dir, string from, string to)
    {
        Assert.That(to.Length, Is.EqualTo(from.Length));
        string path = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        string header = Encoding.UTF8.GetString(bytes, 8, n);
        int at = header.IndexOf(from, StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0));
        Encoding.UTF8.GetBytes(to).CopyTo(bytes, 8 + at);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Moves the data_offsets end of the tensor that closes the data buffer ten times past it.</summary>
    private static void EditLastOffset(string dir)
    {
        string path = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        string header = Encoding.UTF8.GetString(bytes, 8, n).TrimEnd();
        long dataLength = bytes.Length - 8 - n;
        string end = $",{dataLength}]";
        Assert.That(header, Does.Contain(end), "the tensor that ends the data buffer");
        var edited = Encoding.UTF8.GetBytes(header.Replace(end, $",{dataLength}0]", StringComparison.Ordinal));
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)edited.Length);
        File.WriteAllBytes(path, [.. prefix, .. edited, .. bytes.AsSpan(8 + n)]);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)));
    }
}
