using System.Collections;
using System.Reflection;
using Bert.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using NUnit.Framework;

namespace Bert.Tests.Generator;

/// <summary>The pipeline caches: an edit that touches no spec leaves every tracked step Unchanged or
/// Cached, and no step output holds a symbol, syntax or compilation (which would defeat caching).</summary>
public class IncrementalityTests
{
    private const string ValidSpec = """
        using Bert.Dsl;
        namespace Demo;
        [BertModel]
        [Embeddings(VocabSize = 99, MaxPositions = 16, Hidden = 32)]
        [EncoderLayer(Heads = 4, Intermediate = 37)]
        [Repeat(2)]
        [Pooler]
        [MlmHead]
        [NspHead]
        public partial class Good;
        """;

    // Invalid (BERT001), so the diagnostics step has an output too.
    private const string InvalidSpec = """
        using Bert.Dsl;
        namespace Demo;
        [BertModel]
        [Embeddings(Hidden = 30)]
        [EncoderLayer(Heads = 4, Intermediate = 37)]
        [Repeat(2)]
        public partial class Bad;
        """;

    private const string Unrelated = "namespace Other; public class Unrelated { public int X; }";

    private static (GeneratorDriver Driver, CSharpCompilation Compilation) FirstRun()
    {
        var compilation = GeneratorHarness.Compilation(ValidSpec, InvalidSpec, Unrelated);
        var driver = GeneratorHarness.Driver(trackSteps: true).RunGenerators(compilation);
        return (driver, compilation);
    }

    private static CSharpCompilation Replace(CSharpCompilation compilation, int tree, string text) =>
        compilation.ReplaceSyntaxTree(compilation.SyntaxTrees[tree],
            CSharpSyntaxTree.ParseText(text, GeneratorHarness.ParseOptions, path: compilation.SyntaxTrees[tree].FilePath));

    [Test]
    public void UnrelatedEdit_LeavesEveryStepCached()
    {
        var (driver, compilation) = FirstRun();
        var edited = Replace(compilation, 2, "namespace Other; public class Unrelated { public int X; public string Y = \"edit\"; }");
        var result = driver.RunGenerators(edited).GetRunResult().Results.Single();

        foreach (var step in BertModelGenerator.TrackedSteps)
        {
            Assert.That(result.TrackedSteps.ContainsKey(step), $"step {step} was not tracked");
            var outputs = result.TrackedSteps[step].SelectMany(s => s.Outputs).ToList();
            Assert.That(outputs, Is.Not.Empty, $"step {step} produced nothing to compare");
            Assert.That(outputs.Select(o => o.Reason), Is.All.AnyOf(IncrementalStepRunReason.Cached, IncrementalStepRunReason.Unchanged), step);
        }
        var sourceOutputs = result.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).ToList();
        Assert.That(sourceOutputs, Is.Not.Empty);
        Assert.That(sourceOutputs.Select(o => o.Reason), Is.All.AnyOf(IncrementalStepRunReason.Cached, IncrementalStepRunReason.Unchanged));
    }

    [Test]
    public void EditingASpec_ModifiesItsSteps()
    {
        var (driver, compilation) = FirstRun();
        var edited = Replace(compilation, 0, ValidSpec.Replace("[Repeat(2)]", "[Repeat(3)]"));
        var result = driver.RunGenerators(edited).GetRunResult().Results.Single();
        foreach (var step in new[] { BertModelGenerator.ParseStep, BertModelGenerator.PlanStep, BertModelGenerator.SourceStep })
            Assert.That(result.TrackedSteps[step].SelectMany(s => s.Outputs).Select(o => o.Reason),
                Has.Some.EqualTo(IncrementalStepRunReason.Modified), step);
        Assert.That(result.GeneratedSources.Single().SourceText.ToString(), Does.Contain("Layers = 3,"));
    }

    [Test]
    public void StepOutputs_HoldNoSymbolsSyntaxOrCompilations()
    {
        var (driver, _) = FirstRun();
        var result = driver.GetRunResult().Results.Single();
        foreach (var step in BertModelGenerator.TrackedSteps)
            foreach (var output in result.TrackedSteps[step].SelectMany(s => s.Outputs))
                AssertPlainValue(output.Value, step, 0);
    }

    private static readonly Type[] Forbidden =
        [typeof(ISymbol), typeof(SyntaxNode), typeof(SyntaxTree), typeof(Compilation), typeof(SemanticModel), typeof(Location), typeof(AttributeData)];

    private static void AssertPlainValue(object? value, string path, int depth)
    {
        if (value is null || value is string || value.GetType().IsPrimitive || value.GetType().IsEnum || depth > 12) return;
        var type = value.GetType();
        Assert.That(Forbidden.Any(f => f.IsAssignableFrom(type)), Is.False, $"{path} is a {type}");
        if (value is IEnumerable items)
        {
            int i = 0;
            foreach (var item in items) AssertPlainValue(item, $"{path}[{i++}]", depth + 1);
            return;
        }
        if (type.Namespace?.StartsWith("Bert.Generators", StringComparison.Ordinal) != true) return;
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0))
            AssertPlainValue(p.GetValue(value), $"{path}.{p.Name}", depth + 1);
    }
}
