using System.Text.RegularExpressions;

namespace Bert.Native;

/// <summary>A <c>.param</c> of a PTX <c>.entry</c>: its PTX type (u64, u32, f32, …) and size in bytes.</summary>
public readonly record struct PtxParam(string Type, int Size)
{
    public bool IsFloat => Type.StartsWith('f');
}

/// <summary>
/// Reads kernel signatures from the two places they are declared besides <see cref="KernelCatalog"/>:
/// the CUDA C source (<c>extern "C" __global__ void name(type name, …)</c>, exact C types) and the PTX
/// NVRTC produced (<c>.entry name(.param .u64 …)</c>, sizes and float-ness), so the catalog, and through
/// it every launch, can be checked against both.
/// </summary>
public static partial class KernelSignatures
{
    [GeneratedRegex(@"\.entry\s+([A-Za-z_][A-Za-z0-9_$]*)\s*\(([^)]*)\)", RegexOptions.CultureInvariant)]
    private static partial Regex PtxEntry();

    [GeneratedRegex(@"\.param\s+(?:\.align\s+\d+\s+)?\.([a-z]+)(\d+)\s+[A-Za-z_$][A-Za-z0-9_$]*(\[(\d+)\])?", RegexOptions.CultureInvariant)]
    private static partial Regex PtxParamPattern();

    [GeneratedRegex(@"extern\s+""C""\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\(([^)]*)\)", RegexOptions.CultureInvariant)]
    private static partial Regex SourceKernel();

    /// <summary>Every <c>.entry</c> of a PTX module with its parameters in order.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<PtxParam>> ParsePtx(string ptx)
    {
        var result = new Dictionary<string, IReadOnlyList<PtxParam>>(StringComparer.Ordinal);
        foreach (Match m in PtxEntry().Matches(ptx))
        {
            var list = new List<PtxParam>();
            foreach (Match p in PtxParamPattern().Matches(m.Groups[2].Value))
            {
                string type = p.Groups[1].Value + p.Groups[2].Value;
                int bits = int.Parse(p.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
                int size = p.Groups[4].Success
                    ? int.Parse(p.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture) * bits / 8
                    : bits / 8;
                list.Add(new PtxParam(type, size));
            }
            result[m.Groups[1].Value] = list;
        }
        return result;
    }

    /// <summary>Every <c>extern "C" __global__</c> kernel of a source file with its parameters as
    /// <see cref="KernelParam"/>s. Throws on a C type the launch marshalling does not know.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<KernelParam>> ParseSource(string source)
    {
        var withoutComments = Regex.Replace(source, @"//[^\n]*", "");
        var result = new Dictionary<string, IReadOnlyList<KernelParam>>(StringComparer.Ordinal);
        foreach (Match m in SourceKernel().Matches(withoutComments))
        {
            var list = new List<KernelParam>();
            foreach (var raw in m.Groups[2].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var text = Regex.Replace(raw, @"\s+", " ");
                int split = text.LastIndexOfAny([' ', '*']);
                if (split < 0) throw new FormatException($"kernel {m.Groups[1].Value}: cannot read parameter '{raw}'");
                string name = text[(split + 1)..].Trim();
                string type = text[..(split + 1)].Trim();
                list.Add(new KernelParam(name, KindOf(type, m.Groups[1].Value)));
            }
            result[m.Groups[1].Value] = list;
        }
        return result;
    }

    private static KernelArgKind KindOf(string cType, string kernel)
    {
        if (cType.Contains('*')) return KernelArgKind.Pointer;
        var t = cType.Replace("const ", "").Trim();
        return t switch
        {
            "int" => KernelArgKind.Int32,
            "unsigned int" => KernelArgKind.UInt32,
            "long long" => KernelArgKind.Int64,
            "unsigned long long" => KernelArgKind.UInt64,
            "float" => KernelArgKind.Float32,
            _ => throw new FormatException($"kernel {kernel}: parameter type '{cType}' has no launch marshalling"),
        };
    }

    /// <summary>Differences between the catalog's kernels of <paramref name="file"/> and a PTX module
    /// compiled from it (missing entries, parameter counts, sizes, float vs integer); empty when they agree.</summary>
    public static IReadOnlyList<string> CompareWithPtx(string file, string ptx)
    {
        var entries = ParsePtx(ptx);
        var problems = new List<string>();
        foreach (var spec in KernelCatalog.All.Where(s => s.File == file))
        {
            if (!entries.TryGetValue(spec.Name, out var ps))
            {
                problems.Add($"{file}: no .entry {spec.Name} in the PTX");
                continue;
            }
            if (ps.Count != spec.Parameters.Count)
            {
                problems.Add($"{spec.Name}: PTX has {ps.Count} parameters, the catalog {spec.Parameters.Count}");
                continue;
            }
            for (int i = 0; i < ps.Count; i++)
            {
                var want = spec.Parameters[i];
                bool wantFloat = want.Kind == KernelArgKind.Float32;
                if (ps[i].Size != want.Kind.Size() || ps[i].IsFloat != wantFloat)
                    problems.Add($"{spec.Name}: parameter {i} '{want.Name}' is .{ps[i].Type} in the PTX but {want.Kind} in the catalog");
            }
        }
        return problems;
    }
}
