using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace Bert.Runtime.IO;

/// <summary>A config.json's model configuration plus what BertConfig does not hold: the class names
/// of a fine-tuned classifier (id2label, index order).</summary>
public sealed record ModelConfigFile(BertConfig Model, IReadOnlyList<string>? LabelNames = null);

/// <summary>
/// config.json in HuggingFace BertConfig form, so transformers' from_pretrained accepts our
/// checkpoints and we accept theirs. The architecture (BertForPreTraining, BertModel,
/// BertForSequenceClassification, ...) carries which heads exist. Required keys: vocab_size,
/// hidden_size, num_hidden_layers, num_attention_heads, intermediate_size; the rest default as in
/// BertConfig. Errors name the file, key and value.
/// </summary>
public static class ConfigJson
{
    public const string FileName = "config.json";

    private sealed record Heads(bool Pooler, bool Mlm, bool Nsp, bool Classification, bool TokenClassification, bool Span);

    private static readonly (string Architecture, Heads Heads)[] Architectures =
    [
        ("BertForPreTraining", new Heads(true, true, true, false, false, false)),
        ("BertModel", new Heads(true, false, false, false, false, false)),
        ("BertForMaskedLM", new Heads(false, true, false, false, false, false)),
        ("BertForNextSentencePrediction", new Heads(true, false, true, false, false, false)),
        ("BertForSequenceClassification", new Heads(true, false, false, true, false, false)),
        ("BertForTokenClassification", new Heads(false, false, false, false, true, false)),
        ("BertForQuestionAnswering", new Heads(false, false, false, false, false, true)),
    ];

    /// <summary>Most encoder layers a config may declare (see <see cref="BertConfig.MaxLayers"/>).</summary>
    public const int MaxLayers = BertConfig.MaxLayers;

    /// <summary>Most classes of a classification head. num_labels alone (no id2label) makes export write
    /// a LABEL_i name per class, so this bounds what a few bytes of config can make us allocate.</summary>
    public const int MaxLabels = BertConfig.MaxLabels;

    private static readonly string[] Activations = ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

    /// <summary>Reads and validates a config.json.</summary>
    /// <exception cref="ConfigFormatException">Missing key, wrong type or bad value.</exception>
    public static ModelConfigFile Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        string? dir = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path)));
        return Parse(bytes, path, string.IsNullOrEmpty(dir) ? "bert" : dir);
    }

    /// <param name="utf8">The file's bytes.</param>
    /// <param name="file">Named in errors.</param>
    /// <param name="defaultName">BertConfig.Name when the file has no "_name_or_path".</param>
    public static ModelConfigFile Parse(ReadOnlySpan<byte> utf8, string file, string defaultName)
    {
        int bad = Utf8Validation.FirstInvalid(utf8);
        if (bad >= 0)
            throw new ConfigFormatException(file, "(file)", $"byte 0x{utf8[bad]:X2} at offset {bad}", "not valid UTF-8");
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = false });
            doc = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException e)
        {
            throw new ConfigFormatException(file, "(file)", $"line {e.LineNumber + 1}, byte {e.BytePositionInLine}",
                "not valid JSON: " + e.Message, e);
        }
        using (doc)
        {
            try
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new ConfigFormatException(file, "(root)", root.ValueKind.ToString(), "config must be a JSON object");
                var keys = new HashSet<string>(StringComparer.Ordinal);
                foreach (var p in root.EnumerateObject())
                    if (!keys.Add(p.Name)) throw new ConfigFormatException(file, p.Name, "(repeated)", "duplicate key");
                return ParseRoot(root, file, defaultName);
            }
            catch (InvalidOperationException e)
            {
                // A string or key whose \u escape is not valid UTF-16 (a lone surrogate such as \udc00):
                // System.Text.Json only finds out when the string is read.
                throw new ConfigFormatException(file, "(file)", "a \\u escape", "a string is not valid UTF-16: " + e.Message, e);
            }
        }
    }

    private static ModelConfigFile ParseRoot(JsonElement root, string file, string defaultName)
    {
        string? modelType = OptionalString(root, "model_type", file);
        if (modelType is not null && modelType != "bert")
            throw new ConfigFormatException(file, "model_type", Quote(modelType), "only \"bert\" models are supported");
        string? position = OptionalString(root, "position_embedding_type", file);
        if (position is not null && position != "absolute")
            throw new ConfigFormatException(file, "position_embedding_type", Quote(position), "only \"absolute\" position embeddings are supported");
        if (root.TryGetProperty("is_decoder", out var dec) && dec.ValueKind == JsonValueKind.True)
            throw new ConfigFormatException(file, "is_decoder", "true", "decoder (causal) BERT is not supported");

        string architecture = "BertForPreTraining";
        if (root.TryGetProperty("architectures", out var archs) && archs.ValueKind != JsonValueKind.Null)
        {
            if (archs.ValueKind != JsonValueKind.Array || archs.GetArrayLength() == 0)
                throw new ConfigFormatException(file, "architectures", Raw(archs), "must be a non-empty array of strings");
            var first = archs[0];
            if (first.ValueKind != JsonValueKind.String)
                throw new ConfigFormatException(file, "architectures[0]", Raw(first), "must be a string");
            architecture = first.GetString()!;
        }
        int archIndex = Array.FindIndex(Architectures, a => a.Architecture == architecture);
        if (archIndex < 0)
            throw new ConfigFormatException(file, "architectures", Quote(architecture),
                "unsupported architecture (expected one of " + string.Join(", ", Architectures.Select(a => a.Architecture)) + ")");
        var heads = Architectures[archIndex].Heads;

        int vocab = RequiredPositiveInt(root, "vocab_size", file);
        int hidden = RequiredPositiveInt(root, "hidden_size", file);
        int layers = RequiredPositiveInt(root, "num_hidden_layers", file);
        int attentionHeads = RequiredPositiveInt(root, "num_attention_heads", file);
        int intermediate = RequiredPositiveInt(root, "intermediate_size", file);
        if (layers > MaxLayers)
            throw new ConfigFormatException(file, "num_hidden_layers", layers.ToString(CultureInfo.InvariantCulture), $"at most {MaxLayers} layers are supported");
        if (hidden % attentionHeads != 0)
            throw new ConfigFormatException(file, "hidden_size", hidden.ToString(CultureInfo.InvariantCulture),
                $"must be divisible by num_attention_heads ({attentionHeads})");
        int positions = OptionalPositiveInt(root, "max_position_embeddings", file) ?? 512;
        int typeVocab = OptionalPositiveInt(root, "type_vocab_size", file) ?? 2;
        if (root.TryGetProperty("pad_token_id", out var pad) && pad.ValueKind != JsonValueKind.Null)
        {
            int padId = Int(pad, "pad_token_id", file);
            if (padId < 0 || padId >= vocab)
                throw new ConfigFormatException(file, "pad_token_id", padId.ToString(CultureInfo.InvariantCulture), $"must be in [0, {vocab})");
        }

        string act = OptionalString(root, "hidden_act", file) ?? "gelu";
        var activation = act switch
        {
            "gelu" => Activation.Gelu,
            "gelu_new" or "gelu_pytorch_tanh" => Activation.GeluTanh,
            "relu" => Activation.Relu,
            _ => throw new ConfigFormatException(file, "hidden_act", Quote(act), "unsupported activation (expected " + string.Join(", ", Activations) + ")"),
        };
        float hiddenDropout = Probability(root, "hidden_dropout_prob", file) ?? 0.1f;
        float attentionDropout = Probability(root, "attention_probs_dropout_prob", file) ?? 0.1f;
        float classifierDropout = Probability(root, "classifier_dropout", file) ?? hiddenDropout;
        float eps = PositiveFloat(root, "layer_norm_eps", file) ?? 1e-12f;
        float range = PositiveFloat(root, "initializer_range", file) ?? 0.02f;

        var labels = ReadLabels(root, file);
        int numLabels = labels?.Count ?? OptionalPositiveInt(root, "num_labels", file) ?? 2;
        if (labels is not null && root.TryGetProperty("num_labels", out var nl) && nl.ValueKind != JsonValueKind.Null
            && Int(nl, "num_labels", file) != labels.Count)
            throw new ConfigFormatException(file, "num_labels", Raw(nl), $"disagrees with id2label, which has {labels.Count} entries");

        string name = root.TryGetProperty("_name_or_path", out var np) && np.ValueKind == JsonValueKind.String && np.GetString() is { Length: > 0 } s
            ? s : defaultName;
        var model = new BertConfig
        {
            Name = name,
            VocabSize = vocab,
            MaxPositions = positions,
            TypeVocabSize = typeVocab,
            Hidden = hidden,
            Layers = layers,
            Heads = attentionHeads,
            Intermediate = intermediate,
            HiddenActivation = activation,
            HiddenDropout = hiddenDropout,
            AttentionDropout = attentionDropout,
            LayerNormEps = eps,
            InitializerRange = range,
            HasPooler = heads.Pooler,
            HasMlmHead = heads.Mlm,
            HasNspHead = heads.Nsp,
            ClassificationLabels = heads.Classification ? numLabels : 0,
            TokenClassificationLabels = heads.TokenClassification ? numLabels : 0,
            HasSpanHead = heads.Span,
            ClassifierDropout = classifierDropout,
        };
        bool classifier = heads.Classification || heads.TokenClassification;
        if (classifier && numLabels > MaxLabels)
            throw new ConfigFormatException(file, labels is null ? "num_labels" : "id2label", numLabels.ToString(CultureInfo.InvariantCulture),
                $"at most {MaxLabels} classes are supported");
        try
        {
            model.Validate();
        }
        catch (BertConfigException e)
        {
            string key = e.Field switch
            {
                nameof(BertConfig.LayerNormEps) => "layer_norm_eps",
                nameof(BertConfig.HiddenDropout) => "hidden_dropout_prob",
                nameof(BertConfig.AttentionDropout) => "attention_probs_dropout_prob",
                nameof(BertConfig.ClassifierDropout) => "classifier_dropout",
                nameof(BertConfig.InitializerRange) => "initializer_range",
                nameof(BertConfig.ClassificationLabels) or nameof(BertConfig.TokenClassificationLabels) => "num_labels",
                _ => e.Field,
            };
            throw new ConfigFormatException(file, key, e.Value, e.Rule, e);
        }
        // Import, export and training hold all parameters in one flat fp32 array; a config that cannot
        // fit is malformed here rather than an out-of-memory error later.
        long total = Math.Max(ParameterLayout.Total(ParameterLayout.For(model)), ParameterLayout.Total(ParameterLayout.ForPretraining(model)));
        if (total > Array.MaxLength)
            throw new ConfigFormatException(file, "vocab_size, hidden_size, intermediate_size, num_hidden_layers",
                $"{vocab}, {hidden}, {intermediate}, {layers}",
                $"the model would have {total} parameters, more than the {Array.MaxLength} one flat fp32 buffer holds");
        return new ModelConfigFile(model, classifier ? labels : null);
    }

    private static List<string>? ReadLabels(JsonElement root, string file)
    {
        if (!root.TryGetProperty("id2label", out var id2label) || id2label.ValueKind == JsonValueKind.Null) return null;
        if (id2label.ValueKind != JsonValueKind.Object)
            throw new ConfigFormatException(file, "id2label", Raw(id2label), "must be an object {\"0\": name, ...}");
        var byId = new SortedDictionary<int, string>();
        foreach (var p in id2label.EnumerateObject())
        {
            if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw new ConfigFormatException(file, "id2label", Quote(p.Name), "keys must be class indices 0, 1, ...");
            if (p.Value.ValueKind != JsonValueKind.String)
                throw new ConfigFormatException(file, $"id2label.{p.Name}", Raw(p.Value), "label names must be strings");
            if (!byId.TryAdd(id, p.Value.GetString()!))
                throw new ConfigFormatException(file, $"id2label.{p.Name}", "(repeated)", "duplicate class index");
        }
        if (byId.Count == 0) throw new ConfigFormatException(file, "id2label", "{}", "must name at least one class");
        int expected = 0;
        foreach (int id in byId.Keys)
        {
            if (id != expected)
                throw new ConfigFormatException(file, "id2label", string.Join(", ", byId.Keys), $"class indices must be 0..{byId.Count - 1} without gaps (missing {expected})");
            expected++;
        }
        var names = byId.Values.ToList();
        var distinct = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (id, label) in byId)
            if (!distinct.Add(label))
                throw new ConfigFormatException(file, $"id2label.{id}", Quote(label), "label names must be distinct");
        if (root.TryGetProperty("label2id", out var label2id) && label2id.ValueKind != JsonValueKind.Null)
        {
            if (label2id.ValueKind != JsonValueKind.Object)
                throw new ConfigFormatException(file, "label2id", Raw(label2id), "must be an object {name: index, ...}");
            int count = 0;
            foreach (var p in label2id.EnumerateObject())
            {
                int id = Int(p.Value, $"label2id.{p.Name}", file);
                if (id < 0 || id >= names.Count || names[id] != p.Name)
                    throw new ConfigFormatException(file, $"label2id.{p.Name}", Raw(p.Value), "disagrees with id2label");
                count++;
            }
            if (count != names.Count)
                throw new ConfigFormatException(file, "label2id", $"{count} entries", $"id2label has {names.Count} entries");
        }
        return names;
    }

    /// <summary>The HuggingFace architecture whose heads are exactly the config's.</summary>
    /// <exception cref="ArgumentException">No transformers class has this combination of heads.</exception>
    public static string Architecture(BertConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var heads = new Heads(config.HasPooler, config.HasMlmHead, config.HasNspHead,
            config.ClassificationLabels > 0, config.TokenClassificationLabels > 0, config.HasSpanHead);
        foreach (var (arch, h) in Architectures)
            if (h == heads) return arch;
        throw new ArgumentException(
            $"model '{config.Name}' has heads {heads} that no HuggingFace BERT architecture matches " +
            "(supported: " + string.Join(", ", Architectures.Select(a => $"{a.Architecture} {a.Heads}")) + ")", nameof(config));
    }

    /// <summary>The config.json bytes (UTF-8, indented, keys sorted as transformers writes them).</summary>
    /// <param name="torchDtype">The "torch_dtype" entry: the dtype the weights are stored in
    /// ("float32", "bfloat16", "float16").</param>
    public static byte[] Serialize(BertConfig config, IReadOnlyList<string>? labelNames = null, string torchDtype = "float32")
    {
        string architecture = Architecture(config);
        int numLabels = Math.Max(config.ClassificationLabels, config.TokenClassificationLabels);
        if (labelNames is not null && labelNames.Count != numLabels)
            throw new ArgumentException($"{labelNames.Count} label names for a model with {numLabels} classes", nameof(labelNames));
        if (labelNames is not null && labelNames.Distinct(StringComparer.Ordinal).Count() != labelNames.Count)
            throw new ArgumentException("label names must be distinct", nameof(labelNames));
        var names = labelNames ?? Enumerable.Range(0, numLabels).Select(i => "LABEL_" + i.ToString(CultureInfo.InvariantCulture)).ToList();

        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("_name_or_path", config.Name);
            json.WriteStartArray("architectures");
            json.WriteStringValue(architecture);
            json.WriteEndArray();
            json.WriteNumber("attention_probs_dropout_prob", config.AttentionDropout);
            json.WriteNumber("classifier_dropout", config.ClassifierDropout);
            json.WriteString("hidden_act", config.HiddenActivation switch
            {
                Activation.Gelu => "gelu",
                Activation.GeluTanh => "gelu_new",
                Activation.Relu => "relu",
                var a => throw new ArgumentException($"hidden activation {a} has no HuggingFace name", nameof(config)),
            });
            json.WriteNumber("hidden_dropout_prob", config.HiddenDropout);
            json.WriteNumber("hidden_size", config.Hidden);
            if (numLabels > 0)
            {
                json.WriteStartObject("id2label");
                for (int i = 0; i < names.Count; i++) json.WriteString(i.ToString(CultureInfo.InvariantCulture), names[i]);
                json.WriteEndObject();
            }
            json.WriteNumber("initializer_range", config.InitializerRange);
            json.WriteNumber("intermediate_size", config.Intermediate);
            if (numLabels > 0)
            {
                json.WriteStartObject("label2id");
                for (int i = 0; i < names.Count; i++) json.WriteNumber(names[i], i);
                json.WriteEndObject();
            }
            json.WriteNumber("layer_norm_eps", config.LayerNormEps);
            json.WriteNumber("max_position_embeddings", config.MaxPositions);
            json.WriteString("model_type", "bert");
            json.WriteNumber("num_attention_heads", config.Heads);
            json.WriteNumber("num_hidden_layers", config.Layers);
            if (numLabels > 0) json.WriteNumber("num_labels", numLabels);
            json.WriteNumber("pad_token_id", 0);
            json.WriteString("position_embedding_type", "absolute");
            json.WriteString("torch_dtype", torchDtype);
            json.WriteNumber("type_vocab_size", config.TypeVocabSize);
            json.WriteBoolean("use_cache", true);
            json.WriteNumber("vocab_size", config.VocabSize);
            json.WriteEndObject();
        }
        var bytes = new byte[buffer.WrittenCount + 1];
        buffer.WrittenSpan.CopyTo(bytes);
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    /// <summary>Writes config.json atomically.</summary>
    public static void Write(IFileSystem fs, string path, BertConfig config, IReadOnlyList<string>? labelNames = null,
        string torchDtype = "float32")
    {
        var bytes = Serialize(config, labelNames, torchDtype);
        AtomicFile.Write(fs, path, s => s.Write(bytes));
    }

    private static int RequiredPositiveInt(JsonElement root, string key, string file)
    {
        if (!root.TryGetProperty(key, out var e) || e.ValueKind == JsonValueKind.Null)
            throw new ConfigFormatException(file, key, "(absent)", "required key is missing");
        return Positive(Int(e, key, file), key, file);
    }

    private static int? OptionalPositiveInt(JsonElement root, string key, string file) =>
        root.TryGetProperty(key, out var e) && e.ValueKind != JsonValueKind.Null ? Positive(Int(e, key, file), key, file) : null;

    private static int Positive(int v, string key, string file) =>
        v > 0 ? v : throw new ConfigFormatException(file, key, v.ToString(CultureInfo.InvariantCulture), "must be positive");

    private static int Int(JsonElement e, string key, string file)
    {
        if (e.ValueKind != JsonValueKind.Number)
            throw new ConfigFormatException(file, key, Raw(e), $"must be an integer, not {Kind(e)}");
        if (!e.TryGetInt32(out int v))
            throw new ConfigFormatException(file, key, Raw(e), "must be a 32-bit integer");
        return v;
    }

    private static float? Probability(JsonElement root, string key, string file)
    {
        float? v = Float(root, key, file);
        if (v is float p && !(p >= 0f && p < 1f))
            throw new ConfigFormatException(file, key, Raw(root.GetProperty(key)), "must be a probability in [0, 1)");
        return v;
    }

    private static float? PositiveFloat(JsonElement root, string key, string file)
    {
        float? v = Float(root, key, file);
        if (v is float x && !(x > 0f && float.IsFinite(x)))
            throw new ConfigFormatException(file, key, Raw(root.GetProperty(key)), "must be a positive number");
        return v;
    }

    private static float? Float(JsonElement root, string key, string file)
    {
        if (!root.TryGetProperty(key, out var e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number)
            throw new ConfigFormatException(file, key, Raw(e), $"must be a number, not {Kind(e)}");
        return (float)e.GetDouble();
    }

    private static string? OptionalString(JsonElement root, string key, string file)
    {
        if (!root.TryGetProperty(key, out var e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.String)
            throw new ConfigFormatException(file, key, Raw(e), $"must be a string, not {Kind(e)}");
        return e.GetString();
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => "null",
    };

    private static string Raw(JsonElement e)
    {
        string text = e.GetRawText();
        return text.Length > 60 ? text[..60] + "..." : text;
    }

    private static string Quote(string s) => "\"" + s + "\"";
}
