using System.Text.Json;
using Bert.Runtime.Data;

namespace Bert.Runtime.IO;

/// <summary>
/// The tokenizer files transformers reads beside vocab.txt: tokenizer_config.json (tokenizer_class
/// BertTokenizer, do_lower_case, model_max_length, the special tokens) and special_tokens_map.json, so
/// AutoTokenizer.from_pretrained gives the casing and length the model was trained with (transformers 4.x
/// and 5.x read the same keys).
/// </summary>
public static class HfTokenizerFiles
{
    public const string ConfigFile = "tokenizer_config.json", SpecialTokensFile = "special_tokens_map.json";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static Dictionary<string, object?> SpecialTokens() => new()
    {
        ["unk_token"] = Vocabulary.Unk,
        ["sep_token"] = Vocabulary.Sep,
        ["pad_token"] = Vocabulary.Pad,
        ["cls_token"] = Vocabulary.Cls,
        ["mask_token"] = Vocabulary.Mask,
    };

    /// <summary>tokenizer_config.json's bytes.</summary>
    public static byte[] TokenizerConfig(bool lowerCase, int modelMaxLength)
    {
        var config = new Dictionary<string, object?>
        {
            ["tokenizer_class"] = "BertTokenizer",
            ["do_lower_case"] = lowerCase,
            ["model_max_length"] = modelMaxLength,
            ["tokenize_chinese_chars"] = true,
            ["strip_accents"] = null,
        };
        foreach (var (k, v) in SpecialTokens()) config[k] = v;
        return JsonSerializer.SerializeToUtf8Bytes(config, Indented);
    }

    /// <summary>special_tokens_map.json's bytes.</summary>
    public static byte[] SpecialTokensMap() => JsonSerializer.SerializeToUtf8Bytes(SpecialTokens(), Indented);

    /// <summary>Writes both files into <paramref name="directory"/>, atomically.</summary>
    public static void Write(IFileSystem fs, string directory, bool lowerCase, int modelMaxLength)
    {
        var config = TokenizerConfig(lowerCase, modelMaxLength);
        var map = SpecialTokensMap();
        AtomicFile.Write(fs, Path.Combine(directory, ConfigFile), s => s.Write(config));
        AtomicFile.Write(fs, Path.Combine(directory, SpecialTokensFile), s => s.Write(map));
    }

    /// <summary>Whether text is lowercased and stripped of accents before WordPiece: tokenizer_config.json's
    /// "do_lower_case" when <paramref name="tokenizerConfig"/> (its bytes, read from <paramref name="path"/>) has it;
    /// otherwise uncased unless a vocabulary token (not a [SPECIAL] one) holds an uppercase letter, which an
    /// uncased vocabulary never does.</summary>
    /// <exception cref="InvalidDataException">tokenizer_config.json is not valid JSON.</exception>
    public static bool LowerCase(byte[]? tokenizerConfig, string path, IEnumerable<string> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokenizerConfig is not null)
        {
            try
            {
                using var doc = JsonDocument.Parse(tokenizerConfig);
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("do_lower_case", out var v)
                    && v.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    return v.GetBoolean();
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
            }
        }
        foreach (var t in tokens)
        {
            if (t.Length > 2 && t[0] == '[' && t[^1] == ']') continue;
            foreach (char c in t)
                if (char.IsUpper(c)) return false;
        }
        return true;
    }
}
