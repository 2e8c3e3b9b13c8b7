using System.Text.Json;
using System.Text.Json.Nodes;
using Bert.Runtime;

namespace Bert.Tests.Model;

/// <summary>
/// Weights for model-level tests: BERT's initialization from a seed, then a documented, deterministic
/// perturbation so that every tensor matters. At initialization the LayerNorms are the identity and
/// every bias is zero, so a bug that swaps gamma and beta, or drops a bias, would go unseen; with weights
/// of std 0.02 the gradients are too small for finite differences to tell right from wrong.
/// <list type="bullet">
/// <item>u(t, i) = Philox.Uniform(seed, step 1, stream 0x50000000 + t, index i), t the table row;</item>
/// <item>Normal-initialized tensors (embeddings, Linear weights): w ← 4·w, i.e. Normal(0, 0.08);</item>
/// <item>LayerNorm weights (init 1): w ← 0.75 + 0.5·u, in [0.75, 1.25);</item>
/// <item>biases and LayerNorm biases (init 0): w ← 0.2·(u − 0.5), in [−0.1, 0.1).</item>
/// </list>
/// The same rule is stated in docs/parity.md; the committed parity golden file depends on it.
/// </summary>
internal static class TestWeights
{
    public const float NormalScale = 4f;

    public static float[] Create(IReadOnlyList<ParameterInfo> table, long total, float std, ulong seed)
    {
        var host = new float[total];
        BertModelBase.InitializeHost(host, table, std, seed);
        for (int t = 0; t < table.Count; t++)
        {
            var p = table[t];
            var span = host.AsSpan((int)p.Offset, (int)p.Count);
            uint stream = 0x50000000u + (uint)t;
            for (int i = 0; i < span.Length; i++)
            {
                float u = Philox.Uniform(seed, 1, stream, i);
                span[i] = p.Init switch
                {
                    ParameterInit.Normal => NormalScale * span[i],
                    ParameterInit.Ones => 0.75f + 0.5f * u,
                    _ => 0.2f * (u - 0.5f),
                };
            }
        }
        return host;
    }

    /// <summary>Fills <paramref name="model"/>'s parameters; returns the host copy.</summary>
    public static float[] Apply(BertModelBase model, ulong seed)
    {
        var host = Create(model.ParameterTable, model.ParameterTotal, model.Config.InitializerRange, seed);
        model.Backend.Upload<float>(model.Parameters, host);
        return host;
    }
}

/// <summary>
/// One batch on the host with every label any head reads, odd-shaped on purpose: sequence b has
/// S − 2b real tokens (trailing padding), segments A and B, P masked positions per sequence of which
/// the short last sequence fills only some (the rest are padding entries: position 0, weight 0).
/// </summary>
internal sealed class HostInputs
{
    public required int Batch { get; init; }
    public required int Seq { get; init; }
    public required int Predictions { get; init; }
    public required int[] InputIds { get; init; }          // [B·S]
    public required int[] TokenTypeIds { get; init; }      // [B·S]
    public required int[] AttentionMask { get; init; }     // [B·S]
    public required int[] MlmPositions { get; init; }      // [B·P]
    public required int[] MlmLabels { get; init; }         // [B·P]
    public required float[] MlmWeights { get; init; }      // [B·P]
    public required int[] NspLabels { get; init; }         // [B]
    public int[] SequenceLabels { get; init; } = [];       // [B] classification
    public int[] TokenLabels { get; init; } = [];          // [B·S] token classification
    public float[] TokenWeights { get; init; } = [];       // [B·S] 1 for real tokens
    public int[] StartPositions { get; init; } = [];       // [B]
    public int[] EndPositions { get; init; } = [];         // [B]

    public const int ClsId = 2, SepId = 3, MaskId = 4;

    public static HostInputs Create(BertConfig c, int batch, int seq, int predictions, int seed)
    {
        var rng = new Random(seed);
        int n = batch * seq, bp = batch * predictions;
        var ids = new int[n];
        var types = new int[n];
        var mask = new int[n];
        var positions = new int[bp];
        var labels = new int[bp];
        var weights = new float[bp];
        var tokenLabels = new int[n];
        var tokenWeights = new float[n];
        var starts = new int[batch];
        var ends = new int[batch];
        for (int b = 0; b < batch; b++)
        {
            int length = Math.Max(3, seq - 2 * b);
            int split = length >= 5 ? length / 2 : -1;  // the [SEP] closing segment A (none when too short)
            for (int s = 0; s < seq; s++)
            {
                int i = b * seq + s;
                if (s >= length) continue;  // padding: id 0, type 0, mask 0
                mask[i] = 1;
                ids[i] = s == 0 ? ClsId : s == split || s == length - 1 ? SepId : rng.Next(5, c.VocabSize);
                // Segment B is type 1; a model with more segment types sees them too.
                types[i] = split < 0 || s <= split ? 0 : c.TypeVocabSize > 2 && s % 2 == 0 ? 2 : 1;
                tokenLabels[i] = c.TokenClassificationLabels > 0 ? rng.Next(c.TokenClassificationLabels) : 0;
                tokenWeights[i] = 1f;
            }
            // Masked positions: distinct, ascending, among the non-special tokens.
            var candidates = Enumerable.Range(1, length - 2).Where(s => s != split).OrderBy(_ => rng.Next()).ToList();
            var chosen = candidates.Take(predictions).Order().ToArray();
            for (int p = 0; p < predictions; p++)
            {
                int k = b * predictions + p;
                if (p < chosen.Length)
                {
                    positions[k] = chosen[p];
                    labels[k] = ids[b * seq + chosen[p]];
                    weights[k] = 1f;
                    ids[b * seq + chosen[p]] = rng.Next(10) < 8 ? MaskId : rng.Next(5, c.VocabSize);
                }
            }
            starts[b] = rng.Next(1, length - 1);
            ends[b] = rng.Next(starts[b], length - 1);
        }
        return new HostInputs
        {
            Batch = batch,
            Seq = seq,
            Predictions = predictions,
            InputIds = ids,
            TokenTypeIds = types,
            AttentionMask = mask,
            MlmPositions = positions,
            MlmLabels = labels,
            MlmWeights = weights,
            NspLabels = [.. Enumerable.Range(0, batch).Select(b => (b + seed) % 2)],
            SequenceLabels = c.ClassificationLabels > 0 ? [.. Enumerable.Range(0, batch).Select(_ => rng.Next(c.ClassificationLabels))] : [],
            TokenLabels = c.TokenClassificationLabels > 0 ? tokenLabels : [],
            TokenWeights = c.TokenClassificationLabels > 0 ? tokenWeights : [],
            StartPositions = c.HasSpanHead ? starts : [],
            EndPositions = c.HasSpanHead ? ends : [],
        };
    }

    // ---- JSON (the parity scripts' input format) ------------------------------------------------

    /// <summary>The pretraining inputs as bert_reference.py and hf_parity.py read them: [B][S] and
    /// [B][P] nested arrays under google-research/bert's feature names, one row per line.</summary>
    public string ToJson()
    {
        static string Row<T>(IEnumerable<T> values) => "[" + string.Join(", ", values.Select(v => JsonSerializer.Serialize(v))) + "]";
        static string Rows<T>(T[] data, int width) =>
            "[\n    " + string.Join(",\n    ", Enumerable.Range(0, data.Length / width).Select(r => Row(data.Skip(r * width).Take(width)))) + "\n  ]";
        var fields = new (string Key, string Value)[]
        {
            ("batch", Row([Batch])[1..^1]),
            ("seq_length", Row([Seq])[1..^1]),
            ("predictions", Row([Predictions])[1..^1]),
            ("input_ids", Rows(InputIds, Seq)),
            ("token_type_ids", Rows(TokenTypeIds, Seq)),
            ("attention_mask", Rows(AttentionMask, Seq)),
            ("masked_lm_positions", Rows(MlmPositions, Predictions)),
            ("masked_lm_ids", Rows(MlmLabels, Predictions)),
            ("masked_lm_weights", Rows(MlmWeights, Predictions)),
            ("next_sentence_labels", Row(NspLabels)),
        };
        return "{\n" + string.Join(",\n", fields.Select(f => $"  \"{f.Key}\": {f.Value}")) + "\n}\n";
    }

    public static HostInputs FromJson(string json, string file)
    {
        var root = JsonNode.Parse(json)?.AsObject() ?? throw new FormatException($"{file}: not a JSON object");
        int Int(string key) => root[key]?.GetValue<int>() ?? throw new FormatException($"{file}: missing '{key}'");
        T[] Flat<T>(string key, int width)
        {
            var rows = root[key]?.AsArray() ?? throw new FormatException($"{file}: missing '{key}'");
            var flat = rows.SelectMany(r => r!.AsArray().Select(v => v!.GetValue<T>())).ToArray();
            if (flat.Length != rows.Count * width) throw new FormatException($"{file}: '{key}' rows are not {width} wide");
            return flat;
        }
        int batch = Int("batch"), seq = Int("seq_length"), predictions = Int("predictions");
        return new HostInputs
        {
            Batch = batch,
            Seq = seq,
            Predictions = predictions,
            InputIds = Flat<int>("input_ids", seq),
            TokenTypeIds = Flat<int>("token_type_ids", seq),
            AttentionMask = Flat<int>("attention_mask", seq),
            MlmPositions = Flat<int>("masked_lm_positions", predictions),
            MlmLabels = Flat<int>("masked_lm_ids", predictions),
            MlmWeights = Flat<float>("masked_lm_weights", predictions),
            NspLabels = root["next_sentence_labels"]!.AsArray().Select(v => v!.GetValue<int>()).ToArray(),
        };
    }
}

/// <summary>A <see cref="HostInputs"/> uploaded to a backend, described as a <see cref="BertBatch"/>
/// for the heads of a given model.</summary>
internal sealed class DeviceInputs : IDisposable
{
    private readonly List<DeviceBuffer> _buffers = [];
    private readonly IBackend _backend;

    public DeviceInputs(IBackend backend, HostInputs host, BertConfig config)
    {
        _backend = backend;
        TensorRef I32(int[] data) => Upload(data, DType.I32);
        TensorRef F32(float[] data) => Upload(data, DType.F32);
        bool mlm = config.HasMlmHead && host.Predictions > 0;
        Batch = new BertBatch
        {
            Batch = host.Batch,
            Seq = host.Seq,
            Predictions = mlm ? host.Predictions : 0,
            InputIds = I32(host.InputIds),
            TokenTypeIds = I32(host.TokenTypeIds),
            AttentionMask = I32(host.AttentionMask),
            MlmPositions = mlm ? I32(host.MlmPositions) : TensorRef.Null,
            MlmLabels = mlm ? I32(host.MlmLabels) : TensorRef.Null,
            MlmWeights = mlm ? F32(host.MlmWeights) : TensorRef.Null,
            MlmGradScale = 1f / (host.MlmWeights.Sum() + 1e-5f),
            NspLabels = config.HasNspHead ? I32(host.NspLabels) : TensorRef.Null,
            Labels = config.ClassificationLabels > 0 ? I32(host.SequenceLabels)
                : config.TokenClassificationLabels > 0 ? I32(host.TokenLabels) : TensorRef.Null,
            LabelWeights = config.TokenClassificationLabels > 0 ? F32(host.TokenWeights) : TensorRef.Null,
            LabelGradScale = 1f / (host.TokenWeights.Sum() + 1e-5f),
            StartPositions = config.HasSpanHead ? I32(host.StartPositions) : TensorRef.Null,
            EndPositions = config.HasSpanHead ? I32(host.EndPositions) : TensorRef.Null,
        };
    }

    /// <summary>Inputs and every label the model's heads read.</summary>
    public BertBatch Batch { get; }

    /// <summary>The same inputs without labels: Forward then leaves the logits in place.</summary>
    public BertBatch Unlabeled => Batch with
    {
        MlmLabels = TensorRef.Null, MlmWeights = TensorRef.Null, NspLabels = TensorRef.Null, Labels = TensorRef.Null,
        LabelWeights = TensorRef.Null, StartPositions = TensorRef.Null, EndPositions = TensorRef.Null,
    };

    private TensorRef Upload<T>(T[] data, DType type) where T : unmanaged
    {
        var buffer = _backend.Allocate(Math.Max(1, data.Length), type, "test-batch");
        _buffers.Add(buffer);
        _backend.Upload<T>(buffer.Slice(0, data.Length), data);
        return buffer.Slice(0, data.Length);
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
    }
}

internal static class ModelLoss
{
    /// <summary>The loss the model differentiates: the sum of every head's loss of the last Forward
    /// (MLM weighted mean + NSP mean + classifier + span start + span end), read from Metrics.</summary>
    public static double Total(BertModelBase model)
    {
        Span<float> m = stackalloc float[MetricSlot.Length];
        model.ReadMetrics(m);
        return (double)m[MetricSlot.MlmLoss] + m[MetricSlot.NspLoss] + m[MetricSlot.ClsLoss]
            + m[MetricSlot.SpanStartLoss] + m[MetricSlot.SpanEndLoss];
    }

    public static float[] Download(IBackend backend, TensorRef t)
    {
        var host = new float[t.Length];
        backend.Download<float>(host, t);
        return host;
    }
}
