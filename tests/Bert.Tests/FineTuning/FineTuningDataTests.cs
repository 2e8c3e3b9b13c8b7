using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.FineTuning;

/// <summary>The fine-tuning file formats: what they accept, and errors that name file, line, field and value.</summary>
public class FineTuningDataTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDirectory();

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private string Write(string name, string text)
    {
        string path = _dir.File(name);
        File.WriteAllText(path, text);
        return path;
    }

    private static FineTuningFormatException Fails(Action read)
    {
        var e = Assert.Throws<FineTuningFormatException>(() => read())!;
        Assert.That(e.Message, Does.StartWith(e.FilePath + ": "));
        return e;
    }

    [Test]
    public void TsvReadsHeaderNamedColumnsInAnyOrderWithPairs()
    {
        string path = Write("a.tsv", "id\tsentence1\tlabel\tsentence2\n1\tthe film\tpos\tit was good\n\n2\tbad\tneg\tawful\n");
        var x = FineTuningData.ReadClassification(path);
        Assert.That(x.Select(e => (e.Text, e.TextPair, e.Label)), Is.EqualTo(new[] { ("the film", "it was good", "pos"), ("bad", "awful", "neg") }));
        Assert.That(x[1].Origin, Is.EqualTo(path + ":4"));
    }

    [Test]
    public void TsvErrorsNameLineFieldAndValue()
    {
        var e = Fails(() => FineTuningData.ReadClassification(Write("a.tsv", "text\tclass\nhello\t1\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 1 (header)", "'text', 'class'")));
        Assert.That(e.Message, Does.Contain("no 'label' column"));

        e = Fails(() => FineTuningData.ReadClassification(Write("b.tsv", "label\tnot_text\nx\ty\n")));
        Assert.That(e.Message, Does.Contain("no text column"));

        e = Fails(() => FineTuningData.ReadClassification(Write("c.tsv", "label\ttext\npos\tgood\nneg\tbad\textra\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 3", "3 fields")));

        e = Fails(() => FineTuningData.ReadClassification(Write("d.tsv", "label\ttext\n \tgood\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 2, field 'label'", "\"\"")));

        e = Fails(() => FineTuningData.ReadClassification(Write("e.tsv", "label\ttext\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("examples", "0")));

        e = Fails(() => FineTuningData.ReadClassification(Write("f.csv", "label,text\n")));
        Assert.That(e.Field, Is.EqualTo("file name"));
    }

    [Test]
    public void JsonlAcceptsStringAndIntegerLabelsAndReportsBadLines()
    {
        string path = Write("a.jsonl", "{\"text\": \"good film\", \"label\": 1}\n{\"sentence\": \"bad\", \"text_b\": \"awful\", \"label\": \"neg\"}\n");
        var x = FineTuningData.ReadClassification(path);
        Assert.That(x.Select(e => (e.Text, e.TextPair, e.Label)), Is.EqualTo(new[] { ("good film", (string?)null, "1"), ("bad", "awful", "neg") }));

        var e = Fails(() => FineTuningData.ReadClassification(Write("b.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", label: 2}\n")));
        Assert.That(e.Field, Is.EqualTo("line 2"));
        Assert.That(e.Message, Does.Contain("not valid JSON"));

        e = Fails(() => FineTuningData.ReadClassification(Write("c.jsonl", "{\"label\": 1}\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 1, field 'text'", "(absent)")));

        e = Fails(() => FineTuningData.ReadClassification(Write("d.jsonl", "{\"text\": \"a\", \"label\": [1]}\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 1, field 'label'", "[1]")));

        e = Fails(() => FineTuningData.ReadClassification(Write("e.jsonl", "{\"text\": 5, \"label\": 1}\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 1, field 'text'", "5")));

        e = Fails(() => FineTuningData.ReadClassification(Write("f.jsonl", "[1, 2]\n")));
        Assert.That(e.Message, Does.Contain("must be a JSON object"));
    }

    [Test]
    public void InvalidUtf8IsReportedWithItsByteOffset()
    {
        string path = _dir.File("bad.tsv");
        File.WriteAllBytes(path, [.. "label\ttext\nx\t"u8, 0xC3, 0x28, (byte)'\n']);
        var e = Fails(() => FineTuningData.ReadClassification(path));
        Assert.That((e.Field, e.Value), Is.EqualTo(("byte 13 (line 2)", "0xC3")));
    }

    [Test]
    public void ConllSplitsSentencesOnBlankLinesAndTakesTheLastColumnAsTag()
    {
        string path = Write("a.conll", "-DOCSTART- -X- O O\n\nJohn NNP B-NP B-PER\nlives\tO\n\n\nParis\tB-LOC\n.\tO\n");
        var s = FineTuningData.ReadTokens(path);
        Assert.That(s.Select(x => string.Join(" ", x.Words)), Is.EqualTo(new[] { "John lives", "Paris ." }));
        Assert.That(s.Select(x => string.Join(" ", x.Tags)), Is.EqualTo(new[] { "B-PER O", "B-LOC O" }));
        Assert.That(s[1].Origin, Is.EqualTo(path + ":7"));

        var e = Fails(() => FineTuningData.ReadTokens(Write("b.conll", "John\tB-PER\nlives\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 2", "\"lives\"")));
        e = Fails(() => FineTuningData.ReadTokens(Write("c.conll", "John\t\n")));
        Assert.That(e.Field, Does.StartWith("line 1"));
        e = Fails(() => FineTuningData.ReadTokens(Write("d.conll", "\n\n")));
        Assert.That(e.Field, Is.EqualTo("sentences"));
    }

    [Test]
    public void SpansAreCheckedAgainstTheirContext()
    {
        string ok = Write("a.jsonl", "{\"id\": \"q1\", \"context\": \"John lives in Paris.\", \"question\": \"Where?\", \"answer_start\": 14, \"answer_text\": \"Paris\"}\n");
        var x = FineTuningData.ReadSpans(ok).Single();
        Assert.That((x.Id, x.AnswerStart, x.AnswerText), Is.EqualTo(("q1", 14, "Paris")));

        var e = Fails(() => FineTuningData.ReadSpans(Write("b.jsonl",
            "{\"context\": \"John lives in Paris.\", \"question\": \"Where?\", \"answer_start\": 13, \"answer_text\": \"Paris\"}\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 1, field 'answer_text'", "\"Paris\"")));
        Assert.That(e.Message, Does.Contain("reads \" Pari\""));

        e = Fails(() => FineTuningData.ReadSpans(Write("c.jsonl",
            "{\"context\": \"short\", \"question\": \"q\", \"answer_start\": 3, \"answer_text\": \"longer\"}\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 1, field 'answer_start'", "3")));

        e = Fails(() => FineTuningData.ReadSpans(Write("d.jsonl",
            "{\"context\": \"short\", \"question\": \"q\", \"answer_start\": \"0\", \"answer_text\": \"short\"}\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 1, field 'answer_start'", "\"0\"")));

        e = Fails(() => FineTuningData.ReadSpans(Write("e.jsonl", "\n{\"context\": \"short\", \"answer_start\": 0, \"answer_text\": \"short\"}\n")));
        Assert.That((e.Field, e.Value), Is.EqualTo(("line 2, field 'question'", "(absent)")));
    }

    [Test]
    public void AnUnseenLabelInValidationDataNamesItsOrigin()
    {
        var tokenizer = new BertTokenizer(TinyCheckpoints.Vocabulary);
        var index = LabelSets.Index(["neg", "pos"]);
        var e = Assert.Throws<FineTuningFormatException>(() =>
            Featurizer.Classification([new ClassificationExample("good", null, "neutral", "v.tsv:7")], index, tokenizer, 16))!;
        Assert.That((e.FilePath, e.Field, e.Value), Is.EqualTo(("v.tsv:7", "label", "\"neutral\"")));
        Assert.That(e.Message, Does.Contain("neg, pos"));
    }

    [Test]
    public void LabelsAreOrderedNumericallyOrOrdinallyAndHoldoutIsEvenlySpread()
    {
        Assert.That(LabelSets.FromLabels(["10", "2", "-1", "2"]), Is.EqualTo(new[] { "-1", "2", "10" }));
        Assert.That(LabelSets.FromLabels(["spam", "ham", "Ham"]), Is.EqualTo(new[] { "Ham", "ham", "spam" }));
        var (train, validation) = LabelSets.Holdout(Enumerable.Range(0, 30).ToList(), 0.1);
        Assert.That(validation, Is.EqualTo(new[] { 9, 19, 29 }));
        Assert.That(train, Has.Count.EqualTo(27));
    }
}
