using System.Globalization;
using System.Reflection;
using System.Runtime.Loader;
using Bert.Runtime;
using Bert.Tests.Generator;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using NUnit.Framework;

namespace Bert.Tests.Model;

/// <summary>
/// What a user does: a console project of their own declares a custom variant with the DSL, the
/// generator (running as the compiler would) writes the model, and their Main builds it on the CPU
/// backend and runs a step. The project is compiled in memory with warnings as errors, loaded into its
/// own collectible AssemblyLoadContext (sharing Bert.Runtime with the host) and its entry point run.
/// </summary>
public class UserProjectTests
{
    private const int Vocab = 101;

    /// <summary>The user's whole project: one file.</summary>
    private const string Project = """
        using System;
        using System.Globalization;
        using Bert.Dsl;
        using Bert.Runtime;
        using Bert.Runtime.Cpu;

        namespace Acme.Nlp;

        /// <summary>A small BERT for a 101-token vocabulary and 32-token inputs.</summary>
        [BertModel]
        [Embeddings(VocabSize = 101, MaxPositions = 32, TypeVocabSize = 2, Hidden = 48)]
        [EncoderLayer(Heads = 6, Intermediate = 100)]
        [Repeat(3)]
        [Pooler]
        [MlmHead]
        [NspHead]
        public sealed partial class AcmeBert;

        public static class Program
        {
            public static int Main(string[] args)
            {
                int threads = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 0;
                var (mlm, nsp, gradNorm) = Step(threads);
                Console.WriteLine(FormattableString.Invariant($"mlm={mlm:R} nsp={nsp:R} grad-norm={gradNorm:R} params={AcmeBert.TotalParameters}"));
                return float.IsFinite(mlm) && float.IsFinite(nsp) && float.IsFinite(gradNorm) ? 0 : 1;
            }

            /// <summary>One forward and backward pass of a freshly initialized model on a random batch.</summary>
            private static (float Mlm, float Nsp, float GradNorm) Step(int threads)
            {
                const int B = 4, S = 32, P = 5;
                using var backend = new CpuBackend(threads);
                using var model = new AcmeBert(backend, maxBatch: B, maxSeq: S, maxPredictions: P);
                model.InitializeParameters(seed: 7);

                var rng = new Random(5);
                var ids = new int[B * S];
                var types = new int[B * S];
                var mask = new int[B * S];
                var positions = new int[B * P];
                var labels = new int[B * P];
                var weights = new float[B * P];
                var nsp = new int[B];
                for (int b = 0; b < B; b++)
                {
                    int length = S - 3 * b;
                    for (int s = 0; s < length; s++)
                    {
                        ids[b * S + s] = s == 0 ? 2 : rng.Next(5, AcmeBert.DefaultConfig.VocabSize);
                        types[b * S + s] = s < length / 2 ? 0 : 1;
                        mask[b * S + s] = 1;
                    }
                    for (int p = 0; p < P; p++)
                    {
                        int s = 1 + 5 * p + b;
                        positions[b * P + p] = s;
                        labels[b * P + p] = ids[b * S + s];
                        weights[b * P + p] = 1f;
                        ids[b * S + s] = 4;  // [MASK]
                    }
                    nsp[b] = b % 2;
                }

                using var idsBuffer = Upload(backend, ids);
                using var typesBuffer = Upload(backend, types);
                using var maskBuffer = Upload(backend, mask);
                using var positionsBuffer = Upload(backend, positions);
                using var labelsBuffer = Upload(backend, labels);
                using var weightsBuffer = backend.Allocate(B * P, DType.F32, "mlm-weights");
                backend.Upload<float>(weightsBuffer, weights);
                using var nspBuffer = Upload(backend, nsp);
                var batch = new BertBatch
                {
                    Batch = B, Seq = S, Predictions = P,
                    InputIds = idsBuffer, TokenTypeIds = typesBuffer, AttentionMask = maskBuffer,
                    MlmPositions = positionsBuffer, MlmLabels = labelsBuffer, MlmWeights = weightsBuffer,
                    MlmGradScale = 1f / (B * P + 1e-5f),
                    NspLabels = nspBuffer,
                };

                model.Training = true;
                model.Seed = 1;
                model.ZeroGradients();
                model.Forward(batch);
                model.Backward(batch);

                Span<float> metrics = stackalloc float[MetricSlot.Length];
                model.ReadMetrics(metrics);
                using var norm = backend.Allocate(1, DType.F32, "grad-norm");
                backend.SquaredNorm(norm, model.Gradients, model.ParameterTotal);
                Span<float> squared = stackalloc float[1];
                backend.Download<float>(squared, norm);
                return (metrics[MetricSlot.MlmLoss], metrics[MetricSlot.NspLoss], MathF.Sqrt(squared[0]));
            }

            private static DeviceBuffer Upload(IBackend backend, int[] data)
            {
                var buffer = backend.Allocate(data.Length, DType.I32, "batch");
                backend.Upload<int>(buffer, data);
                return buffer;
            }
        }
        """;

    [Test]
    public void UserProject_CompilesWithTheGenerator_LoadsAndRunsAStep()
    {
        var input = CSharpCompilation.Create("Acme.Nlp",
            [CSharpSyntaxTree.ParseText(Project, GeneratorHarness.ParseOptions, path: "Program.cs")],
            GeneratorHarness.References,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication,
                nullableContextOptions: NullableContextOptions.Enable,
                optimizationLevel: OptimizationLevel.Release,
                generalDiagnosticOption: ReportDiagnostic.Error));
        GeneratorHarness.Driver().RunGeneratorsAndUpdateCompilation(input, out var output, out var generatorDiagnostics);
        Assert.That(generatorDiagnostics, Is.Empty);
        Assert.That(output.SyntaxTrees.Count(), Is.EqualTo(2), "the user's file and the generated model");

        using var image = new MemoryStream();
        var emit = output.Emit(image);
        Assert.That(emit.Success, string.Join("\n", emit.Diagnostics));
        Assert.That(emit.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning), Is.Empty);

        var context = new AssemblyLoadContext("user-project", isCollectible: true);
        string printed;
        int exitCode;
        try
        {
            image.Position = 0;
            var assembly = context.LoadFromStream(image);
            var modelType = assembly.GetType("Acme.Nlp.AcmeBert", throwOnError: true)!;
            Assert.That(modelType.BaseType, Is.SameAs(typeof(BertModelBase)), "the user's model shares the host's Bert.Runtime");
            Assert.That(modelType.GetProperty("TotalParameters")!.GetValue(null), Is.EqualTo(ExpectedParameters()));

            var main = assembly.EntryPoint ?? throw new AssertionException("the project has no entry point");
            var console = Console.Out;
            using var captured = new StringWriter(CultureInfo.InvariantCulture);
            Console.SetOut(captured);
            try
            {
                exitCode = (int)main.Invoke(null, [new[] { "2" }])!;
            }
            catch (TargetInvocationException e) when (e.InnerException is not null)
            {
                throw e.InnerException;
            }
            finally
            {
                Console.SetOut(console);
            }
            printed = captured.ToString();
        }
        finally
        {
            context.Unload();
        }

        TestContext.Out.WriteLine(printed);
        Assert.That(exitCode, Is.Zero, printed);
        var values = printed.Trim().Split(' ').Select(kv => kv.Split('=')).ToDictionary(kv => kv[0], kv => double.Parse(kv[1], CultureInfo.InvariantCulture));
        // At initialization (weights of std 0.02) the logits are nearly uniform: the MLM loss is about
        // ln V and the NSP loss about ln 2 (the small logit variance adds about σ²/2 ≈ 0.01).
        Assert.That(values["mlm"], Is.EqualTo(Math.Log(Vocab)).Within(0.08));
        Assert.That(values["nsp"], Is.EqualTo(Math.Log(2)).Within(0.03));
        Assert.That(values["mlm"] + values["nsp"], Is.EqualTo(Math.Log(Vocab) + Math.Log(2)).Within(0.1));
        Assert.That(values["grad-norm"], Is.GreaterThan(0));
    }

    /// <summary>Parameters of L3 H48 I100 V101, 32 positions, 2 types, pooler, MLM (tied) and NSP heads,
    /// counted from HuggingFace's BertForPreTraining module shapes.</summary>
    private static long ExpectedParameters()
    {
        const long V = Vocab, H = 48, I = 100, L = 3, Pos = 32, T = 2;
        long embeddings = V * H + Pos * H + T * H + 2 * H;
        long layer = 3 * (H * H + H) + (H * H + H) + 2 * H + (I * H + I) + (H * I + H) + 2 * H;
        long pooler = H * H + H;
        long mlm = H * H + H + 2 * H + V;
        long nsp = 2 * H + 2;
        return embeddings + L * layer + pooler + mlm + nsp;
    }
}
