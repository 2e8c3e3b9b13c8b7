using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;
using NUnit.Framework;

namespace Bert.Tests.FineTuning;

/// <summary>BERT's input conventions for the three tasks, the metrics, and the e-mail text extraction.</summary>
public class FeaturizerTests
{
    private static readonly BertTokenizer Tokenizer = new(TinyCheckpoints.Vocabulary);
    private static Vocabulary V => TinyCheckpoints.Vocabulary;

    private static int[] Ids(string words) => words.Split(' ').Select(V.GetId).ToArray();

    private static int[] Row(Features f, int r) => f.InputIds.AsSpan(r * f.Stride, f.Lengths[r]).ToArray();

    [Test]
    public void ClassificationPairsAreClsASepBSepWithSegmentsAndLongestFirstTruncation()
    {
        var index = LabelSets.Index(["neg", "pos"]);
        var f = Featurizer.Classification(
        [
            new("the film was good", "it is great", "pos", "t:1"),
            new("the man went to the store", "a film", "neg", "t:2"),
        ], index, Tokenizer, maxSeq: 9);
        // 4 + 3 > 9 − 3: the longer side (A) loses its last tokens first.
        Assert.That(Row(f, 0), Is.EqualTo(Ids("[CLS] the film was [SEP] it is great [SEP]")));
        Assert.That(f.TokenTypes.AsSpan(0, 9).ToArray(), Is.EqualTo(new[] { 0, 0, 0, 0, 0, 1, 1, 1, 1 }));
        Assert.That(Row(f, 1), Is.EqualTo(Ids("[CLS] the man went to [SEP] a film [SEP]")));
        Assert.That((f.Labels![0], f.Labels[1], f.Truncated), Is.EqualTo((1, 0, 2)));
    }

    [Test]
    public void HeadPlusTailTruncationAndWindowsCoverBothEndsOfALongText()
    {
        var index = LabelSets.Index(["neg", "pos"]);
        const string text = "the man went to the store and the film was very good it is great";  // 15 tokens
        var f = Featurizer.Classification([new(text, null, "pos", "t:1")], index, Tokenizer, maxSeq: 8, tailTokens: 2);
        Assert.That(Row(f, 0), Is.EqualTo(Ids("[CLS] the man went to is great [SEP]")));

        // Windows of 6 tokens: 15 tokens need 3; with at most 2, the second is the text's end.
        var w = Featurizer.Classification([new("a film", null, "neg", "t:1"), new(text, null, "pos", "t:2")], index, Tokenizer, maxSeq: 8, maxWindows: 2);
        Assert.That((w.Count, w.Examples, w.Truncated), Is.EqualTo((3, 2, 1)));
        Assert.That(w.Example, Is.EqualTo(new[] { 0, 1, 1 }));
        Assert.That(w.Labels, Is.EqualTo(new[] { 0, 1, 1 }));
        Assert.That(Row(w, 1), Is.EqualTo(Ids("[CLS] the man went to the store [SEP]")));
        Assert.That(Row(w, 2), Is.EqualTo(Ids("[CLS] was very good it is great [SEP]")), "the last window ends with the text");
        var all = Featurizer.Classification([new(text, null, "pos", "t:2")], index, Tokenizer, maxSeq: 8, maxWindows: 5);
        Assert.That((all.Count, all.Truncated), Is.EqualTo((3, 0)));
        Assert.That(Row(all, 1), Is.EqualTo(Ids("[CLS] and the film was very good [SEP]")));
        Assert.That(Row(all, 2), Is.EqualTo(Ids("[CLS] was very good it is great [SEP]")), "the last window ends with the text");

        // Evaluation averages the windows' logits per example: example 1's windows say (3, −3) and (−1, 4),
        // whose mean (1, 0.5) picks class 0 although its last window alone would pick class 1.
        float[] logits = [2f, 0f, 3f, -3f, -1f, 4f];
        var (result, predictions) = FineTuningEvaluator.ScoreClassification(w, logits, heads: 2, classes: 2);
        Assert.That(predictions.Classes, Is.EqualTo(new[] { 0, 0 }));
        Assert.That((result.Examples, result.Accuracy), Is.EqualTo((2, 0.5)));
    }

    [Test]
    public void TokensLabelTheFirstPieceOfEachWordAndSplitLongSentencesAtWordBoundaries()
    {
        var tags = LabelSets.Index(["B-PER", "O"]);
        var f = Featurizer.Tokens([new TaggedSentence(["john", "went", "to", "the", "store", "."], ["B-PER", "O", "O", "O", "O", "O"], "s:1")],
            tags, Tokenizer, maxSeq: 6);
        Assert.That(f.Count, Is.EqualTo(2), "4 words fit a row of 6 with [CLS] and [SEP]");
        Assert.That(Row(f, 0), Is.EqualTo(Ids("[CLS] john went to the [SEP]")));
        Assert.That(Row(f, 1), Is.EqualTo(Ids("[CLS] store . [SEP]")));
        Assert.That(f.WordAt!.AsSpan(0, 6).ToArray(), Is.EqualTo(new[] { -1, 0, 1, 2, 3, -1 }));
        Assert.That(f.WordAt.AsSpan(6, 4).ToArray(), Is.EqualTo(new[] { -1, 4, 5, -1 }));
        Assert.That(f.LabelWeights!.AsSpan(0, 6).ToArray(), Is.EqualTo(new[] { 0f, 1, 1, 1, 1, 0 }));
        Assert.That(f.Labels![1], Is.EqualTo(0));
        Assert.That(f.Example, Is.EqualTo(new[] { 0, 0 }));

        // A word of several pieces is labelled once, at its first piece.
        var pieces = Vocabulary.FromTokens(Vocabulary.SpecialTokens.Concat(["store", "##s", "john"]));
        var g = Featurizer.Tokens([new TaggedSentence(["stores", "john"], ["O", "B-PER"], "s:1")], tags, new BertTokenizer(pieces), 8);
        Assert.That(g.LabelWeights!.AsSpan(0, 5).ToArray(), Is.EqualTo(new[] { 0f, 1, 0, 1, 0 }));
        Assert.That(g.Labels!.AsSpan(0, 5).ToArray(), Is.EqualTo(new[] { 0, 1, 0, 0, 0 }));
    }

    [Test]
    public void SpanWindowsPointAtTheAnswerOrAtClsWhenItIsOutside()
    {
        const string context = "john went to the store . the man went to the park .";
        int start = context.IndexOf("park", StringComparison.Ordinal);
        var example = new SpanExample("q", context, "where did the man go ?", start, "park", "s:1");
        // Question: 6 pieces → 16 − 6 − 3 = 7 context pieces per window, windows every 4 pieces.
        var f = Featurizer.Span([example], Tokenizer, maxSeq: 16, docStride: 4);
        Assert.That(f.Count, Is.EqualTo(3));
        Assert.That(Row(f, 0), Is.EqualTo(Ids("[CLS] where did the man go ? [SEP] john went to the store . the [SEP]")));
        Assert.That(f.TokenTypes.AsSpan(0, 16).ToArray(), Is.EqualTo(Enumerable.Repeat(0, 8).Concat(Enumerable.Repeat(1, 8))));
        Assert.That((f.StartPositions![0], f.EndPositions![0]), Is.EqualTo((0, 0)), "answer outside the first window");
        int last = f.Count - 1;
        int pos = f.StartPositions[last];
        Assert.That(pos, Is.GreaterThan(0));
        Assert.That(f.InputIds[last * f.Stride + pos], Is.EqualTo(V.GetId("park")));
        Assert.That(f.EndPositions[last], Is.EqualTo(pos));
        Assert.That(f.WordAt![last * f.Stride + pos], Is.EqualTo(11), "park is word 11 of the context");

        // Every context piece is scored in exactly one window (the one where it has the most context).
        var perPiece = new Dictionary<int, int>();
        for (int r = 0; r < f.Count; r++)
            for (int t = 0; t < f.Lengths[r]; t++)
                if (f.MaxContext![r * f.Stride + t]) perPiece[f.WordAt[r * f.Stride + t]] = perPiece.GetValueOrDefault(f.WordAt[r * f.Stride + t]) + 1;
        Assert.That(perPiece.Keys.Order(), Is.EqualTo(Enumerable.Range(0, 13)));
        Assert.That(perPiece.Values, Is.All.EqualTo(1));
    }

    [Test]
    public void MetricsFollowConllevalAndSquad()
    {
        Assert.That(FineTuningMetrics.Entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-PER"]),
            Is.EqualTo(new[] { (0, 1, "PER"), (3, 3, "LOC"), (4, 4, "LOC"), (5, 5, "PER") }));
        var (acc, f1) = FineTuningMetrics.Tokens([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]]);
        Assert.That(acc, Is.EqualTo(0.75));
        Assert.That(f1, Is.EqualTo(0.5), "one of two entities right, one of two predicted right");
        Assert.That(FineTuningMetrics.NormalizeAnswer("The  Eiffel-Tower!"), Is.EqualTo("eiffeltower"));
        var (em, sf1) = FineTuningMetrics.Squad(["the store", "in paris"], ["store", "paris france"]);
        Assert.That(em, Is.EqualTo(0.5));
        Assert.That(sf1, Is.EqualTo((1 + 2 * 0.5 * 0.5 / 1.0) / 2).Within(1e-12));
        var (cacc, cf1) = FineTuningMetrics.Classification([1, 1, 0, 0], [1, 0, 0, 1], 2);
        Assert.That((cacc, cf1), Is.EqualTo((0.5, 0.5)));
    }

    [Test]
    public void MailTextDropsHeadersAndDecodesMimePartsQuotedPrintableBase64AndHtml()
    {
        string message =
            "From: someone@example.com\nSubject: Cheap pills\nContent-Type: multipart/alternative;\n boundary=\"XX\"\n\n" +
            "preamble\n--XX\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n" +
            "Caf=E9 prices =\nare low\n--XX\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n" +
            Convert.ToBase64String("<html><style>p{}</style><p>Buy&nbsp;now &amp; save</p><!-- hidden --></html>"u8.ToArray()) + "\n" +
            "--XX\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGODlh\n--XX--\nepilogue\n";
        string text = MailText.Extract(message);
        Assert.That(text, Is.EqualTo("Café prices are low\nBuy now & save"));
        Assert.That(text, Does.Not.Contain("Subject"));
        Assert.That(MailText.Extract("Subject: x\n\nplain body\n"), Is.EqualTo("plain body"));
        Assert.That(MailText.Extract("Subject: only headers\n"), Is.EqualTo(""));
    }
}
