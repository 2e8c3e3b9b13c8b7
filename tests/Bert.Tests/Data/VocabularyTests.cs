using Bert.Runtime.IO;
using System.Text;
using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

public class VocabularyTests
{
    private const string Specials = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";

    // Reference values of XXH64 (seed 0) from the xxHash distribution and python-xxhash's documentation.
    [TestCase("", 0xEF46DB3751D8E999UL)]
    [TestCase("a", 0xD24EC4F1A98C6E5BUL)]
    [TestCase("abc", 0x44BC2CF5AD770999UL)]
    [TestCase("Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1UL)]
    public void XxHash64KnownAnswers(string text, ulong expected)
    {
        var bytes = Encoding.ASCII.GetBytes(text);
        Assert.That(XxHash64.Hash(bytes), Is.EqualTo(expected));
        // Incremental, one byte at a time, gives the same.
        var h = new XxHash64();
        foreach (byte b in bytes) h.Append([b]);
        Assert.That(h.Digest(), Is.EqualTo(expected));
    }

    [Test]
    public void XxHash64IncrementalMatchesOneShotOnLongInput()
    {
        var data = new byte[10_007];
        new Random(5).NextBytes(data);
        var h = new XxHash64();
        for (int i = 0; i < data.Length;)
        {
            int n = Math.Min(data.Length - i, 1 + i % 77);
            h.Append(data.AsSpan(i, n));
            i += n;
        }
        Assert.That(h.Digest(), Is.EqualTo(XxHash64.Hash(data)));
    }

    [Test]
    public void LoadsIdsByLineAndFindsSpecialTokens()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("vocab.txt");
        File.WriteAllText(path, "[PAD]\r\nhello\n  [UNK] \n[CLS]\n[SEP]\n[MASK]\n##lo\n\n\n");
        var v = Vocabulary.Load(path);
        Assert.Multiple(() =>
        {
            Assert.That(v.Count, Is.EqualTo(7));
            Assert.That(v.GetId("hello"), Is.EqualTo(1));
            Assert.That((v.PadId, v.UnkId, v.ClsId, v.SepId, v.MaskId), Is.EqualTo((0, 2, 3, 4, 5)));
            Assert.That(v.TryGetContinuationId("lo", out int id) && id == 6);
        });
    }

    [Test]
    public void HashIsTheCanonicalFileHashAndSurvivesSaveLoad()
    {
        using var dir = TestPaths.NewTempDirectory();
        var v = Vocabulary.FromTokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "é", "##x"]);
        string path = dir.File("v.txt");
        v.Save(path);
        Assert.That(XxHash64.Hash(File.ReadAllBytes(path)), Is.EqualTo(v.Hash));
        Assert.That(Vocabulary.Load(path).Hash, Is.EqualTo(v.Hash));
        var other = Vocabulary.FromTokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "é", "##y"]);
        Assert.That(other.Hash, Is.Not.EqualTo(v.Hash));
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1), "no temporary file left");
    }

    [Test]
    public void MissingSpecialTokenIsRejectedByName()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("vocab.txt");
        File.WriteAllText(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
        var e = Assert.Throws<VocabularyFormatException>(() => Vocabulary.Load(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("[MASK]"));
    }

    [Test]
    public void DuplicateTokenIsRejectedWithBothLines()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("vocab.txt");
        File.WriteAllText(path, Specials + "the\nof\nthe\n");
        var e = Assert.Throws<VocabularyFormatException>(() => Vocabulary.Load(path))!;
        Assert.That(e.Field, Is.EqualTo("line 8"));
        Assert.That(e.Message, Does.Contain("\"the\"").And.Contain("line 6"));
    }

    [Test]
    public void EmptyLineInsideIsRejected()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("vocab.txt");
        File.WriteAllText(path, Specials + "a\n\nb\n");
        var e = Assert.Throws<VocabularyFormatException>(() => Vocabulary.Load(path))!;
        Assert.That(e.Field, Is.EqualTo("line 7"));
    }

    [Test]
    public void InvalidUtf8IsReportedWithByteOffset()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("vocab.txt");
        var bytes = Encoding.UTF8.GetBytes(Specials + "ok\n").Concat(new byte[] { 0x61, 0xC3, 0x28, 0x0A }).ToArray();
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<VocabularyFormatException>(() => Vocabulary.Load(path))!;
        int offset = Specials.Length + 3 + 1;
        Assert.That(e.Field, Does.StartWith($"byte {offset} "));
        Assert.That(e.Value, Is.EqualTo("0xC3"));
    }

    [Test]
    public void MissingFileIsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => Vocabulary.Load("/nonexistent/vocab.txt"));
    }
}
