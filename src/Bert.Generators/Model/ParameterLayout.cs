using System.Collections.Generic;
using System.Text;
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
/// One tensor of the layout rule. <paramref name="Name"/> is the HuggingFace name, with "{l}" standing
/// for the layer index when <paramref name="PerLayer"/>; <paramref name="Shape"/> holds C# expressions
/// over the run-time sizes (V, H, I, P, T, MT, C, or a literal), so one rule serves every size.
/// </summary>
internal sealed record ParameterRow(string Name, EquatableArray<string> Shape, bool PerLayer, Init Init, bool Decay)
{
    /// <summary>Part of HuggingFace's BertModel (embeddings, encoder, pooler) rather than a head.</summary>
    public bool InBertModel => Name.StartsWith("bert.", System.StringComparison.Ordinal);

    /// <summary>The HuggingFace name without the layer prefix: "attention.self.query.weight".</summary>
    public string LocalName => PerLayer ? Name.Substring(ParameterLayout.LayerPrefix.Length) : Name;

    /// <summary>The C# name of the view: the HuggingFace name in PascalCase, without "bert." or the layer
    /// prefix ("bert.embeddings.LayerNorm.weight" → EmbeddingsLayerNormWeight).</summary>
    public string Field => ParameterLayout.FieldName(LocalName);
}

/// <summary>The planned model: the spec and its layout rule (rows in flat-buffer order).</summary>
internal sealed record ModelPlan(ModelSpec Spec, EquatableArray<ParameterRow> Parameters);

/// <summary>
/// The one parameter-layout rule: HuggingFace BertForPreTraining (or task-class) names and shapes, in
/// one flat buffer laid out as all weight-decayed tensors (embeddings and every Linear weight) followed
/// by all non-decayed ones (LayerNorm weights and every bias), so AdamW runs as two range calls. Within
/// a layer query, key and value are consecutive, weights and biases alike, so they form one [3H, H]
/// matrix and one [3H] bias for a single fused QKV Linear. The generated TableFor(BertConfig) applies
/// it to run-time sizes; the model, checkpoints, export and import all use that table.
/// </summary>
internal static class ParameterLayout
{
    public const string LayerPrefix = "bert.encoder.layer.{l}.";

    public static ModelPlan Plan(ModelSpec spec)
    {
        var rows = new List<ParameterRow>();

        void Add(string name, Init init, bool decay, params string[] shape) =>
            rows.Add(new ParameterRow(name, shape.ToEquatableArray(), name.StartsWith(LayerPrefix, System.StringComparison.Ordinal), init, decay));
        void Weight(string name, params string[] shape) => Add(name, Init.Normal, true, shape);
        void Bias(string name, string size) => Add(name, Init.Zeros, false, size);
        void Norm(string module, string size)
        {
            Add(module + ".weight", Init.Ones, false, size);
            Add(module + ".bias", Init.Zeros, false, size);
        }
        const string l = LayerPrefix;

        // ---- decayed: embeddings and Linear weights -------------------------------------------
        Weight("bert.embeddings.word_embeddings.weight", "V", "H");
        Weight("bert.embeddings.position_embeddings.weight", "P", "H");
        Weight("bert.embeddings.token_type_embeddings.weight", "T", "H");
        Weight(l + "attention.self.query.weight", "H", "H");
        Weight(l + "attention.self.key.weight", "H", "H");
        Weight(l + "attention.self.value.weight", "H", "H");
        Weight(l + "attention.output.dense.weight", "H", "H");
        Weight(l + "intermediate.dense.weight", "I", "H");
        Weight(l + "output.dense.weight", "H", "I");
        if (spec.Pooler) Weight("bert.pooler.dense.weight", "H", "H");
        if (spec.Mlm is { } mlm)
        {
            Weight("cls.predictions.transform.dense.weight", "MT", "H");
            if (!mlm.Tied) Weight("cls.predictions.decoder.weight", "V", "MT");
        }
        if (spec.Nsp) Weight("cls.seq_relationship.weight", "2", "H");
        if (spec.Classification is not null || spec.TokenClassification is not null) Weight("classifier.weight", "C", "H");
        if (spec.Span) Weight("qa_outputs.weight", "2", "H");

        // ---- not decayed: LayerNorm weights and biases ----------------------------------------
        Norm("bert.embeddings.LayerNorm", "H");
        Bias(l + "attention.self.query.bias", "H");
        Bias(l + "attention.self.key.bias", "H");
        Bias(l + "attention.self.value.bias", "H");
        Bias(l + "attention.output.dense.bias", "H");
        Norm(l + "attention.output.LayerNorm", "H");
        Bias(l + "intermediate.dense.bias", "I");
        Bias(l + "output.dense.bias", "H");
        Norm(l + "output.LayerNorm", "H");
        if (spec.Pooler) Bias("bert.pooler.dense.bias", "H");
        if (spec.Mlm is not null)
        {
            Bias("cls.predictions.transform.dense.bias", "MT");
            Norm("cls.predictions.transform.LayerNorm", "MT");
            Bias("cls.predictions.bias", "V");
        }
        if (spec.Nsp) Bias("cls.seq_relationship.bias", "2");
        if (spec.Classification is not null || spec.TokenClassification is not null) Bias("classifier.bias", "C");
        if (spec.Span) Bias("qa_outputs.bias", "2");

        return new ModelPlan(spec, rows.ToEquatableArray());
    }

    /// <summary>PascalCase of a dotted, snake_case HuggingFace name, "bert." dropped.</summary>
    public static string FieldName(string name)
    {
        if (name.StartsWith("bert.", System.StringComparison.Ordinal)) name = name.Substring(5);
        var text = new StringBuilder();
        foreach (var part in name.Split('.', '_'))
        {
            if (part.Length == 0) continue;
            text.Append(char.ToUpperInvariant(part[0])).Append(part, 1, part.Length - 1);
        }
        return text.ToString();
    }
}
