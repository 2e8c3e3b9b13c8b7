using System.Collections.Immutable;
using Bert.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Bert.Tests.Generator;

/// <summary>Runs the Bert generator over in-memory sources, the way the compiler does.</summary>
internal static class GeneratorHarness
{
    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest);

    /// <summary>The framework and the project's assemblies (Bert.Dsl, Bert.Runtime), from the test host.</summary>
    public static readonly ImmutableArray<MetadataReference> References = LoadReferences();

    private static ImmutableArray<MetadataReference> LoadReferences()
    {
        // Touch the project's assemblies so they are loaded and their paths known.
        var paths = new HashSet<string>(StringComparer.Ordinal)
        {
            typeof(Bert.Dsl.BertModelAttribute).Assembly.Location,
            typeof(Bert.Runtime.BertModelBase).Assembly.Location,
        };
        var tpa = (string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") ?? "";
        foreach (var p in tpa.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)) paths.Add(p);
        return [.. paths.Where(File.Exists).Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))];
    }

    public static CSharpCompilation Compilation(params string[] sources) =>
        CSharpCompilation.Create("GeneratorTest",
            sources.Select((s, i) => CSharpSyntaxTree.ParseText(s, ParseOptions, path: $"Source{i}.cs")),
            References,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary,
                nullableContextOptions: NullableContextOptions.Enable,
                generalDiagnosticOption: ReportDiagnostic.Error));

    public static GeneratorDriver Driver(bool trackSteps = false) =>
        CSharpGeneratorDriver.Create(
            [new BertModelGenerator().AsSourceGenerator()],
            parseOptions: ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: trackSteps));

    /// <summary>Runs the generator: the compilation with the generated sources, and the generator's diagnostics.</summary>
    public static (Compilation Output, ImmutableArray<Diagnostic> Diagnostics, GeneratorRunResult Result) Run(params string[] sources)
    {
        var input = Compilation(sources);
        var driver = Driver().RunGeneratorsAndUpdateCompilation(input, out var output, out var diagnostics);
        return (output, diagnostics, driver.GetRunResult().Results.Single());
    }

    /// <summary>Reads the source of a file in this folder of the repository.</summary>
    public static string RepositoryFile(params string[] relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Bert.sln")))
                return Path.Combine([dir.FullName, .. relative]);
        }
        throw new DirectoryNotFoundException($"no Bert.sln above {AppContext.BaseDirectory}: run the tests from the repository's build output");
    }
}
