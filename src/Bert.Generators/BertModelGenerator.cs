using Bert.Generators.Diagnostics;
using Bert.Generators.Emit;
using Bert.Generators.Helpers;
using Bert.Generators.Model;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;

namespace Bert.Generators;

/// <summary>
/// Generates a model class for every partial class carrying [Bert.Dsl.BertModel]: its parameter
/// table, activation plan and straight-line Forward/Backward over Bert.Runtime.IBackend.
///
/// Pipeline: <see cref="ParseStep"/> (symbols → equatable spec + diagnostics, the only step that
/// sees symbols) → <see cref="DiagnosticsStep"/> (reported) and <see cref="SpecStep"/> (valid specs)
/// → <see cref="PlanStep"/> (parameter table) → <see cref="SourceStep"/> (the emitted text).
/// Every step's output is a value, so an edit that does not touch a spec leaves them all cached.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class BertModelGenerator : IIncrementalGenerator
{
    public const string BertModelAttribute = "Bert.Dsl.BertModelAttribute";

    public const string ParseStep = "Bert.Parse";
    public const string DiagnosticsStep = "Bert.Diagnostics";
    public const string SpecStep = "Bert.Spec";
    public const string PlanStep = "Bert.Plan";
    public const string SourceStep = "Bert.Source";

    /// <summary>Every tracked step, for tests of incrementality.</summary>
    public static readonly string[] TrackedSteps = [ParseStep, DiagnosticsStep, SpecStep, PlanStep, SourceStep];

    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var parsed = context.SyntaxProvider
            .ForAttributeWithMetadataName(BertModelAttribute,
                static (node, _) => node is ClassDeclarationSyntax,
                ModelSpecParser.Parse)
            .WithTrackingName(ParseStep);

        var diagnostics = parsed
            .Where(static r => !r.Diagnostics.IsEmpty)
            .Select(static (r, _) => r.Diagnostics)
            .WithTrackingName(DiagnosticsStep);
        context.RegisterSourceOutput(diagnostics, static (spc, list) =>
        {
            foreach (var d in list) spc.ReportDiagnostic(d.ToDiagnostic());
        });

        var sources = parsed
            .Where(static r => r.Spec is not null)
            .Select(static (r, _) => r.Spec!)
            .WithTrackingName(SpecStep)
            .Select(static (spec, _) => ParameterLayout.Plan(spec))
            .WithTrackingName(PlanStep)
            .Select(static (plan, _) => new GeneratedSource(plan.Spec.Type.HintName, ModelEmitter.Emit(plan)))
            .WithTrackingName(SourceStep);
        context.RegisterSourceOutput(sources, static (spc, source) =>
            spc.AddSource(source.HintName, SourceText.From(source.Text, System.Text.Encoding.UTF8)));
    }
}

/// <summary>One emitted file.</summary>
internal sealed record GeneratedSource(string HintName, string Text);
