using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.IO;
using Bert.Tests.Generator;
using NUnit.Framework;

namespace Bert.Tests.Model;

/// <summary>
/// CPU parity with an independent PyTorch implementation of HuggingFace's BertForPreTraining
/// (bench/reference/parity/bert_reference.py, computing in float64) on the odd model with perturbed
/// weights (<see cref="TestWeights"/>, seed <see cref="WeightSeed"/>), dropout off, on a padded batch
/// with padding predictions. Metrics, all fp32 results against the float64 reference:
/// <list type="bullet">
/// <item>MLM and NSP logits: max |ours − ref| / max |ref| ≤ 1e-5 (each tensor);</item>
/// <item>MLM and NSP losses: |ours − ref| / |ref| ≤ 1e-5;</item>
/// <item>gradients, per parameter tensor: max |ours − ref| / max(max |ref|, 1e-3·G) ≤ 1e-4, where G is
/// the largest reference gradient of the model (the floor only matters for tensors whose gradient is
/// zero by construction, the attention key biases).</item>
/// </list>
/// One test runs the script now (ignored without /usr/bin/python3 and torch); the other compares
/// against its committed output (tests/Bert.Tests/Model/golden/parity_odd), so the comparison runs
/// everywhere. BERT_UPDATE_PARITY_GOLDEN=1 rewrites the golden files and the dump for hf_parity.py
/// (bench/results/parity/odd).
/// </summary>
[TestFixture]
[Category("Parity")]
public class TorchParityTests
{
    private const int B = 3, S = 7, P = 3, InputSeed = 17;
    public const ulong WeightSeed = 2024;
    public const double LogitTolerance = 1e-5, LossTolerance = 1e-5, GradientTolerance = 1e-4;
    private const string UpdateVariable = "BERT_UPDATE_PARITY_GOLDEN";
    private const string Python = "/usr/bin/python3";

    private CpuBackend _backend = null!;
    private string _temp = null!;

    [OneTimeSetUp]
    public void Setup()
    {
        _backend = new CpuBackend();
        _temp = Directory.CreateTempSubdirectory("bert-parity-").FullName;
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        _backend.Dispose();
        Directory.Delete(_temp, recursive: true);
    }

    private static string Script => GeneratorHarness.RepositoryFile("bench", "reference", "parity", "bert_reference.py");
    private static string GoldenDirectory => GeneratorHarness.RepositoryFile("tests", "Bert.Tests", "Model", "golden", "parity_odd");
    private static string DumpDirectory => GeneratorHarness.RepositoryFile("bench", "results", "parity", "odd");

    // ---- our side ------------------------------------------------------------------------------

    /// <summary>What both sides produce for one batch.</summary>
    internal sealed record Outputs(float[] MlmLogits, float[] NspLogits, double MlmLoss, double NspLoss,
        IReadOnlyDictionary<string, float[]> Gradients, string Producer);

    private static float[] Weights() =>
        TestWeights.Create(OddModel.Table, OddModel.TotalParameters, OddModel.DefaultConfig.InitializerRange, WeightSeed);

    private Outputs RunOurs(HostInputs inputs, float[] weights)
    {
        using var model = new OddModel(_backend, inputs.Batch, inputs.Seq, inputs.Predictions);
        _backend.Upload<float>(model.Parameters, weights);
        model.Training = false;
        using var device = new DeviceInputs(_backend, inputs, model.Config);

        // Without labels the logits stay in place (with labels the loss overwrites them with their gradient).
        model.Forward(device.Unlabeled);
        var mlm = ModelLoss.Download(_backend, model.MlmLogits);
        var nsp = ModelLoss.Download(_backend, model.NspLogits);

        model.ZeroGradients();
        model.Forward(device.Batch);
        Span<float> metrics = stackalloc float[MetricSlot.Length];
        model.ReadMetrics(metrics);
        model.Backward(device.Batch);
        var flat = ModelLoss.Download(_backend, model.Gradients);
        var gradients = model.ParameterTable.ToDictionary(p => p.Name, p => flat.AsSpan((int)p.Offset, (int)p.Count).ToArray());
        return new Outputs(mlm, nsp, metrics[MetricSlot.MlmLoss], metrics[MetricSlot.NspLoss], gradients,
            $"Bert {_backend.Name}, fp32");
    }

    // ---- the files -----------------------------------------------------------------------------

    /// <summary>Reads PREFIX.json and the tensor file it names (bert_reference.py's output format).</summary>
    internal static Outputs Read(string prefix)
    {
        string jsonPath = prefix + ".json";
        var json = JsonNode.Parse(File.ReadAllText(jsonPath))!.AsObject();
        double Number(string key) => json[key]?.GetValue<double>() ?? throw new FormatException($"{jsonPath}: missing '{key}'");
        string tensors = Path.Combine(Path.GetDirectoryName(jsonPath)!, json["tensors"]!.GetValue<string>());
        using var file = SafetensorsFile.Open(tensors);
        const string grad = "grad.";
        return new Outputs(file["mlm_logits"].ReadAsFloat32(), file["nsp_logits"].ReadAsFloat32(), Number("mlm_loss"), Number("nsp_loss"),
            file.Tensors.Where(t => t.Name.StartsWith(grad, StringComparison.Ordinal)).ToDictionary(t => t.Name[grad.Length..], t => t.ReadAsFloat32()),
            json["producer"]?.GetValue<string>() ?? "?");
    }

    /// <summary>Writes outputs in bert_reference.py's format (PREFIX.safetensors, PREFIX.json).</summary>
    private static void Write(string prefix, Outputs o, int mlmRows, int vocab)
    {
        var entries = new List<SafetensorsEntry>
        {
            new("mlm_logits", SafetensorsDType.F32, [mlmRows, vocab], o.MlmLogits),
            new("nsp_logits", SafetensorsDType.F32, [o.NspLogits.Length / 2, 2], o.NspLogits),
        };
        foreach (var p in OddModel.Table) entries.Add(new("grad." + p.Name, SafetensorsDType.F32, p.Shape, o.Gradients[p.Name]));
        SafetensorsWriter.Write(PhysicalFileSystem.Instance, prefix + ".safetensors", entries,
            new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "Bert" });
        var json = new JsonObject
        {
            ["producer"] = o.Producer,
            ["dtype"] = "float32",
            ["tensors"] = Path.GetFileName(prefix) + ".safetensors",
            ["mlm_loss"] = o.MlmLoss,
            ["nsp_loss"] = o.NspLoss,
            ["total_loss"] = o.MlmLoss + o.NspLoss,
        };
        File.WriteAllText(prefix + ".json", json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>SHA-256 of the flat F32 parameters (little-endian), so the golden files can tell when the
    /// weights they were made from can no longer be reproduced.</summary>
    private static string Sha256(float[] weights) => Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(weights.AsSpan())));

    // ---- the comparison ------------------------------------------------------------------------

    /// <summary>Every metric of the class comment; returns what is out of tolerance.</summary>
    internal static List<string> Compare(Outputs ours, Outputs reference, TextWriter? log = null)
    {
        var problems = new List<string>();
        double MaxAbs(float[] x) => x.Length == 0 ? 0 : x.Max(v => Math.Abs((double)v));
        double MaxDiff(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).DefaultIfEmpty().Max();
        void Check(string what, double error, double tolerance)
        {
            log?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {what,-60} {error:E2}"));
            if (!(error <= tolerance)) problems.Add(string.Create(CultureInfo.InvariantCulture, $"{what}: {error:E3} > {tolerance:E0}"));
        }
        void Tensor(string what, float[] a, float[] r, double tolerance, double floor = 0)
        {
            if (a.Length != r.Length)
            {
                problems.Add($"{what}: {a.Length} elements, the reference has {r.Length}");
                return;
            }
            Check(what, MaxDiff(a, r) / Math.Max(MaxAbs(r), floor), tolerance);
        }

        log?.WriteLine($"ours: {ours.Producer}; reference: {reference.Producer}");
        Tensor("mlm_logits", ours.MlmLogits, reference.MlmLogits, LogitTolerance);
        Tensor("nsp_logits", ours.NspLogits, reference.NspLogits, LogitTolerance);
        Check("mlm_loss", Math.Abs(ours.MlmLoss - reference.MlmLoss) / Math.Abs(reference.MlmLoss), LossTolerance);
        Check("nsp_loss", Math.Abs(ours.NspLoss - reference.NspLoss) / Math.Abs(reference.NspLoss), LossTolerance);
        double largest = reference.Gradients.Values.Max(MaxAbs);
        foreach (var (name, g) in ours.Gradients)
        {
            if (!reference.Gradients.TryGetValue(name, out var r)) problems.Add($"grad.{name}: missing from the reference");
            else Tensor("grad." + name, g, r, GradientTolerance, 1e-3 * largest);
        }
        foreach (var name in reference.Gradients.Keys.Except(ours.Gradients.Keys)) problems.Add($"grad.{name}: the reference has it, we do not");
        return problems;
    }

    // ---- the tests -----------------------------------------------------------------------------

    [Test]
    public void OddModel_MatchesPyTorchReference_RunNow()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found: the PyTorch reference cannot run here");
        var inputs = HostInputs.Create(OddModel.DefaultConfig, B, S, P, InputSeed);
        var weights = Weights();
        var ours = RunOurs(inputs, weights);

        string checkpoint = new CheckpointWriter(Path.Combine(_temp, "checkpoints")).Save(new CheckpointContent
        {
            Step = 0, Config = OddModel.DefaultConfig, Table = OddModel.Table, Parameters = weights,
        });
        string inputsPath = Path.Combine(_temp, "inputs.json");
        File.WriteAllText(inputsPath, inputs.ToJson());
        string prefix = Path.Combine(_temp, "reference");
        RunReference(checkpoint, inputsPath, prefix);

        var problems = Compare(ours, Read(prefix), TestContext.Out);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));

        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
            UpdateGoldenFiles(inputs, weights, ours, checkpoint, inputsPath, prefix);
    }

    [Test]
    public void OddModel_MatchesCommittedPyTorchGolden()
    {
        string inputsPath = Path.Combine(GoldenDirectory, "inputs.json");
        var inputs = HostInputs.FromJson(File.ReadAllText(inputsPath), inputsPath);
        var weights = Weights();
        var recorded = JsonNode.Parse(File.ReadAllText(Path.Combine(GoldenDirectory, "weights.json")))!;
        Assert.That(recorded["seed"]!.GetValue<ulong>(), Is.EqualTo(WeightSeed));
        Assert.That(Sha256(weights), Is.EqualTo(recorded["sha256"]!.GetValue<string>()),
            "the weights no longer match those the golden file was made from (InitializeParameters or TestWeights changed): " +
            $"regenerate it with {UpdateVariable}=1 where torch is installed");

        var problems = Compare(RunOurs(inputs, weights), Read(Path.Combine(GoldenDirectory, "reference")), TestContext.Out);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
    }

    [Test]
    public void Comparison_FailsOnASmallWeightChange()
    {
        string inputsPath = Path.Combine(GoldenDirectory, "inputs.json");
        var inputs = HostInputs.FromJson(File.ReadAllText(inputsPath), inputsPath);
        var weights = Weights();
        // One LayerNorm gain of the last layer off by 0.1%: every output moves by well under 1e-3.
        var gamma = OddModel.Table.Single(p => p.Name == "bert.encoder.layer.1.output.LayerNorm.weight");
        weights[gamma.Offset + 3] *= 1.001f;

        var problems = Compare(RunOurs(inputs, weights), Read(Path.Combine(GoldenDirectory, "reference")));

        Assert.That(problems, Has.Some.StartsWith("mlm_logits"));
        Assert.That(problems, Has.Some.StartsWith("grad.bert.encoder.layer.0."), string.Join("\n", problems));
    }

    // ---- running the reference -----------------------------------------------------------------

    internal static void RunReference(string model, string inputs, string prefix)
    {
        var start = new ProcessStartInfo(Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { Script, "--model", model, "--inputs", inputs, "--out", prefix, "--dtype", "float64" })
            start.ArgumentList.Add(a);
        start.Environment["OMP_NUM_THREADS"] = "1";
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {Python}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"bert_reference.py did not finish in 2 minutes\n{stderr.Result}");
        }
        if (process.ExitCode != 0 && stderr.Result.Contains("No module named 'torch'", StringComparison.Ordinal))
            Assert.Ignore($"torch is not installed for {Python}: the PyTorch reference cannot run here");
        Assert.That(process.ExitCode, Is.Zero, $"bert_reference.py failed:\n{stdout.Result}\n{stderr.Result}");
        TestContext.Out.WriteLine(stdout.Result.Trim());
    }

    /// <summary>Rewrites the committed golden files (the reference's inputs and outputs, and the weights'
    /// seed and checksum) and the dump that hf_parity.py reads on the GPU machine: the same weights as an
    /// exported HuggingFace directory, the inputs, and our outputs.</summary>
    private static void UpdateGoldenFiles(HostInputs inputs, float[] weights, Outputs ours, string checkpoint, string inputsPath, string prefix)
    {
        Directory.CreateDirectory(GoldenDirectory);
        File.Copy(inputsPath, Path.Combine(GoldenDirectory, "inputs.json"), overwrite: true);
        string reference = Path.Combine(GoldenDirectory, "reference");
        RunReference(checkpoint, inputsPath, reference);
        var weightsJson = new JsonObject
        {
            ["seed"] = WeightSeed,
            ["rule"] = "BertModelBase.InitializeParameters(seed), then TestWeights (tests/Bert.Tests/Model/ModelTestKit.cs; docs/parity.md)",
            ["sha256"] = Sha256(weights),
        };
        File.WriteAllText(Path.Combine(GoldenDirectory, "weights.json"), weightsJson.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

        string dump = DumpDirectory;
        Directory.CreateDirectory(dump);
        HfInterop.Export(PhysicalFileSystem.Instance, Path.Combine(dump, "model"), OddModel.DefaultConfig, OddModel.Table, weights);
        File.Copy(inputsPath, Path.Combine(dump, "inputs.json"), overwrite: true);
        Write(Path.Combine(dump, "bert"), ours, inputs.Batch * inputs.Predictions, OddModel.DefaultConfig.VocabSize);
        TestContext.Out.WriteLine($"updated {GoldenDirectory} and {dump} (reference at {prefix})");
    }
}
