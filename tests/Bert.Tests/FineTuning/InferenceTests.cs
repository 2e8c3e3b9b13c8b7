using System.Diagnostics;
using Bert.Cli;
using Bert.Cli.Commands;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;
using Bert.Runtime.Training;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.FineTuning;

/// <summary>fill-mask on a model trained to know one sentence; embed's .npy output.</summary>
[NonParallelizable] // the commands write to Console
public class InferenceTests
{
    private TempDirectory _dir = null!;
    private string _trained = null!;

    /// <summary>Overfits BERT-Tiny's masked-LM head on "the man went to the store ." with "store" masked,
    /// and saves it as a checkpoint.</summary>
    [OneTimeSetUp]
    public void TrainTinyModel()
    {
        _dir = TestPaths.NewTempDirectory();
        using var backend = new CpuBackend(2);
        using var model = TinyCheckpoints.CreatePretraining(backend, 1, 9, 1);
        model.InitializeParameters(2);
        var v = TinyCheckpoints.Vocabulary;
        var ids = new[] { v.ClsId }.Concat("the man went to the store .".Split(' ').Select(v.GetId)).Append(v.SepId).ToArray();
        int position = 6;
        int label = ids[position];
        ids[position] = v.MaskId;
        using var idsBuffer = backend.Allocate(ids.Length, DType.I32, "ids");
        using var types = backend.Allocate(ids.Length, DType.I32, "types");
        using var mask = backend.Allocate(ids.Length, DType.I32, "mask");
        using var positions = backend.Allocate(1, DType.I32, "positions");
        using var labels = backend.Allocate(1, DType.I32, "labels");
        using var weights = backend.Allocate(1, DType.F32, "weights");
        backend.Upload<int>(idsBuffer, ids);
        backend.Upload<int>(mask, Enumerable.Repeat(1, ids.Length).ToArray());
        backend.Upload<int>(positions, [position]);
        backend.Upload<int>(labels, [label]);
        backend.Upload<float>(weights, [1f]);
        var batch = new BertBatch
        {
            Batch = 1, Seq = ids.Length, Predictions = 1, InputIds = idsBuffer, TokenTypeIds = types, AttentionMask = mask,
            MlmPositions = positions, MlmLabels = labels, MlmWeights = weights, MlmGradScale = 1f / (1f + 1e-5f),
        };
        using var adam = new AdamWOptimizer(model, new AdamWOptions());
        model.Training = true;
        for (int step = 1; step <= 40; step++)
        {
            model.ZeroGradients();
            model.DropoutStep = (uint)step;
            model.Forward(batch);
            model.Backward(batch);
            adam.Step(step, 2e-3f);
        }
        _trained = TinyCheckpoints.Save(model, _dir.File("trained"));
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void FillMaskReturnsTheTrainedTokenFirstWithProbabilities()
    {
        var output = new StringWriter();
        Assert.That(FillMaskCommand.Run(_dir.File("trained"), "the man went to the [MASK] .", 3, "cpu", 2, output), Is.EqualTo(ExitCodes.Ok));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(4));
        Assert.That(lines[0], Does.StartWith("score"));
        var first = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(first[1], Is.EqualTo("store"), output.ToString());
        Assert.That(double.Parse(first[0], System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0.5));
        Assert.That(lines[1], Does.EndWith("the man went to the store."));

        // The same through the API: probabilities sorted, summing to at most 1.
        var source = PretrainedSource.Open(_trained);
        using var backend = new CpuBackend(2);
        using var model = PretrainedModels.CreatePretraining(source, backend, 1, 16, 2, requireMlmHead: true, out _);
        var tokenizer = new BertTokenizer(TinyCheckpoints.Vocabulary);
        var all = MaskFiller.Fill(model, tokenizer, "the man went to the [MASK] .", TinyCheckpoints.Vocabulary.Count);
        var scores = all[0].Select(p => p.Score).ToArray();
        Assert.That(scores, Is.Ordered.Descending);
        Assert.That(scores.Sum(), Is.EqualTo(1.0).Within(1e-5));
        var two = MaskFiller.Fill(model, tokenizer, "[MASK] man went to the [MASK] .", 2);
        Assert.That(two, Has.Count.EqualTo(2));
        Assert.That(two[1][0].Sequence, Does.StartWith("[MASK] man went"));
    }

    [Test]
    public void FillMaskWithoutAMaskIsAUsageError()
    {
        Assert.That(Program.Run(["fill-mask", "--checkpoint", _dir.File("trained"), "the man went to the store ."]), Is.EqualTo(ExitCodes.Usage));
        Assert.That(Program.Run(["fill-mask", "--checkpoint", _dir.File("missing"), "the [MASK] ."]), Is.EqualTo(ExitCodes.BadInput));
        Assert.Throws<ArgumentException>(() => MaskFiller.Encode(new BertTokenizer(TinyCheckpoints.Vocabulary), "no mask here"));
    }

    [Test]
    public void EmbedWritesOneFloat32RowPerLineIndependentOfBatching()
    {
        string input = _dir.File("lines.txt");
        File.WriteAllText(input, "the man went to the store .\n\nthe film was good\nthe man went to the store .\n");
        string cls = _dir.File("cls.npy"), mean = _dir.File("mean.npy"), single = _dir.File("single.npy");
        var log = new StringWriter();
        Assert.That(EmbedCommand.Run(_dir.File("trained"), input, cls, "cls", 16, 4, "cpu", 2, log, default), Is.EqualTo(ExitCodes.Ok));
        Assert.That(EmbedCommand.Run(_dir.File("trained"), input, mean, "mean", 16, 4, "cpu", 2, log, default), Is.EqualTo(ExitCodes.Ok));
        Assert.That(EmbedCommand.Run(_dir.File("trained"), input, single, "cls", 16, 1, "cpu", 2, log, default), Is.EqualTo(ExitCodes.Ok));
        Assert.That(log.ToString(), Does.Contain("float32 [4, 128]"));

        var (c, rows, columns) = NpyFile.ReadFloat32Matrix(cls);
        Assert.That((rows, columns), Is.EqualTo((4, 128)));
        Assert.That(c.All(float.IsFinite), Is.True);
        // GEMM rows in different register blocks may round differently, hence a tolerance.
        Assert.That(c.AsSpan(0, 128).ToArray(), Is.EqualTo(c.AsSpan(3 * 128, 128).ToArray()).Within(1e-4), "the same line gives the same vector");
        Assert.That(MaxDifference(c.AsSpan(0, 128), c.AsSpan(2 * 128, 128)), Is.GreaterThan(1e-2));
        var (s, _, _) = NpyFile.ReadFloat32Matrix(single);
        for (int i = 0; i < c.Length; i++)
            Assert.That(s[i], Is.EqualTo(c[i]).Within(1e-4), $"element {i}: padding in a batch must not change a vector");
        var (m, _, _) = NpyFile.ReadFloat32Matrix(mean);
        Assert.That(MaxDifference(m.AsSpan(0, 128), c.AsSpan(0, 128)), Is.GreaterThan(1e-2), "mean pooling differs from [CLS]");
        Assert.That(Directory.GetFiles(_dir.Path, "*.tmp-*"), Is.Empty);

        Assert.That(Program.Run(["embed", "--checkpoint", _dir.File("trained"), "--input", input, "--out", _dir.File("x.bin")]), Is.EqualTo(ExitCodes.Usage));
        Assert.That(Program.Run(["embed", "--checkpoint", _dir.File("trained"), "--input", input, "--out", cls, "--pooling", "max"]), Is.EqualTo(ExitCodes.Usage));
        Assert.That(Program.Run(["embed", "--checkpoint", _dir.File("trained"), "--input", _dir.File("none.txt"), "--out", cls]), Is.EqualTo(ExitCodes.BadInput));
    }

    private static double MaxDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    [Test]
    public void NpyFilesRoundTripAndNumpyReadsThem()
    {
        var data = Enumerable.Range(0, 3 * 5).Select(i => i * 0.25f - 1.5f).ToArray();
        string path = _dir.File("m.npy");
        NpyFile.Write(path, data, 3, 5);
        byte[] bytes = File.ReadAllBytes(path);
        int dataStart = 10 + BitConverter.ToUInt16(bytes, 8);
        Assert.That(dataStart % 64, Is.EqualTo(0));
        Assert.That(System.Text.Encoding.ASCII.GetString(bytes, 10, dataStart - 10).TrimEnd(),
            Is.EqualTo("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }"));
        var (back, rows, columns) = NpyFile.ReadFloat32Matrix(path);
        Assert.That((back, rows, columns), Is.EqualTo((data, 3, 5)));
        File.WriteAllBytes(_dir.File("bad.npy"), bytes.AsSpan(0, bytes.Length - 4).ToArray());
        Assert.Throws<FineTuningFormatException>(() => NpyFile.ReadFloat32Matrix(_dir.File("bad.npy")));

        if (!File.Exists("/usr/bin/python3")) Assert.Ignore("no python3 to cross-check with numpy");
        var psi = new ProcessStartInfo("/usr/bin/python3", ["-c",
            "import sys, numpy; a = numpy.load(sys.argv[1]); print(a.dtype, a.shape, repr(float(a[2, 4])), repr(float(a.sum())))", path])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 && stderr.Contains("No module named", StringComparison.Ordinal)) Assert.Ignore("numpy is not installed");
        Assert.That(p.ExitCode, Is.EqualTo(0), stderr);
        Assert.That(stdout.Trim(), Is.EqualTo("float32 (3, 5) 2.0 " + data.Sum().ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
    }
}
