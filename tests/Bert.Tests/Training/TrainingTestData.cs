using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Data;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.Training;

/// <summary>Deletes the shared training data after every test of this namespace ran.</summary>
[SetUpFixture]
public sealed class TrainingSetUp
{
    [OneTimeTearDown]
    public void DeleteData() => TrainingData.Delete();
}

/// <summary>
/// The synthetic pretraining data every training test reads, built once per test run with the data
/// pipeline: the synthetic vocabulary (~95 tokens) saved as vocab.txt, datasets at S=32 (P=8) and
/// S=64 (P=12) from one corpus, held-out datasets from another, and an eight-instance dataset.
/// </summary>
internal static class TrainingData
{
    public const int ShortSeq = 32, ShortPredictions = 8, LongSeq = 64, LongPredictions = 12;

    private static readonly Lazy<string> RootDirectory = new(Build);

    public static Vocabulary Vocab => SyntheticCorpus.Vocabulary;

    public static string Root => RootDirectory.Value;

    public static string VocabPath => Path.Combine(Root, "vocab.txt");

    /// <summary>Holds seq32/ and seq64/.</summary>
    public static string DataRoot => Path.Combine(Root, "data");

    /// <summary>Holds seq32/ and seq64/ made from a different corpus.</summary>
    public static string HeldOutRoot => Path.Combine(Root, "heldout");

    /// <summary>seq32/ with exactly eight instances.</summary>
    public static string EightRoot => Path.Combine(Root, "eight");

    public static PretrainingDataset Open(int seq) => PretrainingDataset.Open(PretrainingDataBuilder.DatasetDirectory(DataRoot, seq), Vocab);

    public static PretrainingDataset OpenEight() => PretrainingDataset.Open(PretrainingDataBuilder.DatasetDirectory(EightRoot, ShortSeq), Vocab);

    /// <summary>A fresh directory under the shared root (deleted with it).</summary>
    public static string NewDirectory(string name)
    {
        string dir = Path.Combine(Root, "runs", name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string Build()
    {
        string root = Path.Combine(Path.GetTempPath(), "bert-training-tests-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        Vocab.Save(Path.Combine(root, "vocab.txt"));
        var train = SyntheticCorpus.Tokenized(40, 8, seed: 21);
        var heldOut = SyntheticCorpus.Tokenized(12, 8, seed: 22);
        foreach (var (seq, corpus, dir) in new[] { (ShortSeq, train, "data"), (LongSeq, train, "data"), (ShortSeq, heldOut, "heldout"), (LongSeq, heldOut, "heldout") })
            PretrainingDataBuilder.Build(corpus, "synthetic", Vocab,
                new PretrainingDataOptions { SeqLength = seq, DupeFactor = 1, Seed = 3 },
                PretrainingDataBuilder.DatasetDirectory(Path.Combine(root, dir), seq));

        // Eight instances: the first records of the S=32 shard copied into a shard of their own.
        string source = Directory.GetFiles(PretrainingDataBuilder.DatasetDirectory(Path.Combine(root, "data"), ShortSeq), "shard-*.bin").Order().First();
        string eight = PretrainingDataBuilder.DatasetDirectory(Path.Combine(root, "eight"), ShortSeq);
        Directory.CreateDirectory(eight);
        using (var reader = ShardReader.Open(source))
        using (var writer = new ShardWriter(Path.Combine(eight, PretrainingDataBuilder.ShardFileName(0)), reader.Header.VocabHash,
                   reader.Header.VocabSize, reader.Header.SeqLength, reader.Header.MaxPredictions))
        {
            for (int i = 0; i < 8; i++) writer.Append(reader.Record(i));
            writer.Commit();
        }
        return root;
    }

    public static void Delete()
    {
        if (!RootDirectory.IsValueCreated) return;
        try
        {
            Directory.Delete(RootDirectory.Value, recursive: true);
        }
        catch (IOException)
        {
            // A handle still open on a failed test's file; the OS temp cleaner gets it.
        }
    }
}

/// <summary>Helpers shared by the training tests.</summary>
internal static class TrainingHelpers
{
    /// <summary>Both threads of the CI machine; fixed so OpenBLAS results are reproducible.</summary>
    public const int Threads = 2;

    public static CpuBackend NewBackend() => new(Threads);

    public static BertModelBase Tiny(IBackend backend, int maxBatch, int maxSeq = TrainingData.LongSeq, int maxPredictions = TrainingData.LongPredictions) =>
        ModelPresets.Create("tiny", backend, maxBatch, maxSeq, maxPredictions, TrainingData.Vocab.Count);

    public static float[] Download(IBackend backend, TensorRef tensor)
    {
        var host = new float[tensor.Length];
        backend.Download<float>(host, tensor);
        return host;
    }

    /// <summary>The weights after <paramref name="steps"/> steps of BERT-Tiny (seed 5, both phases: batch 8 in micro-batches
    /// of 4 at S=32, batch 4 in micro-batches of 2 at S=64, the last third long) trained on <paramref name="backend"/>,
    /// through <paramref name="communicator"/> when given (the replicas synchronized first).</summary>
    public static float[] TrainedWeights(IBackend backend, Bert.Runtime.Distributed.ICommunicator? communicator, long steps)
    {
        var datasets = TrainerTests.Datasets();
        try
        {
            using var model = Tiny(backend, 4);
            model.InitializeParameters(7);
            using var trainer = new Trainer(model, TrainerTests.Phases(steps, 1 / 3.0, 8, 4, 4, 2), datasets, LearningRateSchedule.Create(1e-3, 1, steps),
                new AdamWOptions(), seed: 5, communicator: communicator);
            trainer.SynchronizeReplicas();
            while (!trainer.Finished) trainer.RunStep();
            return Download(backend, model.Parameters.View);
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }

    /// <summary>Bitwise equality with the first differing element (and its tensor) in the message.</summary>
    public static void AssertBitwiseEqual(float[] expected, float[] actual, BertModelBase model, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i])) continue;
            var row = model.ParameterTable.Last(p => p.Offset <= i);
            Assert.Fail($"{what}: element {i} ({row.Name} [{i - row.Offset}]) is {actual[i]:R}, expected {expected[i]:R}");
        }
    }

    /// <summary>One identity per row of a batch (its tokens, segments, masked positions, labels and NSP
    /// label), so tests can compare which instances a run saw.</summary>
    public static ulong[] RowIds(HostBatch batch)
    {
        var ids = new ulong[batch.Rows];
        int s = batch.SeqLength, p = batch.Predictions;
        for (int r = 0; r < batch.Rows; r++)
        {
            var h = new Bert.Runtime.IO.XxHash64();
            h.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(batch.InputIds.AsSpan(r * s, s)));
            h.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(batch.TokenTypeIds.AsSpan(r * s, s)));
            h.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(batch.MlmPositions.AsSpan(r * p, p)));
            h.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(batch.MlmLabels.AsSpan(r * p, p)));
            h.Append(BitConverter.GetBytes(batch.NspLabels[r]));
            ids[r] = h.Digest();
        }
        return ids;
    }

    /// <summary>Runs `bert ARGS` in-process; returns the exit code and what it wrote.</summary>
    public static (int Code, string Out, string Err) RunCli(params string[] args)
    {
        var oldOut = Console.Out;
        var oldErr = Console.Error;
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            int code = Bert.Cli.Program.Run(args);
            return (code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}
