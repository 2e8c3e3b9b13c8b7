using System.Text.Json;
using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

public class TokenizerTests
{
    private static readonly Vocabulary Vocab = Vocabulary.FromTokens(
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff", "##able", "##believ",
        "jump", "##ing", ",", "!", ".", "'", "中", "国", "人", "a", "##b", "x", "##x", "οδος", "οδοσ", "cafe",
        "café", "Hello", "don", "t", "😀", "##😀", "👍", "ab", "##c", "unbeliev",
    ]);

    // Expected tokens derived by hand from the reference algorithm (tokenization.py).
    [TestCase("Héllo", "hello", TestName = "accents are stripped when uncased")]
    [TestCase("HÉLLO, World!", "hello , world !", TestName = "punctuation splits, lowercase")]
    [TestCase("unaffable", "un ##aff ##able", TestName = "greedy longest match")]
    [TestCase("unbelievable", "unbeliev ##able", TestName = "longest first piece wins")]
    [TestCase("jumping", "jump ##ing", TestName = "suffix piece")]
    [TestCase("中国人", "中 国 人", TestName = "CJK ideographs are words")]
    [TestCase("hello中world", "hello 中 world", TestName = "mixed scripts")]
    [TestCase("a\u0000\u0001b", "ab", TestName = "NUL and controls are removed")]
    [TestCase("a\u0000b\tc\u00a0hello\u200bworld", "ab [UNK] [UNK]", TestName = "whitespace and format characters")]
    [TestCase("hello\ufffdworld", "[UNK]", TestName = "U+FFFD is removed")]
    [TestCase("hello😀 😀😀 👍", "hello ##😀 😀 ##😀 👍", TestName = "emoji are ordinary characters")]
    [TestCase("ΟΔΟΣ.", "οδος .", TestName = "final sigma as Python lower()")]
    [TestCase("don't", "don ' t", TestName = "apostrophe is punctuation")]
    [TestCase("", "", TestName = "empty input")]
    [TestCase(" \t\r\n\u3000 ", "", TestName = "whitespace-only input")]
    [TestCase("xyz", "[UNK]", TestName = "a piece that matches nothing makes the word [UNK]")]
    public void UncasedTable(string text, string expected)
    {
        var tokens = new BertTokenizer(Vocab, lowerCase: true).Tokenize(text);
        Assert.That(string.Join(" ", tokens), Is.EqualTo(expected));
    }

    [TestCase("Héllo", "[UNK]")]
    [TestCase("Hello café", "Hello café")]
    [TestCase("HELLO", "[UNK]")]
    public void CasedTable(string text, string expected)
    {
        var tokens = new BertTokenizer(Vocab, lowerCase: false).Tokenize(text);
        Assert.That(string.Join(" ", tokens), Is.EqualTo(expected));
    }

    [Test]
    public void OverLongWordsBecomeUnk()
    {
        var tok = new BertTokenizer(Vocab);
        var at200 = tok.Tokenize(new string('x', 200));
        Assert.That(at200, Has.Count.EqualTo(200));
        Assert.That(at200[0], Is.EqualTo("x"));
        Assert.That(at200.Skip(1), Is.All.EqualTo("##x"));
        Assert.That(tok.Tokenize(new string('x', 201)), Is.EqualTo(new[] { "[UNK]" }));
        // 150 emoji are 300 UTF-16 units but 150 code points: the limit counts code points, as Python does.
        var emoji = string.Concat(Enumerable.Repeat("😀", 150));
        Assert.That(tok.Tokenize(emoji), Has.Count.EqualTo(150));
    }

    [TestCase("Hello, World!", "hello|,|world|!")]
    [TestCase("naïve Café", "naive|cafe")]
    [TestCase("中国人", "中|国|人")]
    [TestCase("don't stop", "don|'|t|stop")]
    [TestCase("a\u0000b\tc\u00a0d", "ab|c|d")]
    [TestCase("line\u2028sep", "line|sep")]
    [TestCase("İstanbul", "istanbul")]
    [TestCase("x\u0301y", "xy")]
    [TestCase("ﬁ", "ﬁ")]
    [TestCase("¿Qué?", "¿|que|?")]
    public void BasicTokenizerWords(string text, string expected)
    {
        Assert.That(string.Join("|", new BasicTokenizer(lowerCase: true).Tokenize(text)), Is.EqualTo(expected));
    }

    [Test]
    public void MatchesReferenceGoldenFile()
    {
        // TestData/tokenizer_golden.jsonl: reference_tokenizer.py (a port of tokenization.py) on 300+
        // lines: hand-written edge cases and Brown corpus sentences, cased and uncased.
        var vocab = Vocabulary.Load(TestPaths.TestData("golden_vocab.txt"));
        var uncased = new BertTokenizer(vocab, lowerCase: true);
        var cased = new BertTokenizer(vocab, lowerCase: false);
        int lines = 0;
        var failures = new List<string>();
        foreach (var line in File.ReadLines(TestPaths.TestData("tokenizer_golden.jsonl")))
        {
            using var doc = JsonDocument.Parse(line);
            string text = doc.RootElement.GetProperty("text").GetString()!;
            foreach (var (name, tok) in new[] { ("uncased", uncased), ("cased", cased) })
            {
                var expected = doc.RootElement.GetProperty(name).EnumerateArray().Select(e => e.GetString()!).ToList();
                var actual = tok.Tokenize(text);
                if (!actual.SequenceEqual(expected))
                    failures.Add($"{name} {JsonSerializer.Serialize(text)}:\n  expected {string.Join(" ", expected)}\n  actual   {string.Join(" ", actual)}");
            }
            lines++;
        }
        Assert.That(lines, Is.GreaterThan(300));
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
    }

    [Test]
    public void EncodeAppendsIdsWithoutClearing()
    {
        var tok = new BertTokenizer(Vocab);
        var ids = new List<int> { 42 };
        tok.Encode("hello world", ids);
        Assert.That(ids, Is.EqualTo(new[] { 42, Vocab.GetId("hello"), Vocab.GetId("world") }));
    }
}
