using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using Bert.Tests.Data;
using Bert.Tests.Generator;
using NUnit.Framework;

namespace Bert.Tests.Packaging;

/// <summary>
/// The package route, as a user takes it: the src/ projects packed into a local folder feed (Bert.Runtime
/// carrying the generator under analyzers/dotnet/cs, real metadata), samples/Acme.Sample built against that
/// feed (not the projects) and run (it trains and answers fill-mask), the same sample with a spec error
/// failing its build with the generator's diagnostic id, and the bert tool installed from the feed.
/// </summary>
[TestFixture]
[Category("Packages")]
[NonParallelizable]
public class PackageTests
{
    private TempDirectory _dir = null!;
    private string _feed = null!;
    private static string Root => Path.GetDirectoryName(GeneratorHarness.RepositoryFile("Bert.sln"))!;
    private static string Version => XDocument.Load(Path.Combine(Root, "version.props")).Descendants("BertVersion").Single().Value;

    [OneTimeSetUp]
    public void Pack()
    {
        _dir = TestPaths.NewTempDirectory();
        _feed = _dir.File("feed");
        foreach (var project in new[] { "Bert.Dsl", "Bert.Runtime", "Bert.Native", "Bert.Cli" })
        {
            var (code, output) = Dotnet(Root, "pack", $"src/{project}", "-c", "Release", "--no-build", "-o", _feed, "--nologo");
            Assert.That(code, Is.Zero, $"dotnet pack {project}:\n{output}");
        }
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    private static (int Code, string Output) Dotnet(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', args)} did not finish in 10 minutes");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Copies samples/ (and version.props beside it) to a temp directory, optionally editing Program.cs.</summary>
    private string CopySample(string name, Func<string, string>? edit = null)
    {
        string root = _dir.File(name);
        Directory.CreateDirectory(Path.Combine(root, "samples", "Acme.Sample"));
        File.Copy(Path.Combine(Root, "version.props"), Path.Combine(root, "version.props"));
        File.Copy(Path.Combine(Root, "samples", "Directory.Build.props"), Path.Combine(root, "samples", "Directory.Build.props"));
        foreach (var f in new[] { "Acme.Sample.csproj", "Program.cs" })
        {
            string text = File.ReadAllText(Path.Combine(Root, "samples", "Acme.Sample", f));
            if (f == "Program.cs" && edit is not null) text = edit(text);
            File.WriteAllText(Path.Combine(root, "samples", "Acme.Sample", f), text);
        }
        return Path.Combine(root, "samples");
    }

    private (int Code, string Output) BuildSample(string samples) =>
        Dotnet(samples, "build", "Acme.Sample", "-c", "Release", "--source", _feed, "--source", "https://api.nuget.org/v3/index.json",
            "--packages", _dir.File("packages"), "--nologo");

    [Test]
    public void PackagesCarryMetadataAndTheGeneratorUnderAnalyzers()
    {
        string v = Version;
        foreach (var id in new[] { "Bert.Dsl", "Bert.Runtime", "Bert.Native", "bert" })
        {
            string package = Path.Combine(_feed, $"{id}.{v}.nupkg");
            Assert.That(File.Exists(package), $"{package} was not packed");
            Assert.That(File.Exists(Path.Combine(_feed, $"{id}.{v}.snupkg")), $"{id}: no symbol package");
            using var zip = ZipFile.OpenRead(package);
            var nuspec = XDocument.Load(zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open());
            string Meta(string name) => nuspec.Descendants().FirstOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
            Assert.That(Meta("version"), Is.EqualTo(v), id);
            Assert.That(Meta("license"), Is.EqualTo("MIT"), id);
            Assert.That(Meta("description"), Does.Not.Contain("Package Description").And.Length.GreaterThan(40), id);
            Assert.That(Meta("readme"), Is.EqualTo("README.md"), id);
            Assert.That(zip.Entries.Any(e => e.FullName == "README.md"), id);
        }
        using (var runtime = ZipFile.OpenRead(Path.Combine(_feed, $"Bert.Runtime.{v}.nupkg")))
            Assert.That(runtime.Entries.Select(e => e.FullName), Does.Contain("analyzers/dotnet/cs/Bert.Generators.dll").And.Contain("lib/net10.0/Bert.Runtime.dll"));
        using (var tool = ZipFile.OpenRead(Path.Combine(_feed, $"bert.{v}.nupkg")))
            Assert.That(tool.Entries.Any(e => e.FullName.EndsWith("DotnetToolSettings.xml", StringComparison.Ordinal)), "bert is a dotnet tool");
        Assert.That(Directory.GetFiles(_feed, "Bert.Generators*"), Is.Empty, "the generator is not a package of its own");
        Assert.That(Directory.GetFiles(_feed, "Bert.Tests*").Concat(Directory.GetFiles(_feed, "Bert.Bench*")), Is.Empty);
    }

    [Test]
    public void SampleBuildsFromTheFeedTrainsAndFillsMasks()
    {
        string samples = CopySample("ok");
        var (code, output) = BuildSample(samples);
        Assert.That(code, Is.Zero, output);
        var run = Dotnet(samples, "Acme.Sample/bin/Release/net10.0/Acme.Sample.dll", "40");
        Assert.That(run.Code, Is.Zero, run.Output);
        Assert.That(run.Output, Does.Contain("trained 40 steps: loss").And.Contain("fill-mask:"));
    }

    [Test]
    public void ASpecErrorInTheSampleFailsItsBuildWithTheDiagnosticId()
    {
        string samples = CopySample("broken", text => text.Replace("Hidden = 64)]", "Hidden = 66)]", StringComparison.Ordinal));
        var (code, output) = BuildSample(samples);
        Assert.That(code, Is.Not.Zero);
        Assert.That(output, Does.Contain("BERT001").And.Contain("Embeddings.Hidden = 66 is not divisible by EncoderLayer.Heads = 4"));
    }

    [Test]
    public void TheBertToolInstallsFromTheFeed()
    {
        string tools = _dir.File("tools");
        var (code, output) = Dotnet(Root, "tool", "install", "bert", "--tool-path", tools, "--add-source", _feed, "--version", Version);
        Assert.That(code, Is.Zero, output);
        var start = new ProcessStartInfo(Path.Combine(tools, "bert")) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("--help");
        using var p = Process.Start(start)!;
        string help = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        Assert.That(p.WaitForExit(TimeSpan.FromMinutes(2)), Is.True);
        Assert.That(p.ExitCode, Is.Zero, help);
        Assert.That(help, Does.Contain("pretrain").And.Contain("finetune").And.Contain("predict"));
    }
}
