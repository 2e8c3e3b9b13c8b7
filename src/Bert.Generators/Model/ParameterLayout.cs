using System.Collections.Generic;
using Bert.Generators.Helpers;

namespace Bert.Generators.Model;

/// <summary>How a parameter starts (Bert.Runtime.ParameterInit member names).</summary>
internal enum Init
{
    Normal,
    Ones,
    Zeros,
}

/// <summary>
/// One tensor of the flat parameter buffer. <paramref name="VocabRows"/>: the first dimension is the
/// vocabulary size, which a model may override at construction, so offsets after it are computed
/// at run time from the counts.
/// </summary>
internal sealed record ParameterRow(string Name, EquatableArray<int> Shape, bool VocabRows, Init Init, bool Decay)
{
    public long Count(int vocabSize)
    {
        long count = 1;
        for (int i = 0; i < Shape.Count; i++) count *= i == 0 && VocabRows ? vocabSize : Shape[i];
        return count;
    }

    /// <summary>Elements per unit of vocabulary: what the count grows by when V grows by one.</summary>
    public long PerVocab => VocabRows ? Count(1) : 0;

    /// <summary>Part of HuggingFace's BertModel (embeddings, encoder, pooler) rather than a head.</summary>
    public bool InBertModel => Name.StartsWith("bert.", System.StringComparison.Ordinal);
}

/// <summary>The planned model: the spec and its parameter table.</summary>
internal sealed record ModelPlan(ModelSpec Spec, EquatableArray<ParameterRow> Parameters)
{
    public long Total => Sum(Spec.Embeddings.VocabSize, _ => true);

    public long Decayed => Sum(Spec.Embeddings.VocabSize, r => r.Decay);

    public long BertModelPart => Sum(Spec.Embeddings.VocabSize, r => r.InBertModel);

    /// <summary>Growth of the total per unit of vocabulary.</summary>
    public long TotalPerVocab => PerVocab(_ => true);

    public long DecayedPerVocab => PerVocab(r => r.Decay);

    public long BertModelPerVocab => PerVocab(r => r.InBertModel);

    public int DecayedTensors
    {
        get
        {
            int n = 0;
            foreach (var r in Parameters) if (r.Decay) n++;
            return n;
        }
    }

    /// <summary>Index of a row by name (the emitter addresses parameters by table index).</summary>
    public int IndexOf(string name)
    {
        for (int i = 0; i < Parameters.Count; i++)
            if (Parameters[i].Name == name) return i;
        throw new KeyNotFoundException("no parameter named " + name);
    }

    private long Sum(int vocabSize, System.Func<ParameterRow, bool> include)
    {
        long total = 0;
        foreach (var r in Parameters) if (include(r)) total += r.Count(vocabSize);
        return total;
    }

    private long PerVocab(System.Func<ParameterRow, bool> include)
    {
        long total = 0;
        foreach (var r in Parameters) if (include(r)) total += r.PerVocab;
        return total;
    }
}

/// <summary>
/// Builds the parameter table: HuggingFace BertForPreTraining names and shapes, in one flat buffer
/// laid out as all weight-decayed tensors (embeddings and every Linear weight) followed by all
/// non-decayed ones (LayerNorm weights and every bias), so AdamW runs as two range calls. Within a
/// layer query, key and value are consecutive, weights and biases alike, so they form one [3H, H]
/// matrix and one [3H] bias for a single fused QKV Linear.
/// </summary>
internal static class ParameterLayout
{
    public static ModelPlan Plan(ModelSpec spec)
    {
        var rows = new List<ParameterRow>();
        int h = spec.Hidden, i = spec.Encoder.Intermediate;
        var e = spec.Embeddings;

        void Add(string name, Init init, bool decay, bool vocabRows, params int[] shape) =>
            rows.Add(new ParameterRow(name, shape.ToEquatableArray(), vocabRows, init, decay));
        void Weight(string name, params int[] shape) => Add(name, Init.Normal, true, false, shape);
        void Bias(string name, int size) => Add(name, Init.Zeros, false, false, size);
        void Norm(string module, int size)
        {
            Add(module + ".weight", Init.Ones, false, false, size);
            Add(module + ".bias", Init.Zeros, false, false, size);
        }

        // ---- decayed: embeddings and Linear weights -------------------------------------------
        Add("bert.embeddings.word_embeddings.weight", Init.Normal, true, true, e.VocabSize, h);
        Weight("bert.embeddings.position_embeddings.weight", e.MaxPositions, h);
        Weight("bert.embeddings.token_type_embeddings.weight", e.TypeVocabSize, h);
        for (int l = 0; l < spec.Layers; l++)
        {
            var p = Layer(l);
            Weight(p + "attention.self.query.weight", h, h);
            Weight(p + "attention.self.key.weight", h, h);
            Weight(p + "attention.self.value.weight", h, h);
            Weight(p + "attention.output.dense.weight", h, h);
            Weight(p + "intermediate.dense.weight", i, h);
            Weight(p + "output.dense.weight", h, i);
        }
        if (spec.Pooler) Weight("bert.pooler.dense.weight", h, h);
        if (spec.Mlm is { } mlm)
        {
            Weight("cls.predictions.transform.dense.weight", mlm.TransformSize, h);
            if (!mlm.Tied) Add("cls.predictions.decoder.weight", Init.Normal, true, true, e.VocabSize, mlm.TransformSize);
        }
        if (spec.Nsp) Weight("cls.seq_relationship.weight", 2, h);
        if (spec.Classification is { } c) Weight("classifier.weight", c.Labels, h);
        if (spec.TokenClassification is { } t) Weight("classifier.weight", t.Labels, h);
        if (spec.Span) Weight("qa_outputs.weight", 2, h);

        // ---- not decayed: LayerNorm weights and biases ----------------------------------------
        Norm("bert.embeddings.LayerNorm", h);
        for (int l = 0; l < spec.Layers; l++)
        {
            var p = Layer(l);
            Bias(p + "attention.self.query.bias", h);
            Bias(p + "attention.self.key.bias", h);
            Bias(p + "attention.self.value.bias", h);
            Bias(p + "attention.output.dense.bias", h);
            Norm(p + "attention.output.LayerNorm", h);
            Bias(p + "intermediate.dense.bias", i);
            Bias(p + "output.dense.bias", h);
            Norm(p + "output.LayerNorm", h);
        }
        if (spec.Pooler) Bias("bert.pooler.dense.bias", h);
        if (spec.Mlm is { } m)
        {
            Bias("cls.predictions.transform.dense.bias", m.TransformSize);
            Norm("cls.predictions.transform.LayerNorm", m.TransformSize);
            Add("cls.predictions.bias", Init.Zeros, false, true, e.VocabSize);
        }
        if (spec.Nsp) Bias("cls.seq_relationship.bias", 2);
        if (spec.Classification is { } c2) Bias("classifier.bias", c2.Labels);
        if (spec.TokenClassification is { } t2) Bias("classifier.bias", t2.Labels);
        if (spec.Span) Bias("qa_outputs.bias", 2);

        return new ModelPlan(spec, rows.ToEquatableArray());
    }

    public static string Layer(int l) => "bert.encoder.layer." + l.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".";
}
