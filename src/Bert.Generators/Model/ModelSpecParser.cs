using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Bert.Generators.Diagnostics;
using Bert.Generators.Helpers;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Bert.Generators.Model;

/// <summary>
/// Turns the symbol of a [BertModel] class into a <see cref="ModelSpec"/> and its diagnostics. This is
/// the only place that sees symbols; everything after it works on the equatable spec.
/// </summary>
internal static class ModelSpecParser
{
    private const string Dsl = "Bert.Dsl.";

    // Defaults mirror the attribute classes in Bert.Dsl/Attributes.cs (a generator cannot run their
    // constructors); a test compares a generated config against the attributes' own defaults.
    private const int DefaultVocabSize = 30522, DefaultMaxPositions = 512, DefaultTypeVocabSize = 2, DefaultLabels = 2;
    private const double DefaultEps = 1e-12, DefaultDropout = 0.1;

    public static ParseResult Parse(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
    {
        if (context.TargetSymbol is not INamedTypeSymbol type) return new ParseResult(null, EquatableArray<DiagnosticInfo>.Empty);
        cancellationToken.ThrowIfCancellationRequested();
        return new Parser(type).Run();
    }

    private sealed class Parser(INamedTypeSymbol type)
    {
        private readonly List<DiagnosticInfo> _diagnostics = [];
        private readonly string _name = type.Name;
        private bool _erroneous;

        public ParseResult Run()
        {
            var attributes = new Dictionary<string, AttributeData>();
            foreach (var a in type.GetAttributes())
            {
                var name = a.AttributeClass?.ToDisplayString();
                if (name is null || !name.StartsWith(Dsl, System.StringComparison.Ordinal)) continue;
                if (a.ConstructorArguments.Any(c => c.Kind == TypedConstantKind.Error) ||
                    a.NamedArguments.Any(n => n.Value.Kind == TypedConstantKind.Error))
                    _erroneous = true;
                attributes[name.Substring(Dsl.Length)] = a;
            }
            var classLocation = LocationInfo.From(type.Locations.FirstOrDefault());
            var bertModel = attributes.TryGetValue("BertModelAttribute", out var bm) ? bm : null;
            var modelLocation = Where(bertModel) ?? classLocation;

            CheckPartial(classLocation);

            var emb = Get(attributes, "EmbeddingsAttribute");
            var enc = Get(attributes, "EncoderLayerAttribute");
            var rep = Get(attributes, "RepeatAttribute");
            if (emb is null) Missing(modelLocation, "[Embeddings(Hidden = ...)] is required: it declares the token, position and segment embeddings and the hidden size");
            if (enc is null) Missing(modelLocation, "[EncoderLayer(Heads = ..., Intermediate = ...)] is required: it declares the transformer layer");
            if (rep is null) Missing(modelLocation, "[Repeat(n)] is required: it declares the number of encoder layers");

            EmbeddingsSpec? embeddings = null;
            if (emb is not null)
            {
                var at = Where(emb);
                embeddings = new EmbeddingsSpec(
                    Positive(emb, at, "Embeddings", "VocabSize", DefaultVocabSize),
                    Positive(emb, at, "Embeddings", "MaxPositions", DefaultMaxPositions),
                    Positive(emb, at, "Embeddings", "TypeVocabSize", DefaultTypeVocabSize),
                    Positive(emb, at, "Embeddings", "Hidden", 0),
                    Epsilon(emb, at, "Embeddings", "LayerNormEps"),
                    Probability(emb, at, "Embeddings", "Dropout"));
            }

            EncoderSpec? encoder = null;
            if (enc is not null)
            {
                var at = Where(enc);
                encoder = new EncoderSpec(
                    Positive(enc, at, "EncoderLayer", "Heads", 0),
                    Positive(enc, at, "EncoderLayer", "Intermediate", 0),
                    Activation(enc, at, "EncoderLayer"),
                    Probability(enc, at, "EncoderLayer", "AttentionDropout"),
                    Probability(enc, at, "EncoderLayer", "HiddenDropout"),
                    Epsilon(enc, at, "EncoderLayer", "LayerNormEps"));
                if (!Named(enc, "PostLayerNorm", true))
                    Report(DiagnosticDescriptors.PreLayerNormUnsupported, at, _name);
            }

            int layers = 0;
            if (rep is not null)
            {
                layers = rep.ConstructorArguments.Length == 1 && rep.ConstructorArguments[0].Value is int n ? n : 0;
                if (layers <= 0) Report(DiagnosticDescriptors.NonPositiveSize, Where(rep), _name, "Repeat.Count", layers);
            }

            if (embeddings is not null && encoder is not null && emb is not null && enc is not null)
            {
                // HuggingFace's BertConfig has one layer_norm_eps and one hidden_dropout_prob for the embeddings
                // and the layers: a value set on either attribute is the model's; set on both, they must agree.
                double eps = Unified(emb, enc, "LayerNormEps", DefaultEps, embeddings.LayerNormEps, encoder.LayerNormEps);
                double dropout = Unified(emb, enc, ("Dropout", "HiddenDropout"), DefaultDropout, embeddings.Dropout, encoder.HiddenDropout);
                embeddings = embeddings with { LayerNormEps = eps, Dropout = dropout };
                encoder = encoder with { LayerNormEps = eps, HiddenDropout = dropout };
            }

            if (embeddings is not null && encoder is not null && embeddings.Hidden > 0 && encoder.Heads > 0 &&
                embeddings.Hidden % encoder.Heads != 0)
                Report(DiagnosticDescriptors.HiddenNotDivisibleByHeads, Where(enc), _name, embeddings.Hidden, encoder.Heads);

            bool pooler = attributes.ContainsKey("PoolerAttribute");
            bool nsp = attributes.ContainsKey("NspHeadAttribute");
            bool span = attributes.ContainsKey("SpanHeadAttribute");

            MlmSpec? mlm = null;
            var mlmAttr = Get(attributes, "MlmHeadAttribute");
            if (mlmAttr is not null)
            {
                var at = Where(mlmAttr);
                int declared = Named(mlmAttr, "TransformSize", 0);
                if (declared < 0) Report(DiagnosticDescriptors.NonPositiveSize, at, _name, "MlmHead.TransformSize", declared);
                int hidden = embeddings?.Hidden ?? 0;
                int width = declared == 0 ? hidden : declared;
                bool tied = Named(mlmAttr, "TieToWordEmbeddings", true);
                if (tied && embeddings is not null && width > 0 && hidden > 0 && width != hidden)
                    Report(DiagnosticDescriptors.TiedShapeMismatch, at, _name, embeddings.VocabSize, width, embeddings.VocabSize, hidden);
                mlm = new MlmSpec(tied, Activation(mlmAttr, at, "MlmHead"), width);
            }

            var classification = Classifier(attributes, "ClassificationHead");
            var tokenClassification = Classifier(attributes, "TokenClassificationHead");

            if (!pooler)
            {
                if (nsp) Missing(Where(attributes["NspHeadAttribute"]), "[NspHead] reads the pooled [CLS] output and requires [Pooler]");
                if (classification is not null) Missing(Where(attributes["ClassificationHeadAttribute"]), "[ClassificationHead] reads the pooled [CLS] output and requires [Pooler]");
            }

            var tasks = new List<string>();
            if (classification is not null) tasks.Add("[ClassificationHead]");
            if (tokenClassification is not null) tasks.Add("[TokenClassificationHead]");
            if (span) tasks.Add("[SpanHead]");
            if (tasks.Count > 1)
                Report(DiagnosticDescriptors.ConflictingAttributes, modelLocation, _name,
                    string.Join(" and ", tasks) + " cannot be combined: a model has at most one fine-tuning task head (they share the classifier, its labels and its loss slot)");

            var modelType = bertModel is not null && Named<string?>(bertModel, "ModelType", null) is { } mt ? mt : "bert";

            if (_erroneous || _diagnostics.Count > 0 || embeddings is null || encoder is null)
                return new ParseResult(null, _diagnostics.ToEquatableArray());

            var spec = new ModelSpec(Location(), modelType, embeddings, encoder, layers, pooler, mlm, nsp,
                classification, tokenClassification, span);
            return new ParseResult(spec, EquatableArray<DiagnosticInfo>.Empty);
        }

        private double Unified(AttributeData emb, AttributeData enc, string property, double fallback, double embValue, double encValue) =>
            Unified(emb, enc, (property, property), fallback, embValue, encValue);

        private double Unified(AttributeData emb, AttributeData enc, (string Embeddings, string Encoder) property, double fallback, double embValue, double encValue)
        {
            bool embSet = IsSet(emb, property.Embeddings), encSet = IsSet(enc, property.Encoder);
            if (embSet && encSet && embValue != encValue)
                Report(DiagnosticDescriptors.ConflictingAttributes, Where(emb), _name,
                    "Embeddings." + property.Embeddings + " (" + Format.Value(embValue) + ") and EncoderLayer." + property.Encoder + " (" + Format.Value(encValue) +
                    ") differ; HuggingFace's BertConfig has one value for both: set it on one attribute");
            return encSet ? encValue : embSet ? embValue : fallback;
        }

        private static bool IsSet(AttributeData attribute, string property)
        {
            foreach (var arg in attribute.NamedArguments)
                if (arg.Key == property) return true;
            return false;
        }

        private ClassifierSpec? Classifier(Dictionary<string, AttributeData> attributes, string name)
        {
            var a = Get(attributes, name + "Attribute");
            if (a is null) return null;
            var at = Where(a);
            return new ClassifierSpec(Positive(a, at, name, "Labels", DefaultLabels), Probability(a, at, name, "Dropout"));
        }

        private void CheckPartial(LocationInfo? location)
        {
            for (var t = type; t is not null; t = t.ContainingType)
            {
                bool partial = t.DeclaringSyntaxReferences.Any(r =>
                    r.GetSyntax() is TypeDeclarationSyntax d && d.Modifiers.Any(SyntaxKind.PartialKeyword));
                if (!partial) Report(DiagnosticDescriptors.NotPartial, location, _name, t.ToDisplayString());
            }
        }

        private TypeLocation Location()
        {
            var containing = new List<string>();
            for (var t = type.ContainingType; t is not null; t = t.ContainingType)
            {
                var kind = t.TypeKind switch
                {
                    TypeKind.Struct => t.IsRecord ? "partial record struct" : "partial struct",
                    TypeKind.Interface => "partial interface",
                    _ => t.IsRecord ? "partial record" : "partial class",
                };
                containing.Insert(0, kind + " " + t.Name);
            }
            var ns = type.ContainingNamespace is { IsGlobalNamespace: false } n ? n.ToDisplayString() : "";
            return new TypeLocation(ns, containing.ToEquatableArray(), type.Name);
        }

        private static AttributeData? Get(Dictionary<string, AttributeData> attributes, string name) =>
            attributes.TryGetValue(name, out var a) ? a : null;

        private static LocationInfo? Where(AttributeData? attribute) =>
            LocationInfo.From(attribute?.ApplicationSyntaxReference?.GetSyntax().GetLocation());

        private static T Named<T>(AttributeData attribute, string property, T fallback)
        {
            foreach (var arg in attribute.NamedArguments)
                if (arg.Key == property && arg.Value.Value is T value) return value;
            return fallback;
        }

        private int Positive(AttributeData attribute, LocationInfo? at, string owner, string property, int fallback)
        {
            int value = Named(attribute, property, fallback);
            if (value <= 0) Report(DiagnosticDescriptors.NonPositiveSize, at, _name, owner + "." + property, value);
            return value;
        }

        private double Probability(AttributeData attribute, LocationInfo? at, string owner, string property)
        {
            double value = Named(attribute, property, DefaultDropout);
            if (!(value >= 0 && value < 1))
                Report(DiagnosticDescriptors.ValueOutOfRange, at, _name, owner + "." + property, value, "a dropout probability must be in [0, 1)");
            return value;
        }

        private double Epsilon(AttributeData attribute, LocationInfo? at, string owner, string property)
        {
            double value = Named(attribute, property, DefaultEps);
            if (!(value > 0 && value < 1))
                Report(DiagnosticDescriptors.ValueOutOfRange, at, _name, owner + "." + property, value, "a LayerNorm epsilon must be in (0, 1)");
            return value;
        }

        /// <summary>Bert.Dsl.HiddenActivation (Gelu 0, GeluTanh 1, Relu 2) as a Bert.Runtime.Activation member name.</summary>
        private string Activation(AttributeData attribute, LocationInfo? at, string owner)
        {
            int value = Named(attribute, "Activation", 0);
            switch (value)
            {
                case 0: return "Gelu";
                case 1: return "GeluTanh";
                case 2: return "Relu";
                default:
                    Report(DiagnosticDescriptors.ValueOutOfRange, at, _name, owner + ".Activation", value, "it must be a HiddenActivation member (Gelu, GeluTanh, Relu)");
                    return "Gelu";
            }
        }

        private void Missing(LocationInfo? at, string what) => Report(DiagnosticDescriptors.MissingAttribute, at, _name, what);

        private void Report(DiagnosticDescriptor descriptor, LocationInfo? at, params object[] args) =>
            _diagnostics.Add(DiagnosticInfo.Create(descriptor, at, args));
    }
}
