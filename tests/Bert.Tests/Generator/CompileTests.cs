using Microsoft.CodeAnalysis;
using NUnit.Framework;

namespace Bert.Tests.Generator;

/// <summary>User-style specs compile cleanly through the generator: no generator diagnostics and no
/// compiler warning or error in the spec plus the emitted code, built against Bert.Runtime.</summary>
public class CompileTests
{
    private static IEnumerable<TestCaseData> Snippets()
    {
        TestCaseData Snippet(string name, string source) => new TestCaseData(source).SetArgDisplayNames(name);

        yield return Snippet("custom-variant", """
            using Bert.Dsl;

            namespace MyCompany.Models;

            /// <summary>A narrow, deep variant for a small custom vocabulary.</summary>
            [BertModel(ModelType = "bert")]
            [Embeddings(VocabSize = 8000, MaxPositions = 128, TypeVocabSize = 2, Hidden = 48, LayerNormEps = 1e-6)]
            [EncoderLayer(Heads = 6, Intermediate = 100, Activation = HiddenActivation.GeluTanh, AttentionDropout = 0.0, HiddenDropout = 0.05)]
            [Repeat(3)]
            [Pooler]
            [MlmHead]
            [NspHead]
            public sealed partial class NarrowBert
            {
                public static long ParameterCount => TotalParameters;
            }

            public static class Use
            {
                public static Bert.Runtime.BertModelBase Build(Bert.Runtime.IBackend backend) => new NarrowBert(backend, 8, 128, 20, NarrowBert.DefaultConfig with { VocabSize = 7000, Layers = 5 });
                public static (long, long) Plan(Bert.Runtime.IBackend backend) => NarrowBert.PlanArena(backend, NarrowBert.DefaultConfig, 8, 128, 20);
                public static Bert.Runtime.BertConfig Config() => NarrowBert.DefaultConfig;
            }
            """);
        yield return Snippet("classification", """
            using Bert.Dsl;
            namespace Tasks;
            [BertModel]
            [Embeddings(Hidden = 64)]
            [EncoderLayer(Heads = 4, Intermediate = 256)]
            [Repeat(2)]
            [Pooler]
            [ClassificationHead(Labels = 3)]
            public partial class Sentiment;
            """);
        yield return Snippet("token-classification", """
            using Bert.Dsl;
            namespace Tasks;
            [BertModel]
            [Embeddings(Hidden = 64)]
            [EncoderLayer(Heads = 4, Intermediate = 256, Activation = HiddenActivation.Relu)]
            [Repeat(2)]
            [TokenClassificationHead(Labels = 9, Dropout = 0.2)]
            public partial class Ner;
            """);
        yield return Snippet("span", """
            using Bert.Dsl;
            namespace Tasks;
            [BertModel]
            [Embeddings(Hidden = 64)]
            [EncoderLayer(Heads = 4, Intermediate = 256)]
            [Repeat(1)]
            [Pooler]
            [SpanHead]
            public partial class Squad;
            """);
        yield return Snippet("untied-mlm", """
            using Bert.Dsl;
            namespace Tasks;
            [BertModel]
            [Embeddings(VocabSize = 1000, Hidden = 64)]
            [EncoderLayer(Heads = 4, Intermediate = 256)]
            [Repeat(2)]
            [MlmHead(TieToWordEmbeddings = false, TransformSize = 48)]
            public partial class Untied;
            """);
        yield return Snippet("nested-global-namespace", """
            using Bert.Dsl;
            public static partial class Zoo
            {
                [BertModel]
                [Embeddings(Hidden = 32)]
                [EncoderLayer(Heads = 2, Intermediate = 64)]
                [Repeat(1)]
                public partial class Encoder;
            }
            """);
    }

    [TestCaseSource(nameof(Snippets))]
    public void Snippet_CompilesCleanly(string source)
    {
        var (output, generatorDiagnostics, result) = GeneratorHarness.Run(source);
        Assert.That(generatorDiagnostics, Is.Empty);
        Assert.That(result.GeneratedSources, Has.Length.EqualTo(1));
        var problems = output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
        using var image = new MemoryStream();
        var emit = output.Emit(image);
        Assert.That(emit.Success, string.Join("\n", emit.Diagnostics));
    }

    [Test]
    public void GeneratedMembers_CarryGeneratedCode()
    {
        var (_, _, result) = GeneratorHarness.Run(File.ReadAllText(GeneratorHarness.RepositoryFile("tests", "Bert.Tests", "Generator", "OddModel.cs")));
        var text = result.GeneratedSources.Single().SourceText.ToString();
        var stamp = "[global::System.CodeDom.Compiler.GeneratedCode(\"Bert.Generators\", \"" +
                    typeof(Bert.Generators.BertModelGenerator).Assembly.GetName().Version + "\")]";
        foreach (var member in new[] { "TotalParameters", "BertConfig DefaultConfig", "BertConfig ResolveConfig(", "Table {", "ParameterInfo> TableFor(", "(long Compute, long F32) PlanArena(", "public OddModel(", "void Forward", "void Backward" })
        {
            int at = text.IndexOf(member, StringComparison.Ordinal);
            Assert.That(at, Is.GreaterThan(0), member);
            var before = text[..at];
            var lastLine = before[..before.LastIndexOf('\n')];
            Assert.That(lastLine[(lastLine.LastIndexOf('\n') + 1)..].Trim(), Is.EqualTo(stamp), member);
        }
    }
}
