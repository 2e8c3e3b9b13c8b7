namespace Bert.Runtime.Data;

/// <summary>
/// BasicTokenizer followed by WordPiece: the FullTokenizer of google-research/bert. Text in, token
/// ids out, with no allocation per word once the scratch buffers have grown.
/// Not thread-safe (the basic tokenizer's scratch); create one per thread, sharing the vocabulary.
/// </summary>
public sealed class BertTokenizer
{
    private readonly BasicTokenizer _basic;
    private readonly WordPieceTokenizer _wordPiece;

    public BertTokenizer(Vocabulary vocabulary, bool lowerCase = true, int maxInputCharsPerWord = 200)
    {
        Vocabulary = vocabulary;
        _basic = new BasicTokenizer(lowerCase);
        _wordPiece = new WordPieceTokenizer(vocabulary, maxInputCharsPerWord);
    }

    public Vocabulary Vocabulary { get; }

    public bool LowerCase => _basic.LowerCase;

    /// <summary>A tokenizer with the same settings for another thread.</summary>
    public BertTokenizer Clone() => new(Vocabulary, LowerCase, _wordPiece.MaxInputCharsPerWord);

    /// <summary>Appends the token ids of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    public void Encode(ReadOnlySpan<char> text, List<int> ids)
    {
        var sink = new EncodeSink(_wordPiece, ids);
        _basic.Split(text, ref sink);
    }

    public int[] Encode(string text)
    {
        var ids = new List<int>();
        Encode(text, ids);
        return ids.ToArray();
    }

    /// <summary>The token strings of <paramref name="text"/> (tests and tools; allocates).</summary>
    public List<string> Tokenize(string text) => Encode(text).Select(id => Vocabulary[id]).ToList();

    private readonly struct EncodeSink(WordPieceTokenizer wordPiece, List<int> ids) : IWordSink
    {
        public void OnWord(ReadOnlySpan<char> word) => wordPiece.Encode(word, ids);
    }
}
