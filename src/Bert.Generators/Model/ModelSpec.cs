using Bert.Generators.Diagnostics;
using Bert.Generators.Helpers;

namespace Bert.Generators.Model;

// The equatable model of one [BertModel] spec: plain values only (no symbols, no syntax), so the
// incremental pipeline can compare it across edits and skip regeneration when nothing changed.

/// <summary>Where the generated partial class goes.</summary>
/// <param name="Namespace">Containing namespace, "" for the global namespace.</param>
/// <param name="ContainingTypes">Declarations of the enclosing types, outermost first ("partial class Outer").</param>
/// <param name="Name">The spec class's name.</param>
internal sealed record TypeLocation(string Namespace, EquatableArray<string> ContainingTypes, string Name)
{
    /// <summary>"Bert.Runtime.Presets.BertBase" (enclosing types included).</summary>
    public string FullName
    {
        get
        {
            var parts = new System.Collections.Generic.List<string>();
            if (Namespace.Length > 0) parts.Add(Namespace);
            foreach (var t in ContainingTypes) parts.Add(t.Substring(t.LastIndexOf(' ') + 1));
            parts.Add(Name);
            return string.Join(".", parts);
        }
    }

    /// <summary>The generated file's name: the full type name, so equal names in two namespaces do not clash.</summary>
    public string HintName => FullName + ".g.cs";
}

/// <summary>[Embeddings].</summary>
internal sealed record EmbeddingsSpec(int VocabSize, int MaxPositions, int TypeVocabSize, int Hidden,
    double LayerNormEps, double Dropout);

/// <summary>[EncoderLayer]. <paramref name="Activation"/> is the member name of Bert.Runtime.Activation.</summary>
internal sealed record EncoderSpec(int Heads, int Intermediate, string Activation, double AttentionDropout,
    double HiddenDropout, double LayerNormEps);

/// <summary>[MlmHead] with the transform width resolved (0 in the attribute means Hidden).</summary>
internal sealed record MlmSpec(bool Tied, string Activation, int TransformSize);

/// <summary>[ClassificationHead] or [TokenClassificationHead].</summary>
internal sealed record ClassifierSpec(int Labels, double Dropout);

/// <summary>A valid model spec, ready to plan and emit.</summary>
internal sealed record ModelSpec(
    TypeLocation Type,
    string ModelType,
    EmbeddingsSpec Embeddings,
    EncoderSpec Encoder,
    int Layers,
    bool Pooler,
    MlmSpec? Mlm,
    bool Nsp,
    ClassifierSpec? Classification,
    ClassifierSpec? TokenClassification,
    bool Span)
{
    public int Hidden => Embeddings.Hidden;
    public int HeadDim => Embeddings.Hidden / Encoder.Heads;
}

/// <summary>What the parse step yields: a spec when it is valid, and every diagnostic found.</summary>
internal sealed record ParseResult(ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics);
