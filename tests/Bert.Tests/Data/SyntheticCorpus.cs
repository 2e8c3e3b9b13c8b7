using System.Text;
using Bert.Runtime.Data;

namespace Bert.Tests.Data;

/// <summary>
/// A deterministic made-up corpus: words of 1–3 syllables drawn from a fixed list, so that the
/// vocabulary (specials, characters, syllables and their ## forms) splits most words into pieces.
/// </summary>
internal static class SyntheticCorpus
{
    private static readonly string[] Syllables =
    [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "ge", "bi", "fu", "ho", "ja", "ze",
        "qua", "stre", "pli", "mon", "tar", "vel", "dor", "shi",
    ];

    public static Vocabulary Vocabulary { get; } = BuildVocabulary();

    private static Vocabulary BuildVocabulary()
    {
        var tokens = new List<string>(Runtime.Data.Vocabulary.SpecialTokens);
        var chars = Syllables.SelectMany(s => s).Distinct().Order().Select(c => c.ToString()).ToList();
        chars.Add(".");
        tokens.AddRange(chars);
        tokens.AddRange(chars.Select(c => "##" + c));
        tokens.AddRange(Syllables);
        tokens.AddRange(Syllables.Select(s => "##" + s));
        return Runtime.Data.Vocabulary.FromTokens(tokens.Distinct(), "synthetic-vocab");
    }

    /// <summary>Documents of <paramref name="sentencesPerDocument"/> sentences of 4–12 words.</summary>
    public static List<string[]> Documents(int documents, int sentencesPerDocument, int seed)
    {
        var rng = new Random(seed);
        var result = new List<string[]>();
        var sb = new StringBuilder();
        for (int d = 0; d < documents; d++)
        {
            var sentences = new string[sentencesPerDocument];
            for (int s = 0; s < sentencesPerDocument; s++)
            {
                sb.Clear();
                int words = rng.Next(4, 13);
                for (int w = 0; w < words; w++)
                {
                    if (w > 0) sb.Append(' ');
                    int syl = rng.Next(1, 4);
                    for (int k = 0; k < syl; k++) sb.Append(Syllables[rng.Next(Syllables.Length)]);
                }
                sb.Append('.');
                sentences[s] = sb.ToString();
            }
            result.Add(sentences);
        }
        return result;
    }

    public static string Write(string path, int documents, int sentencesPerDocument, int seed)
    {
        TextCorpus.Write(path, Documents(documents, sentencesPerDocument, seed));
        return path;
    }

    /// <summary>A small tokenized corpus for shard tests.</summary>
    public static TokenizedCorpus Tokenized(int documents, int sentencesPerDocument, int seed) =>
        TokenizedCorpus.Tokenize(new TextCorpus(Documents(documents, sentencesPerDocument, seed), "synthetic"),
            new BertTokenizer(Vocabulary));
}
