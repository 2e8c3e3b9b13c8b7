using Microsoft.CodeAnalysis;

namespace Bert.Generators.Diagnostics;

/// <summary>
/// Every diagnostic the Bert generator reports. Ids are stable (tests and users match on them) and
/// listed in AnalyzerReleases.Shipped.md. All are errors: an invalid spec emits no code.
/// </summary>
public static class DiagnosticDescriptors
{
    public const string Category = "Bert.Model";

    /// <summary>BERT001: Hidden is not a multiple of Heads.</summary>
    public static readonly DiagnosticDescriptor HiddenNotDivisibleByHeads = new(
        id: "BERT001",
        title: "Hidden size not divisible by the number of attention heads",
        messageFormat: "Model '{0}': Embeddings.Hidden = {1} is not divisible by EncoderLayer.Heads = {2}; the head dimension must be a whole number",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>BERT002: a size that must be positive is zero or negative.</summary>
    public static readonly DiagnosticDescriptor NonPositiveSize = new(
        id: "BERT002",
        title: "Model size must be positive",
        messageFormat: "Model '{0}': {1} = {2} must be positive",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>BERT003: the spec class (or a class containing it) lacks the partial modifier.</summary>
    public static readonly DiagnosticDescriptor NotPartial = new(
        id: "BERT003",
        title: "Model class must be partial",
        messageFormat: "Model '{0}': '{1}' must be declared partial so the generator can add the model's members",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>BERT004: a tied weight whose shape differs from the weight it is tied to.</summary>
    public static readonly DiagnosticDescriptor TiedShapeMismatch = new(
        id: "BERT004",
        title: "Tied weight shapes differ",
        messageFormat: "Model '{0}': the MLM decoder [{1}, {2}] is tied to the word embeddings [{3}, {4}] but the shapes differ; set MlmHead.TransformSize to the hidden size {4} or TieToWordEmbeddings = false",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>BERT005: a required attribute is missing.</summary>
    public static readonly DiagnosticDescriptor MissingAttribute = new(
        id: "BERT005",
        title: "Required model attribute missing",
        messageFormat: "Model '{0}': {1}",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>BERT006: attributes that cannot be used together.</summary>
    public static readonly DiagnosticDescriptor ConflictingAttributes = new(
        id: "BERT006",
        title: "Conflicting model attributes",
        messageFormat: "Model '{0}': {1}",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>BERT007: pre-LN encoder layers are not supported.</summary>
    public static readonly DiagnosticDescriptor PreLayerNormUnsupported = new(
        id: "BERT007",
        title: "Pre-LayerNorm encoder layers are not supported",
        messageFormat: "Model '{0}': EncoderLayer.PostLayerNorm = false is not supported; only post-LN layers (the original BERT) are generated",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>BERT008: a probability or epsilon outside its range.</summary>
    public static readonly DiagnosticDescriptor ValueOutOfRange = new(
        id: "BERT008",
        title: "Model hyper-parameter out of range",
        messageFormat: "Model '{0}': {1} = {2} is out of range; {3}",
        category: Category, defaultSeverity: DiagnosticSeverity.Error, isEnabledByDefault: true);
}
