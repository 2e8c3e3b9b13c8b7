using Bert.Runtime;

namespace Bert.Native;

/// <summary>C type of one kernel parameter, as cuLaunchKernel must marshal it.</summary>
public enum KernelArgKind : byte
{
    /// <summary>Any pointer (8 bytes).</summary>
    Pointer,
    /// <summary><c>int</c>.</summary>
    Int32,
    /// <summary><c>unsigned int</c>.</summary>
    UInt32,
    /// <summary><c>long long</c>.</summary>
    Int64,
    /// <summary><c>unsigned long long</c>.</summary>
    UInt64,
    /// <summary><c>float</c>.</summary>
    Float32,
}

public static class KernelArgKinds
{
    /// <summary>Bytes the kernel reads for an argument of this kind.</summary>
    public static int Size(this KernelArgKind kind) => kind is KernelArgKind.Int32 or KernelArgKind.UInt32 or KernelArgKind.Float32 ? 4 : 8;
}

/// <summary>One declared parameter of a kernel: its name in the .cu source and its C type.</summary>
public readonly record struct KernelParam(string Name, KernelArgKind Kind)
{
    public override string ToString() => $"{Kind} {Name}";
}

/// <summary>A kernel as the launchers know it: entry name, source file, parameters in order and, where
/// the kernel's indexing assumes one, the only block shape it may be launched with.</summary>
public sealed class KernelSpec
{
    internal KernelSpec(int index, string file, string name, (uint X, uint Y)? fixedBlock, KernelParam[] parameters)
    {
        Index = index;
        File = file;
        Name = name;
        FixedBlock = fixedBlock is { } b ? new Dim3(b.X, b.Y, 1) : null;
        Parameters = parameters;
    }

    /// <summary>Position in <see cref="KernelCatalog.All"/> (the launcher's function table index).</summary>
    public int Index { get; }
    public string File { get; }
    public string Name { get; }
    public Dim3? FixedBlock { get; }
    public IReadOnlyList<KernelParam> Parameters { get; }

    public override string ToString() => $"{Name}({string.Join(", ", Parameters)}) in {File}";
}

/// <summary>
/// Every kernel of Kernels/*.cu with its parameter list. Launchers pass <see cref="KernelArg"/>s that
/// carry the parameter's name and kind, and every launch is checked against this table; tests check this
/// table against the .cu declarations (names and C types) and against the PTX <c>.entry</c> parameters
/// NVRTC emits (count, sizes, float vs integer), so a marshalling mistake fails without a GPU.
/// </summary>
public static class KernelCatalog
{
    private static readonly List<KernelSpec> Specs = [];

    private static KernelParam P(string name) => new(name, KernelArgKind.Pointer);
    private static KernelParam I(string name) => new(name, KernelArgKind.Int32);
    private static KernelParam U(string name) => new(name, KernelArgKind.UInt32);
    private static KernelParam L(string name) => new(name, KernelArgKind.Int64);
    private static KernelParam F(string name) => new(name, KernelArgKind.Float32);

    /// <summary>The six dropout parameters every dropout-aware kernel ends with: the Philox counter the kernel uses is
    /// step + *stepBase, stepBase a device uint (zero, or the dropout counter of a captured step's scalars).</summary>
    private static readonly KernelParam[] DropoutParams =
        [F("dropP"), F("dropScale"), new("seed", KernelArgKind.UInt64), U("step"), U("stream"), P("stepBase")];

    private static KernelSpec Def(string file, string name, (uint, uint)? block, params KernelParam[] parameters)
    {
        var spec = new KernelSpec(Specs.Count, file, name, block, parameters);
        Specs.Add(spec);
        return spec;
    }

    private static KernelParam[] WithDropout(params KernelParam[] parameters) => [.. parameters, .. DropoutParams];

    /// <summary>Threads per block of the one-warp-per-row kernels (8 rows per block).</summary>
    public const int RowBlock = 256;

    // ---- elementwise.cu ----
    public static readonly KernelSpec ConvertDtype = Def("elementwise.cu", "convert_dtype", null,
        P("out"), I("outType"), P("in"), I("inType"), L("count"));
    public static readonly KernelSpec DropoutForward = Def("elementwise.cu", "dropout_forward", null,
        WithDropout(P("out"), I("outType"), P("in"), I("inType"), L("count")));
    public static readonly KernelSpec BroadcastBias = Def("elementwise.cu", "broadcast_bias", null,
        P("out"), I("outType"), P("bias"), L("rows"), I("cols"));
    public static readonly KernelSpec ActivationForward = Def("elementwise.cu", "activation_forward", null,
        P("out"), I("outType"), P("pre"), I("preType"), L("count"), I("activation"));
    public static readonly KernelSpec ActivationBackward = Def("elementwise.cu", "activation_backward", null,
        P("dPre"), I("dPreType"), P("dOut"), I("dOutType"), P("pre"), I("preType"), L("count"), I("activation"));

    // ---- layernorm.cu ----
    public static readonly KernelSpec LayerNormForward = Def("layernorm.cu", "layernorm_forward", (RowBlock, 1),
        P("out"), I("outType"), P("mean"), P("rstd"), P("in"), I("inType"), P("gamma"), P("beta"),
        I("rows"), I("hidden"), F("eps"));
    public static readonly KernelSpec ResidualLayerNormForward = Def("layernorm.cu", "residual_layernorm_forward", (RowBlock, 1),
        WithDropout(P("out"), I("outType"), P("sum"), I("sumType"), P("mean"), P("rstd"),
            P("residual"), I("residualType"), P("branch"), I("branchType"), P("gamma"), P("beta"),
            I("rows"), I("hidden"), F("eps")));
    public static readonly KernelSpec LayerNormBackward = Def("layernorm.cu", "layernorm_backward", (RowBlock, 1),
        WithDropout(P("dIn"), I("dInType"), P("dOut"), I("dOutType"), P("in"), I("inType"),
            P("mean"), P("rstd"), P("gamma"), I("rows"), I("hidden")));
    public static readonly KernelSpec ResidualLayerNormBackward = Def("layernorm.cu", "residual_layernorm_backward", (RowBlock, 1),
        WithDropout(P("dResidual"), I("dResidualType"), P("dBranch"), I("dBranchType"), P("dOut"), I("dOutType"),
            P("in"), I("inType"), P("mean"), P("rstd"), P("gamma"), I("rows"), I("hidden")));
    private static readonly KernelParam[] LayerNormBackwardFusedParams = WithDropout(P("dIn"), I("dInType"), P("dBranch"), I("dBranchType"),
        P("dOut"), I("dOutType"), P("in"), I("inType"), P("mean"), P("rstd"), P("gamma"), P("partial"), I("rows"), I("hidden"), I("rowsPerChunk"));
    /// <summary>H ≤ 768; <see cref="LayerNormBackwardFusedWide"/> for 768 &lt; H ≤ 1024.</summary>
    public static readonly KernelSpec LayerNormBackwardFused = Def("layernorm.cu", "layernorm_backward_fused", (RowBlock, 1),
        LayerNormBackwardFusedParams);
    public static readonly KernelSpec LayerNormBackwardFusedWide = Def("layernorm.cu", "layernorm_backward_fused_wide", (RowBlock, 1),
        LayerNormBackwardFusedParams);
    public static readonly KernelSpec LayerNormParamGradPartial = Def("layernorm.cu", "layernorm_param_grad_partial", (32, 8),
        WithDropout(P("partial"), P("dOut"), I("dOutType"), P("in"), I("inType"), P("mean"), P("rstd"),
            I("rows"), I("hidden"), I("rowsPerChunk")));

    // ---- reduce.cu ----
    public static readonly KernelSpec ColumnSumPartial = Def("reduce.cu", "column_sum_partial", (32, 8),
        P("partial"), P("in"), I("inType"), I("rows"), L("cols"), I("rowsPerChunk"), P("filterIds"), I("filterValue"), L("ld"));
    public static readonly KernelSpec ReducePartials = Def("reduce.cu", "reduce_partials", null,
        P("out0"), P("out1"), P("partial"), I("chunks"), I("outputs"), L("cols"));

    // ---- embeddings.cu ----
    public static readonly KernelSpec EmbeddingsForward = Def("embeddings.cu", "embeddings_forward", (RowBlock, 1),
        WithDropout(P("out"), I("outType"), P("sum"), I("sumType"), P("mean"), P("rstd"),
            P("inputIds"), P("tokenTypeIds"), P("wordEmb"), P("posEmb"), P("typeEmb"), P("gamma"), P("beta"),
            I("tokens"), I("seq"), I("hidden"), I("vocab"), I("typeVocab"), I("maxPositions"), F("eps")));
    public static readonly KernelSpec EmbeddingScatterAdd = Def("embeddings.cu", "embedding_scatter_add", (256, 1),
        P("table"), P("dRows"), P("ids"), I("tokens"), I("hidden"), I("vocab"));

    // ---- attention.cu ----
    public static readonly KernelSpec AttentionSplitHeads = Def("attention.cu", "attention_split_heads", null,
        P("q"), P("k"), P("v"), I("outType"), P("in"), I("inType"),
        I("batch"), I("seq"), I("heads"), I("headDim"), I("parts"));
    public static readonly KernelSpec AttentionMergeHeads = Def("attention.cu", "attention_merge_heads", null,
        P("out"), I("outType"), P("q"), P("k"), P("v"), I("inType"),
        I("batch"), I("seq"), I("heads"), I("headDim"), I("parts"));
    public static readonly KernelSpec AttentionSoftmaxForward = Def("attention.cu", "attention_softmax_forward", (RowBlock, 1),
        WithDropout(P("probs"), I("probsType"), P("dropped"), I("droppedType"), P("mask"), I("batch"), I("heads"), I("seq")));
    public static readonly KernelSpec AttentionSoftmaxBackward = Def("attention.cu", "attention_softmax_backward", (RowBlock, 1),
        WithDropout(P("dScores"), I("dScoresType"), P("probs"), I("probsType"), I("batch"), I("heads"), I("seq")));

    // ---- flash_attention.cu ----
    public static readonly KernelSpec FlashAttentionForward = Def("flash_attention.cu", "flash_attention_forward", (FlashBlock, 1),
        WithDropout(P("context"), P("lse"), P("qkv"), P("mask"), I("batch"), I("seq"), I("heads"), F("scale")));

    public static readonly KernelSpec FlashAttentionBackwardDkDv = Def("flash_attention_backward.cu", "flash_attention_backward_dkdv", (FlashBlock, 1),
        WithDropout(P("dQkv"), I("dQkvType"), P("dContext"), P("context"), P("lse"), P("qkv"), P("mask"),
            I("batch"), I("seq"), I("heads"), F("scale")));
    public static readonly KernelSpec FlashAttentionBackwardDq = Def("flash_attention_backward.cu", "flash_attention_backward_dq", (FlashBlock, 1),
        WithDropout(P("dQkv"), I("dQkvType"), P("dContext"), P("context"), P("lse"), P("qkv"), P("mask"),
            I("batch"), I("seq"), I("heads"), F("scale")));

    /// <summary>Threads per block of the flash-attention kernels (4 warps × 16 query rows).</summary>
    public const int FlashBlock = 128;

    /// <summary>Query rows per block of the flash-attention kernels.</summary>
    public const int FlashRows = 64;

    // ---- gather.cu ----
    public static readonly KernelSpec GatherRows = Def("gather.cu", "gather_rows", null,
        P("out"), I("outType"), P("in"), I("inType"), P("positions"), I("batch"), I("seq"), I("count"), I("hidden"));
    public static readonly KernelSpec ScatterAddRows = Def("gather.cu", "scatter_add_rows", (128, 1),
        P("dIn"), I("dInType"), P("dOut"), I("dOutType"), P("positions"), I("batch"), I("seq"), I("count"), I("hidden"));

    // ---- loss.cu ----
    public static readonly KernelSpec SoftmaxXentForwardBackward = Def("loss.cu", "softmax_xent_forward_backward", (256, 1),
        P("dLogits"), I("dLogitsType"), P("partial"), P("logits"), I("logitsType"), P("labels"), P("weights"),
        I("rows"), I("classes"), I("stride"), F("gradScale"), P("gradScaleOnDevice"));
    public static readonly KernelSpec SoftmaxXentFinish = Def("loss.cu", "softmax_xent_finish", (32, 1),
        P("stats"), P("partial"), I("blocks"));

    // ---- optimizer.cu ----
    public static readonly KernelSpec SquaredNormPartial = Def("optimizer.cu", "squared_norm_partial", (256, 1),
        P("partial"), P("in"), I("inType"), L("count"));
    public static readonly KernelSpec SquaredNormFinish = Def("optimizer.cu", "squared_norm_finish", (32, 1),
        P("result"), P("partial"), I("blocks"));
    public static readonly KernelSpec AdamWStep = Def("optimizer.cu", "adamw_step", null,
        P("param"), P("shadow"), P("m"), P("v"), P("grad"), P("normSquared"), L("count"),
        F("lr"), F("beta1"), F("beta2"), F("eps"), F("weightDecay"), F("bc1"), F("bc2"), F("maxNorm"));
    public static readonly KernelSpec AdamWDevice = Def("optimizer.cu", "adamw_device", null,
        P("param"), P("shadow"), P("m"), P("v"), P("grad"), P("normSquared"), P("scalars"), L("count"),
        F("beta1"), F("beta2"), F("eps"), F("weightDecay"), F("maxNorm"));

    /// <summary>Every kernel, in <see cref="KernelSpec.Index"/> order.</summary>
    public static IReadOnlyList<KernelSpec> All => Specs;

    /// <summary>The kernel source files (Kernels/*.cu), each compiled to one module.</summary>
    public static IReadOnlyList<string> Files { get; } = Specs.Select(s => s.File).Distinct().Order(StringComparer.Ordinal).ToArray();

    /// <summary>The header every kernel file includes.</summary>
    public const string CommonHeader = "common.cuh";
}

/// <summary>Grid or block dimensions.</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    public long Volume => (long)X * Y * Z;

    public override string ToString() => $"({X}, {Y}, {Z})";
}

/// <summary>One kernel argument: the parameter name it is meant for (checked against the catalog at
/// launch), its C type, and its value's bits (little-endian; 4-byte kinds use the low half).</summary>
public readonly struct KernelArg
{
    private KernelArg(string name, KernelArgKind kind, ulong bits)
    {
        Name = name;
        Kind = kind;
        Bits = bits;
    }

    public string Name { get; }
    public KernelArgKind Kind { get; }
    public ulong Bits { get; }

    public static KernelArg Ptr(string name, TensorRef tensor) => new(name, KernelArgKind.Pointer, tensor.Address);
    public static KernelArg Ptr(string name, ulong address) => new(name, KernelArgKind.Pointer, address);
    public static KernelArg I32(string name, int value) => new(name, KernelArgKind.Int32, (uint)value);
    public static KernelArg U32(string name, uint value) => new(name, KernelArgKind.UInt32, value);
    public static KernelArg I64(string name, long value) => new(name, KernelArgKind.Int64, (ulong)value);
    public static KernelArg U64(string name, ulong value) => new(name, KernelArgKind.UInt64, value);
    public static KernelArg F32(string name, float value) => new(name, KernelArgKind.Float32, BitConverter.SingleToUInt32Bits(value));

    /// <summary>The (pointer, type) convention's type flag: 0 for F32, 1 for BF16.</summary>
    public static KernelArg Type(string name, TensorRef tensor) => tensor.DType switch
    {
        DType.F32 => I32(name, 0),
        DType.BF16 => I32(name, 1),
        _ => throw new ArgumentException($"{name}: a {tensor.DType} tensor where F32 or BF16 activations are expected", name),
    };

    public static KernelArg DropP(in DropoutSpec d) => F32("dropP", d.Active ? d.Probability : 0f);
    public static KernelArg DropScale(in DropoutSpec d) => F32("dropScale", d.Active ? d.Scale : 1f);
    public static KernelArg Seed(in DropoutSpec d) => U64("seed", d.Seed);
    public static KernelArg Step(in DropoutSpec d) => U32("step", d.Step);
    public static KernelArg Stream(in DropoutSpec d) => U32("stream", d.Stream);

    public override string ToString() => Kind switch
    {
        KernelArgKind.Pointer => $"{Name}=0x{Bits:x}",
        KernelArgKind.Float32 => $"{Name}={BitConverter.UInt32BitsToSingle((uint)Bits)}",
        KernelArgKind.Int32 => $"{Name}={(int)(uint)Bits}",
        KernelArgKind.Int64 => $"{Name}={(long)Bits}",
        _ => $"{Name}={Bits}",
    };

    /// <summary>Throws unless <paramref name="args"/> match <paramref name="kernel"/>'s parameters one to one
    /// (names and kinds) and the launch shape is one the kernel and device accept.</summary>
    public static void Validate(KernelSpec kernel, Dim3 grid, Dim3 block, ReadOnlySpan<KernelArg> args, CudaDeviceInfo device)
    {
        var expected = kernel.Parameters;
        if (args.Length != expected.Count)
            throw new InvalidOperationException(
                $"launch of {kernel.Name}: {args.Length} arguments passed, the kernel declares {expected.Count} ({kernel})");
        for (int i = 0; i < args.Length; i++)
        {
            if (!string.Equals(args[i].Name, expected[i].Name, StringComparison.Ordinal) || args[i].Kind != expected[i].Kind)
                throw new InvalidOperationException(
                    $"launch of {kernel.Name}: argument {i} is {args[i].Kind} '{args[i].Name}' but the kernel declares {expected[i]}");
        }
        if (kernel.FixedBlock is { } fixedBlock && fixedBlock != block)
            throw new InvalidOperationException($"launch of {kernel.Name}: block {block}, the kernel's indexing assumes {fixedBlock}");
        if (block.X == 0 || block.Y == 0 || block.Z == 0 || block.Volume > device.MaxThreadsPerBlock || block.Volume % 32 != 0)
            throw new InvalidOperationException(
                $"launch of {kernel.Name}: block {block} must hold a positive multiple of 32 threads, at most {device.MaxThreadsPerBlock}");
        if (grid.X == 0 || grid.Y == 0 || grid.Z == 0 || grid.X > (uint)device.MaxGridX || grid.Y > (uint)device.MaxGridY || grid.Z > (uint)device.MaxGridZ)
            throw new InvalidOperationException(
                $"launch of {kernel.Name}: grid {grid} is outside the device's limits ({device.MaxGridX}, {device.MaxGridY}, {device.MaxGridZ})");
    }
}
