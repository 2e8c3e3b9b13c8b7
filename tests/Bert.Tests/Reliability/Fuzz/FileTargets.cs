using System.Buffers.Binary;
using System.Text;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Runtime.Training;
using Bert.Tests.Data;

namespace Bert.Tests.Reliability.Fuzz;

/// <summary>Small valid files and models the targets start from.</summary>
internal static class FuzzSamples
{
    /// <summary>A BertForPreTraining small enough that a checkpoint is a few kilobytes.</summary>
    public static BertConfig TinyConfig { get; } = new()
    {
        Name = "fuzz", VocabSize = 11, MaxPositions = 8, TypeVocabSize = 2, Hidden = 4, Layers = 1, Heads = 2, Intermediate = 6,
        HasPooler = true, HasMlmHead = true, HasNspHead = true,
    };

    public static IReadOnlyList<ParameterInfo> TinyTable { get; } = ParameterLayout.ForPretraining(TinyConfig);

    public static float[] Values(long count, int seed)
    {
        var rng = new Random(seed);
        var v = new float[count];
        for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }

    /// <summary>A checkpoint of <see cref="TinyConfig"/> with moments, trainer state and a vocab.txt.</summary>
    public static string WriteCheckpoint(string root, long step) =>
        new CheckpointWriter(root, new CheckpointWriterOptions { KeepLast = 2 }).Save(Checkpoint(step));

    /// <summary>What <see cref="WriteCheckpoint"/> writes; the values depend on the step.</summary>
    public static CheckpointContent Checkpoint(long step)
    {
        long total = ParameterLayout.Total(TinyTable);
        var state = TrainerStateJson.Write(new TrainerState(step, 42, [new CursorState("seq128", 0, 3)]),
            new Dictionary<string, string> { ["preset"] = "fuzz" });
        int seed = (int)step * 3;
        return new CheckpointContent
        {
            Step = step, Config = TinyConfig, Table = TinyTable,
            Parameters = Values(total, seed + 1), AdamM = Values(total, seed + 2), AdamV = Values(total, seed + 3),
            TrainerState = state,
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = Encoding.UTF8.GetBytes("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n") },
        };
    }

    public static string GoldenDirectory(string relative) =>
        Path.Combine(TestPaths.RepoRoot, "tests", "Bert.Tests", relative);
}

/// <summary>safetensors: <see cref="SafetensorsFile.Open"/> and reading every tensor.</summary>
internal sealed class SafetensorsTarget : FuzzTarget
{
    private readonly string _dir = NewScratchDirectory("st");
    private readonly string _path;

    public SafetensorsTarget()
    {
        _path = Path.Combine(_dir, "model.safetensors");
        var seeds = new List<byte[]>();
        var ms = new MemoryStream();
        SafetensorsWriter.WriteTo(ms,
        [
            new SafetensorsEntry("a", SafetensorsDType.F32, [2, 3], FuzzSamples.Values(6, 1)),
            new SafetensorsEntry("b", SafetensorsDType.BF16, [4], FuzzSamples.Values(4, 2)),
            new SafetensorsEntry("c", SafetensorsDType.F16, [1, 2, 2], FuzzSamples.Values(4, 3)),
            SafetensorsEntry.FromBytes("d", SafetensorsDType.I64, [3], new byte[24]),
            SafetensorsEntry.FromBytes("e", SafetensorsDType.U8, [5], new byte[] { 1, 2, 3, 4, 5 }),
            new SafetensorsEntry("z", SafetensorsDType.F32, [0, 3], Array.Empty<float>()),
        ], new Dictionary<string, string> { ["format"] = "pt", ["step"] = "12" });
        seeds.Add(ms.ToArray());
        ms = new MemoryStream();
        SafetensorsWriter.WriteTo(ms, [], new Dictionary<string, string> { ["format"] = "pt" });
        seeds.Add(ms.ToArray());
        ms = new MemoryStream();
        SafetensorsWriter.WriteTo(ms, ParameterTensors.Entries(FuzzSamples.TinyTable, FuzzSamples.Values(ParameterLayout.Total(FuzzSamples.TinyTable), 4), SafetensorsDType.F32));
        seeds.Add(ms.ToArray());
        seeds.Add(File.ReadAllBytes(FuzzSamples.GoldenDirectory("IO/golden/torch_mixed.safetensors")));
        Seeds = seeds;
    }

    public override string Name => "safetensors";
    public override IReadOnlyList<byte[]> Seeds { get; }

    public override MutationHints Hints { get; } = new()
    {
        IntegerFields = [(0, 8)],
        Dictionary = ["\"F32\"", "\"F16\"", "\"BF16\"", "\"F64\"", "\"I64\"", "\"I32\"", "\"I16\"", "\"I8\"", "\"U8\"", "\"U16\"",
            "\"U32\"", "\"U64\"", "\"BOOL\"", "\"F8_E4M3\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "\"format\""],
    };

    /// <summary>Half the inputs edit the JSON header as JSON and (mostly) fix the length prefix up, so
    /// the validation behind the prefix check sees many inputs.</summary>
    public override byte[] Mutate(FuzzRng rng, byte[] seed, Mutator mutator)
    {
        if (seed.Length < 8 || rng.OneIn(2)) return mutator.Mutate(rng, seed);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(seed);
        if (n > (ulong)(seed.Length - 8)) return mutator.Mutate(rng, seed);
        var data = seed;
        int length = (int)n;
        int edits = rng.Skewed(4);
        for (int i = 0; i < edits && data.Length >= 8; i++)
        {
            data = mutator.JsonOp(rng, data, 8, length, out int delta);
            length = Math.Max(0, length + delta);
            if (8 + length > data.Length) length = data.Length - 8;
        }
        if (data.Length >= 8 && !rng.OneIn(4)) BinaryPrimitives.WriteUInt64LittleEndian(data, (ulong)Math.Max(0, length));
        if (rng.OneIn(4)) data = mutator.ByteOp(rng, data);
        return data;
    }

    public override void Run(byte[] input)
    {
        File.WriteAllBytes(_path, input);
        using var file = SafetensorsFile.Open(_path);
        foreach (var t in file.Tensors)
        {
            _ = t.ShapeText;
            t.ReadAsFloat32();
        }
        foreach (var (k, v) in file.Metadata) _ = k.Length + v.Length;
        file.Dispose();

        // What import and checkpoint loading do with the tensors: name mapping, tied copies, shape checks.
        var report = HfInterop.Import(_path, FuzzSamples.TinyTable, _parameters);
        _ = report.Describe();
        using var again = SafetensorsFile.Open(_path);
        ParameterTensors.LoadExact(again, FuzzSamples.TinyTable, _parameters);
    }

    private readonly float[] _parameters = new float[ParameterLayout.Total(FuzzSamples.TinyTable)];

    public override bool IsExpected(Exception e) => e is SafetensorsFormatException or TensorMismatchException;

    public override void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>config.json: <see cref="ConfigJson.Parse"/>, the parameter table it implies (which import
/// and export allocate), and a write/read round trip (which export does).</summary>
internal sealed class ConfigTarget : FuzzTarget
{
    public ConfigTarget()
    {
        Seeds =
        [
            ConfigJson.Serialize(FuzzSamples.TinyConfig),
            ConfigJson.Serialize(FuzzSamples.TinyConfig with { HasMlmHead = false, HasNspHead = false, ClassificationLabels = 3 }, ["neg", "neutral", "pos"]),
            ConfigJson.Serialize(FuzzSamples.TinyConfig with { HasPooler = false, HasMlmHead = false, HasNspHead = false, HasSpanHead = true }),
            File.ReadAllBytes(FuzzSamples.GoldenDirectory("IO/golden/hf_bertmodel_legacy/config.json")),
        ];
    }

    public override string Name => "config";
    public override IReadOnlyList<byte[]> Seeds { get; }

    public override MutationHints Hints { get; } = new()
    {
        Json = true,
        Dictionary = ["\"BertForPreTraining\"", "\"BertModel\"", "\"BertForMaskedLM\"", "\"BertForSequenceClassification\"",
            "\"BertForTokenClassification\"", "\"BertForQuestionAnswering\"", "\"BertForNextSentencePrediction\"", "\"GPT2\"",
            "\"gelu\"", "\"gelu_new\"", "\"relu\"", "\"tanh\"", "\"bert\"", "\"roberta\"", "\"absolute\"", "\"relative_key\"",
            "\"vocab_size\"", "\"hidden_size\"", "\"num_hidden_layers\"", "\"num_attention_heads\"", "\"intermediate_size\"",
            "\"id2label\"", "\"label2id\"", "\"num_labels\"", "\"architectures\"", "\"max_position_embeddings\"",
            "\"type_vocab_size\"", "\"pad_token_id\"", "\"is_decoder\"", "\"LABEL_0\"", "\"0\"", "\"1\""],
    };

    public override void Run(byte[] input)
    {
        var file = ConfigJson.Parse(input, "config.json", "fuzz");
        var table = ParameterLayout.For(file.Model);
        long total = ParameterLayout.Total(table);
        if (total > Array.MaxLength)
            throw new InvalidOperationException($"accepted a config of {total} parameters, more than one flat buffer holds");
        var again = ConfigJson.Parse(ConfigJson.Serialize(file.Model, file.LabelNames), "round trip", "fuzz");
        if (again.Model != file.Model with { Name = again.Model.Name })
            throw new InvalidOperationException("config.json does not survive a write and a read");
    }

    public override bool IsExpected(Exception e) => e is ConfigFormatException;
}

/// <summary>vocab.txt: <see cref="Vocabulary.Load"/>, then tokenizing with the loaded vocabulary.</summary>
internal sealed class VocabTarget : FuzzTarget
{
    private readonly string _dir = NewScratchDirectory("vocab");
    private readonly string _path;

    public VocabTarget()
    {
        _path = Path.Combine(_dir, "vocab.txt");
        var synthetic = new StringBuilder();
        foreach (var t in SyntheticCorpus.Vocabulary.Tokens) synthetic.Append(t).Append('\n');
        Seeds =
        [
            Encoding.UTF8.GetBytes(synthetic.ToString()),
            Encoding.UTF8.GetBytes("\ufeff[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nthe\r\n##s\r\nun\r\n##aff\r\n##able\r\n,\r\n!\r\né\r\n中\r\n\r\n"),
            File.ReadAllBytes(Path.Combine(TestPaths.DataDirectory, "TestData", "golden_vocab.txt")),
        ];
    }

    public override string Name => "vocab";
    public override IReadOnlyList<byte[]> Seeds { get; }
    public override MutationHints Hints { get; } = new() { Text = true };

    public override void Run(byte[] input)
    {
        File.WriteAllBytes(_path, input);
        var vocab = Vocabulary.Load(_path);
        var ids = new List<int>();
        new BertTokenizer(vocab).Encode("Héllo, the worlds! unaffable 中文 ##s [MASK] x\u0301y", ids);
        new BertTokenizer(vocab, lowerCase: false).Encode("ÅNGSTRÖM İstanbul ΣΑΣ", ids);
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab.Count) throw new InvalidOperationException($"token id {id} outside the vocabulary of {vocab.Count}");
    }

    public override bool IsExpected(Exception e) => e is VocabularyFormatException;

    public override void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>Corpus text: <see cref="TextCorpus.Read"/> in both formats, then tokenizing every sentence.</summary>
internal sealed class CorpusTarget : FuzzTarget
{
    private readonly string _dir = NewScratchDirectory("corpus");
    private readonly string _path;
    private readonly BertTokenizer _tokenizer = new(SyntheticCorpus.Vocabulary);
    private readonly List<int> _ids = new(1 << 16);

    public CorpusTarget()
    {
        _path = Path.Combine(_dir, "corpus.txt");
        var docs = SyntheticCorpus.Documents(5, 4, seed: 3);
        Seeds =
        [
            Encoding.UTF8.GetBytes(string.Join("\n\n", docs.Select(d => string.Join("\n", d))) + "\n"),
            Encoding.UTF8.GetBytes("The Fulton County Grand Jury said Friday an investigation took place.\nMr. Smith (of the U.S.) said: \"No.\" It rained!\n\n" +
                "Second document, hard-\nwrapped across lines. 中文。日本語！ Ça va? e.g. this one.\n\n\n   \n\tThird.\r\n"),
            [0xEF, 0xBB, 0xBF, (byte)'a', (byte)'\n', (byte)'b', (byte)'\n'],
        ];
    }

    public override string Name => "corpus";
    public override IReadOnlyList<byte[]> Seeds { get; }
    public override MutationHints Hints { get; } = new() { Text = true };

    public override void Run(byte[] input)
    {
        File.WriteAllBytes(_path, input);
        foreach (var format in new[] { CorpusFormat.Documents, CorpusFormat.Paragraphs })
        {
            var corpus = TextCorpus.Read(_path, format);
            foreach (var doc in corpus.Documents)
                foreach (var sentence in doc)
                {
                    _ids.Clear();
                    _tokenizer.Encode(sentence, _ids);
                }
        }
    }

    public override bool IsExpected(Exception e) => e is CorpusFormatException;

    public override void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>Shards: <see cref="ShardReader.Open"/> and reading every record. Most inputs get their
/// checksums recomputed after mutation, so the field and record validation behind them is reached.</summary>
internal sealed class ShardTarget : FuzzTarget
{
    private readonly string _dir = NewScratchDirectory("shard");
    private readonly string _path;

    public ShardTarget()
    {
        _path = Path.Combine(_dir, "shard-00000.bin");
        string build = Path.Combine(_dir, "build");
        PretrainingDataBuilder.Build(SyntheticCorpus.Tokenized(6, 6, seed: 2), "synthetic", SyntheticCorpus.Vocabulary,
            new PretrainingDataOptions { SeqLength = 16, DupeFactor = 1, InstancesPerShard = 6, MaxDegreeOfParallelism = 1 }, build);
        var seeds = new List<byte[]> { File.ReadAllBytes(Path.Combine(build, "shard-00000.bin")) };
        Directory.Delete(build, recursive: true);

        // 4-byte token ids (a vocabulary above 65,536 tokens), written record by record.
        string wide = Path.Combine(_dir, "wide.bin");
        using (var w = new ShardWriter(wide, vocabHash: 0x1234, vocabSize: 70_000, seqLength: 8, maxPredictions: 2))
        {
            var layout = w.Layout;
            var record = new byte[layout.RecordSize];
            for (int r = 0; r < 3; r++)
            {
                Array.Clear(record);
                int[] ids = [2, 69_999, 5 + r, 3, 40_000, 3];
                for (int i = 0; i < ids.Length; i++) layout.WriteToken(record, 4 * i, ids[i]);
                BinaryPrimitives.WriteUInt16LittleEndian(record.AsSpan(layout.MaskedPositionsOffset), 1);
                layout.WriteToken(record, layout.MaskedIdsOffset, 123);
                BinaryPrimitives.WriteUInt16LittleEndian(record.AsSpan(layout.LengthOffset), (ushort)ids.Length);
                BinaryPrimitives.WriteUInt16LittleEndian(record.AsSpan(layout.MaskedCountOffset), 1);
                record[layout.NspOffset] = (byte)(r & 1);
                record[layout.SegmentBitsOffset] = 0b0011_0000;
                w.Append(record);
            }
            w.Commit();
        }
        seeds.Add(File.ReadAllBytes(wide));
        File.Delete(wide);
        Seeds = seeds;
    }

    public override string Name => "shard";
    public override IReadOnlyList<byte[]> Seeds { get; }

    public override MutationHints Hints { get; } = new()
    {
        IntegerFields = [(8, 4), (12, 4), (24, 4), (28, 4), (32, 4), (36, 4), (40, 4), (44, 4), (48, 8), (48, 4), (64, 8), (80 + 32, 2), (80 + 34, 2)],
    };

    public override byte[] Mutate(FuzzRng rng, byte[] seed, Mutator mutator)
    {
        var data = mutator.Mutate(rng, seed);
        if (data.Length >= ShardHeader.Size)
        {
            if (!rng.OneIn(3))
                BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(56), XxHash64.Hash(data.AsSpan(ShardHeader.Size)));
            if (!rng.OneIn(4))
                BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(72), XxHash64.Hash(data.AsSpan(0, 72)));
        }
        return data;
    }

    public override void Run(byte[] input)
    {
        File.WriteAllBytes(_path, input);
        using var shard = ShardReader.Open(_path);
        var h = shard.Header;
        var ids = new int[h.SeqLength];
        var types = new int[h.SeqLength];
        var positions = new int[h.MaxPredictions];
        var labels = new int[h.MaxPredictions];
        for (long i = 0; i < shard.Count; i++)
        {
            var info = shard.Read(ids, types, positions, labels, i);
            if (info.Length > h.SeqLength || info.MaskedCount > h.MaxPredictions)
                throw new InvalidOperationException($"record {i} passed validation with length {info.Length}, count {info.MaskedCount}");
        }
    }

    public override bool IsExpected(Exception e) => e is ShardFormatException;

    public override void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>trainer-state.bin: <see cref="TrainerStateJson.Read"/>.</summary>
internal sealed class TrainerStateTarget : FuzzTarget
{
    public TrainerStateTarget()
    {
        var settings = new Dictionary<string, string>
        {
            ["preset"] = "tiny", ["steps"] = "600", ["batch"] = "32/32", ["lr"] = "0.001", ["seed"] = "42", ["vocab_hash"] = "3b4a84365be0a0f5",
        };
        Seeds =
        [
            TrainerStateJson.Write(new TrainerState(123, 42, [new CursorState("seq128", 1, 4096), new CursorState("seq512", 0, 8)]), settings),
            TrainerStateJson.Write(new TrainerState(0, ulong.MaxValue, []), new Dictionary<string, string>()),
        ];
    }

    public override string Name => "trainer-state";
    public override IReadOnlyList<byte[]> Seeds { get; }

    public override MutationHints Hints { get; } = new()
    {
        Json = true,
        Dictionary = ["\"version\"", "\"step\"", "\"seed\"", "\"cursors\"", "\"phase\"", "\"epoch\"", "\"position\"", "\"settings\"",
            "\"18446744073709551615\"", "\"18446744073709551616\"", "\"-1\"", "\"seq128\""],
    };

    public override void Run(byte[] input)
    {
        var (state, settings) = TrainerStateJson.Read(input, "trainer-state.bin");
        if (state.Step < 0 || state.Cursors.Any(c => c.Epoch < 0 || c.Position < 0) || settings is null)
            throw new InvalidOperationException("accepted a negative step or cursor");
    }

    public override bool IsExpected(Exception e) => e is InvalidDataException;
}

/// <summary>manifest.json: <see cref="CheckpointReader.Open"/> on a checkpoint whose manifest is
/// mutated (the other files stay valid), then reading everything the manifest lists.</summary>
internal sealed class ManifestTarget : FuzzTarget
{
    private readonly string _dir = NewScratchDirectory("ckpt");
    private readonly string _checkpoint;
    private readonly string _manifest;
    private readonly float[] _p, _m, _v;

    public ManifestTarget()
    {
        _checkpoint = FuzzSamples.WriteCheckpoint(_dir, step: 7);
        _manifest = Path.Combine(_checkpoint, CheckpointManifest.FileName);
        var bytes = File.ReadAllBytes(_manifest);
        var parsed = CheckpointManifest.Parse(bytes, _manifest);
        Seeds = [bytes, (parsed with { Files = parsed.Files.Reverse().ToArray() }).Serialize()];
        long total = ParameterLayout.Total(FuzzSamples.TinyTable);
        (_p, _m, _v) = (new float[total], new float[total], new float[total]);
    }

    public override string Name => "manifest";
    public override IReadOnlyList<byte[]> Seeds { get; }

    public override MutationHints Hints { get; } = new()
    {
        Json = true,
        Dictionary = ["\"bert-checkpoint\"", "\"format\"", "\"version\"", "\"step\"", "\"files\"", "\"name\"", "\"bytes\"", "\"xxh64\"",
            "\"model.safetensors\"", "\"config.json\"", "\"optimizer.safetensors\"", "\"trainer-state.bin\"", "\"vocab.txt\"",
            "\"manifest.json\"", "\"latest\"", "\"/etc/passwd\"", "\"..\"", "\"sub/x\"", "\"0000000000000000\"", "\"ffffffffffffffff\""],
    };

    public override void Run(byte[] input)
    {
        File.WriteAllBytes(_manifest, input);
        var checkpoint = CheckpointReader.Open(_checkpoint);
        checkpoint.ReadParameters(FuzzSamples.TinyTable, _p);
        if (checkpoint.HasOptimizerState) checkpoint.ReadOptimizerState(FuzzSamples.TinyTable, _m, _v);
        checkpoint.ReadTrainerState();
        foreach (var f in checkpoint.Manifest.Files) checkpoint.ReadFile(f.Name);
    }

    public override bool IsExpected(Exception e) => e is CheckpointFormatException;

    // Every file of the checkpoint is opened with a 1 MB read buffer (PhysicalFileSystem), twice
    // (checksum, then read): a constant of ~16 MB that does not depend on the input.
    public override long AllocationBudget(int inputLength) => 64L * inputLength + (24L << 20);

    public override void Dispose() => Directory.Delete(_dir, recursive: true);
}
