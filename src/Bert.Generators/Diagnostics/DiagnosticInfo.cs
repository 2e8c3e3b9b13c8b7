using System;
using Bert.Generators.Helpers;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Bert.Generators.Diagnostics;

/// <summary>Where a diagnostic points, as plain values (a <see cref="Location"/> holds a syntax tree).</summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    public Location ToLocation() => Location.Create(FilePath, Span, LineSpan);

    public static LocationInfo? From(Location? location) =>
        location is null || location.SourceTree is null
            ? null
            : new LocationInfo(location.SourceTree.FilePath, location.SourceSpan, location.GetLineSpan().Span);
}

/// <summary>A diagnostic as an equatable value: the descriptor's id, the location and the message arguments as strings.</summary>
internal sealed record DiagnosticInfo(string Id, LocationInfo? Location, EquatableArray<string> Arguments)
{
    public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, LocationInfo? location, params object[] arguments)
    {
        var text = new string[arguments.Length];
        for (int i = 0; i < arguments.Length; i++) text[i] = Format.Value(arguments[i]);
        return new DiagnosticInfo(descriptor.Id, location, text.ToEquatableArray());
    }

    public Diagnostic ToDiagnostic()
    {
        var descriptor = Descriptor(Id);
        var args = new object[Arguments.Count];
        for (int i = 0; i < args.Length; i++) args[i] = Arguments[i];
        return Diagnostic.Create(descriptor, Location?.ToLocation(), args);
    }

    private static DiagnosticDescriptor Descriptor(string id) => id switch
    {
        "BERT001" => DiagnosticDescriptors.HiddenNotDivisibleByHeads,
        "BERT002" => DiagnosticDescriptors.NonPositiveSize,
        "BERT003" => DiagnosticDescriptors.NotPartial,
        "BERT004" => DiagnosticDescriptors.TiedShapeMismatch,
        "BERT005" => DiagnosticDescriptors.MissingAttribute,
        "BERT006" => DiagnosticDescriptors.ConflictingAttributes,
        "BERT007" => DiagnosticDescriptors.PreLayerNormUnsupported,
        "BERT008" => DiagnosticDescriptors.ValueOutOfRange,
        _ => throw new ArgumentOutOfRangeException(nameof(id), id, "unknown Bert diagnostic id"),
    };
}
