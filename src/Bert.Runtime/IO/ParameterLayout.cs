namespace Bert.Runtime.IO;

/// <summary>
/// The flat-buffer parameter table of a BERT model built from its config alone, for tools that have
/// a config but no generated model class (export, import). It follows the generator's layout rule:
/// every weight-decayed tensor first, in HuggingFace order, then every non-decayed one (LayerNorm
/// weights and biases, all biases), offsets contiguous from 0. Names are HuggingFace's
/// (BertForPreTraining and the task classes share the "bert." prefix); the MLM decoder weight is tied
/// to the word embeddings and has no row.
/// </summary>
public static class ParameterLayout
{
    /// <summary>The table of a BertForPreTraining (pooler, MLM and NSP heads) with the config's sizes,
    /// whatever heads the config itself declares.</summary>
    public static IReadOnlyList<ParameterInfo> ForPretraining(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return For(config with
        {
            HasPooler = true,
            HasMlmHead = true,
            HasNspHead = true,
            ClassificationLabels = 0,
            TokenClassificationLabels = 0,
            HasSpanHead = false,
        });
    }

    /// <summary>The table of the heads the config declares. Fine-tuning heads use HuggingFace's names
    /// (classifier.*, qa_outputs.*): their weight closes the decayed block, their bias the other.</summary>
    public static IReadOnlyList<ParameterInfo> For(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int h = config.Hidden, v = config.VocabSize, inter = config.Intermediate;
        if (h <= 0 || v <= 0 || inter <= 0 || config.Layers <= 0 || config.MaxPositions <= 0 || config.TypeVocabSize <= 0)
            throw new ArgumentException($"model '{config.Name}' has a non-positive size", nameof(config));
        int classes = Math.Max(config.ClassificationLabels, config.TokenClassificationLabels);
        if (config.ClassificationLabels > 0 && config.TokenClassificationLabels > 0)
            throw new ArgumentException($"model '{config.Name}' declares both a classification and a token-classification head; HuggingFace names both 'classifier'", nameof(config));
        if ((config.HasNspHead || config.ClassificationLabels > 0) && !config.HasPooler)
            throw new ArgumentException($"model '{config.Name}' has a head on the pooled output but no pooler", nameof(config));

        var rows = new List<(string Name, int[] Shape, ParameterInit Init, bool Decay)>();
        void Decayed(string name, params int[] shape) => rows.Add((name, shape, ParameterInit.Normal, true));
        void Bias(string name, int n) => rows.Add((name, [n], ParameterInit.Zeros, false));
        void LayerNorm(string prefix)
        {
            rows.Add((prefix + ".weight", [h], ParameterInit.Ones, false));
            rows.Add((prefix + ".bias", [h], ParameterInit.Zeros, false));
        }

        Decayed("bert.embeddings.word_embeddings.weight", v, h);
        Decayed("bert.embeddings.position_embeddings.weight", config.MaxPositions, h);
        Decayed("bert.embeddings.token_type_embeddings.weight", config.TypeVocabSize, h);
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"bert.encoder.layer.{l}.";
            Decayed(p + "attention.self.query.weight", h, h);
            Decayed(p + "attention.self.key.weight", h, h);
            Decayed(p + "attention.self.value.weight", h, h);
            Decayed(p + "attention.output.dense.weight", h, h);
            Decayed(p + "intermediate.dense.weight", inter, h);
            Decayed(p + "output.dense.weight", h, inter);
        }
        if (config.HasPooler) Decayed("bert.pooler.dense.weight", h, h);
        if (config.HasMlmHead) Decayed("cls.predictions.transform.dense.weight", h, h);
        if (config.HasNspHead) Decayed("cls.seq_relationship.weight", 2, h);
        if (classes > 0) Decayed("classifier.weight", classes, h);
        if (config.HasSpanHead) Decayed("qa_outputs.weight", 2, h);

        LayerNorm("bert.embeddings.LayerNorm");
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"bert.encoder.layer.{l}.";
            Bias(p + "attention.self.query.bias", h);
            Bias(p + "attention.self.key.bias", h);
            Bias(p + "attention.self.value.bias", h);
            Bias(p + "attention.output.dense.bias", h);
            LayerNorm(p + "attention.output.LayerNorm");
            Bias(p + "intermediate.dense.bias", inter);
            Bias(p + "output.dense.bias", h);
            LayerNorm(p + "output.LayerNorm");
        }
        if (config.HasPooler) Bias("bert.pooler.dense.bias", h);
        if (config.HasMlmHead)
        {
            Bias("cls.predictions.transform.dense.bias", h);
            LayerNorm("cls.predictions.transform.LayerNorm");
            Bias("cls.predictions.bias", v);
        }
        if (config.HasNspHead) Bias("cls.seq_relationship.bias", 2);
        if (classes > 0) Bias("classifier.bias", classes);
        if (config.HasSpanHead) Bias("qa_outputs.bias", 2);

        var table = new ParameterInfo[rows.Count];
        long offset = 0;
        for (int i = 0; i < rows.Count; i++)
        {
            var (name, shape, init, decay) = rows[i];
            table[i] = new ParameterInfo(name, shape, offset, init, decay);
            offset += table[i].Count;
        }
        return table;
    }

    /// <summary>Elements of the flat buffer the table needs (the end of its furthest tensor).</summary>
    public static long Total(IReadOnlyList<ParameterInfo> table)
    {
        ArgumentNullException.ThrowIfNull(table);
        long end = 0;
        foreach (var p in table) end = Math.Max(end, p.Offset + p.Count);
        return end;
    }
}
