using Microsoft.CodeAnalysis;
using NUnit.Framework;

namespace Bert.Tests.Generator;

/// <summary>Each diagnostic id on a spec that should raise it (and only it), with the offending values
/// in the message; an invalid spec emits no code.</summary>
public class DiagnosticTests
{
    private static string Spec(string attributes, string declaration = "public partial class M;") => $$"""
        using Bert.Dsl;

        namespace Demo;

        {{attributes}}
        {{declaration}}
        """;

    private const string Embeddings = "[Embeddings(VocabSize = 99, MaxPositions = 16, Hidden = 32)]";
    private const string Encoder = "[EncoderLayer(Heads = 4, Intermediate = 37)]";
    private const string Valid = "[BertModel]\n" + Embeddings + "\n" + Encoder + "\n[Repeat(2)]";

    private static IEnumerable<TestCaseData> Cases()
    {
        TestCaseData Case(string id, string source, string fragment, string name) =>
            new TestCaseData(id, source, fragment).SetName($"{id}_{name}");

        yield return Case("BERT001", Spec("[BertModel][Embeddings(Hidden = 30)]" + Encoder + "[Repeat(2)]"),
            "Embeddings.Hidden = 30 is not divisible by EncoderLayer.Heads = 4", "HiddenNotDivisibleByHeads");
        yield return Case("BERT002", Spec("[BertModel][Embeddings(Hidden = 0)]" + Encoder + "[Repeat(2)]"),
            "Embeddings.Hidden = 0 must be positive", "ZeroHidden");
        yield return Case("BERT002", Spec("[BertModel]" + Embeddings + Encoder + "[Repeat(0)]"),
            "Repeat.Count = 0 must be positive", "ZeroLayers");
        yield return Case("BERT002", Spec("[BertModel]" + Embeddings + "[EncoderLayer(Heads = 4, Intermediate = -5)][Repeat(2)]"),
            "EncoderLayer.Intermediate = -5 must be positive", "NegativeIntermediate");
        yield return Case("BERT002", Spec("[BertModel][Embeddings(VocabSize = 0, Hidden = 32)]" + Encoder + "[Repeat(2)]"),
            "Embeddings.VocabSize = 0 must be positive", "ZeroVocabulary");
        yield return Case("BERT002", Spec(Valid + "[Pooler][ClassificationHead(Labels = 0)]"),
            "ClassificationHead.Labels = 0 must be positive", "ZeroLabels");
        yield return Case("BERT003", Spec(Valid, "public class M { }"),
            "'Demo.M' must be declared partial", "NotPartial");
        yield return Case("BERT003", Spec("", "public class Outer\n{\n" + Valid + "\npublic partial class M;\n}"),
            "'Demo.Outer' must be declared partial", "ContainingTypeNotPartial");
        yield return Case("BERT004", Spec(Valid + "[MlmHead(TransformSize = 16)]"),
            "the MLM decoder [99, 16] is tied to the word embeddings [99, 32]", "TiedDecoderShape");
        yield return Case("BERT005", Spec("[BertModel]" + Encoder + "[Repeat(2)]"),
            "[Embeddings(Hidden = ...)] is required", "MissingEmbeddings");
        yield return Case("BERT005", Spec("[BertModel]" + Embeddings + "[Repeat(2)]"),
            "[EncoderLayer(Heads = ..., Intermediate = ...)] is required", "MissingEncoderLayer");
        yield return Case("BERT005", Spec("[BertModel]" + Embeddings + Encoder),
            "[Repeat(n)] is required", "MissingRepeat");
        yield return Case("BERT005", Spec(Valid + "[MlmHead][NspHead]"),
            "[NspHead] reads the pooled [CLS] output and requires [Pooler]", "NspWithoutPooler");
        yield return Case("BERT005", Spec(Valid + "[ClassificationHead(Labels = 3)]"),
            "[ClassificationHead] reads the pooled [CLS] output and requires [Pooler]", "ClassificationWithoutPooler");
        yield return Case("BERT006", Spec("[BertModel][Embeddings(Hidden = 32, Dropout = 0.2)][EncoderLayer(Heads = 4, Intermediate = 37, HiddenDropout = 0.1)][Repeat(2)]"),
            "Embeddings.Dropout (0.2) and EncoderLayer.HiddenDropout (0.1) differ; HuggingFace's BertConfig has one value for both", "EmbeddingAndHiddenDropoutDiffer");
        yield return Case("BERT006", Spec("[BertModel][Embeddings(Hidden = 32, LayerNormEps = 1e-6)][EncoderLayer(Heads = 4, Intermediate = 37, LayerNormEps = 1e-12)][Repeat(2)]"),
            "Embeddings.LayerNormEps (1E-06) and EncoderLayer.LayerNormEps (1E-12) differ", "LayerNormEpsDiffer");
        yield return Case("BERT006", Spec(Valid + "[Pooler][ClassificationHead][TokenClassificationHead]"),
            "[ClassificationHead] and [TokenClassificationHead] cannot be combined", "ClassificationAndTokenClassification");
        yield return Case("BERT006", Spec(Valid + "[TokenClassificationHead][SpanHead]"),
            "[TokenClassificationHead] and [SpanHead] cannot be combined", "TokenClassificationAndSpan");
        yield return Case("BERT007", Spec("[BertModel]" + Embeddings + "[EncoderLayer(Heads = 4, Intermediate = 37, PostLayerNorm = false)][Repeat(2)]"),
            "EncoderLayer.PostLayerNorm = false is not supported", "PreLayerNorm");
        yield return Case("BERT008", Spec("[BertModel][Embeddings(Hidden = 32, Dropout = 1.0)]" + Encoder + "[Repeat(2)]"),
            "Embeddings.Dropout = 1 is out of range", "DropoutOne");
        yield return Case("BERT008", Spec("[BertModel]" + Embeddings + "[EncoderLayer(Heads = 4, Intermediate = 37, LayerNormEps = 0)][Repeat(2)]"),
            "EncoderLayer.LayerNormEps = 0 is out of range", "ZeroEpsilon");
        yield return Case("BERT008", Spec("[BertModel]" + Embeddings + "[EncoderLayer(Heads = 4, Intermediate = 37, Activation = (HiddenActivation)7)][Repeat(2)]"),
            "EncoderLayer.Activation = 7 is out of range", "UnknownActivation");
    }

    [TestCaseSource(nameof(Cases))]
    public void InvalidSpec_ReportsItsDiagnostic_AndEmitsNothing(string id, string source, string fragment)
    {
        var (_, diagnostics, result) = GeneratorHarness.Run(source);
        Assert.That(diagnostics.Select(d => d.Id), Is.EqualTo(new[] { id }), string.Join("\n", diagnostics));
        var d = diagnostics[0];
        Assert.That(d.Severity, Is.EqualTo(DiagnosticSeverity.Error));
        Assert.That(d.GetMessage(), Does.Contain(fragment));
        Assert.That(d.GetMessage(), Does.Contain("'M'"), "the message names the model");
        var where = d.Location.GetLineSpan();
        Assert.That(where.Path, Is.EqualTo("Source0.cs"), "the diagnostic points into the spec's file");
        Assert.That(where.StartLinePosition.Line, Is.GreaterThanOrEqualTo(4), "at the spec's attributes or class, not the file's start");
        Assert.That(result.GeneratedSources, Is.Empty);
    }

    [Test]
    public void SeveralProblems_AreAllReported()
    {
        var source = Spec("[BertModel][Embeddings(Hidden = 30, MaxPositions = 0)][EncoderLayer(Heads = 4, Intermediate = 37, PostLayerNorm = false)][Repeat(2)][NspHead]",
            "public class M { }");
        var (_, diagnostics, _) = GeneratorHarness.Run(source);
        Assert.That(diagnostics.Select(d => d.Id).Order(), Is.EqualTo(new[] { "BERT001", "BERT002", "BERT003", "BERT005", "BERT007" }));
    }

    [Test]
    public void EveryDescriptor_IsListedInTheShippedReleaseFile()
    {
        var shipped = File.ReadAllText(GeneratorHarness.RepositoryFile("src", "Bert.Generators", "AnalyzerReleases.Shipped.md"));
        var descriptors = typeof(Bert.Generators.Diagnostics.DiagnosticDescriptors)
            .GetFields().Select(f => f.GetValue(null)).OfType<DiagnosticDescriptor>().ToList();
        Assert.That(descriptors, Has.Count.EqualTo(8));
        foreach (var d in descriptors)
            Assert.That(shipped, Does.Contain($"{d.Id} | {d.Category} | {d.DefaultSeverity}"), d.Id);
    }
}
