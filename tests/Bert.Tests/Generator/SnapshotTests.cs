using NUnit.Framework;

namespace Bert.Tests.Generator;

/// <summary>
/// The generated source of the odd test model, compared exactly with the stored snapshot. After an
/// intended change to the generator, regenerate with BERT_UPDATE_SNAPSHOTS=1 and review the diff.
/// </summary>
public class SnapshotTests
{
    private static readonly string SnapshotPath =
        GeneratorHarness.RepositoryFile("tests", "Bert.Tests", "Generator", "Snapshots", "OddModel.g.cs.txt");

    [Test]
    public void OddModel_GeneratedSource_MatchesSnapshot()
    {
        var spec = File.ReadAllText(GeneratorHarness.RepositoryFile("tests", "Bert.Tests", "Generator", "OddModel.cs"));
        var (_, diagnostics, result) = GeneratorHarness.Run(spec);
        Assert.That(diagnostics, Is.Empty);
        var source = result.GeneratedSources.Single();
        Assert.That(source.HintName, Is.EqualTo("Bert.Tests.Generator.OddModel.g.cs"));
        var actual = source.SourceText.ToString();

        if (Environment.GetEnvironmentVariable("BERT_UPDATE_SNAPSHOTS") == "1")
        {
            File.WriteAllText(SnapshotPath, actual);
            Assert.Ignore($"snapshot regenerated at {SnapshotPath} (BERT_UPDATE_SNAPSHOTS=1): nothing was compared");
        }

        Assert.That(File.Exists(SnapshotPath), $"no snapshot at {SnapshotPath}; create it with BERT_UPDATE_SNAPSHOTS=1");
        var expected = File.ReadAllText(SnapshotPath).ReplaceLineEndings("\n");
        if (actual != expected) Assert.Fail(FirstDifference(expected, actual));
    }

    /// <summary>A diff hint: the first differing line with its neighbours, and how to regenerate.</summary>
    private static string FirstDifference(string expected, string actual)
    {
        var e = expected.Split('\n');
        var a = actual.Split('\n');
        int line = 0;
        while (line < e.Length && line < a.Length && e[line] == a[line]) line++;
        var hint = new System.Text.StringBuilder();
        hint.AppendLine($"generated source differs from {SnapshotPath} at line {line + 1} (expected {e.Length} lines, got {a.Length}):");
        for (int i = Math.Max(0, line - 2); i < Math.Min(Math.Max(e.Length, a.Length), line + 3); i++)
        {
            if (i < e.Length) hint.AppendLine($"  - {i + 1,4}: {e[i]}");
            if (i < a.Length) hint.AppendLine($"  + {i + 1,4}: {a[i]}");
        }
        hint.AppendLine("If the change is intended, rerun with BERT_UPDATE_SNAPSHOTS=1 and review `git diff` of the snapshot.");
        return hint.ToString();
    }
}
