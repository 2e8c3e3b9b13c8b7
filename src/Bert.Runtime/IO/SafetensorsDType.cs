using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Bert.Runtime.IO;

/// <summary>The element types of the safetensors format (its header spelling is the enum name).
/// Every one can be read (converted to F32); F32, F16 and BF16 can be written.</summary>
public enum SafetensorsDType : byte
{
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    BOOL,
}

public static class SafetensorsDTypes
{
    public static int Size(this SafetensorsDType t) => t switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 or SafetensorsDType.U32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 or SafetensorsDType.U16 => 2,
        SafetensorsDType.I8 or SafetensorsDType.U8 or SafetensorsDType.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown safetensors dtype"),
    };

    /// <summary>The header spelling, e.g. "BF16".</summary>
    public static string Name(this SafetensorsDType t) => t.ToString();

    public static bool TryParse(string text, out SafetensorsDType dtype)
    {
        foreach (var t in Enum.GetValues<SafetensorsDType>())
        {
            if (string.Equals(t.ToString(), text, StringComparison.Ordinal))
            {
                dtype = t;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    /// <summary>Whether <see cref="SafetensorsWriter"/> can produce this type from F32 data.</summary>
    public static bool IsWritableFloat(this SafetensorsDType t) =>
        t is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16;
}

/// <summary>Element conversions between the stored types and F32. Narrowing rounds to nearest, ties
/// to even (as PyTorch does); NaN stays NaN, infinities stay infinite.</summary>
public static class FloatConversions
{
    public static float BFloat16ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
            return (ushort)((bits >> 16) | 0x0040);  // quiet NaN, keeping the sign and top payload bits
        uint roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + roundingBias) >> 16);
    }

    public static void BFloat16ToSingle(Span<float> destination, ReadOnlySpan<ushort> source)
    {
        if (destination.Length != source.Length) throw new ArgumentException("lengths differ", nameof(destination));
        var d = MemoryMarshal.Cast<float, uint>(destination);
        for (int i = 0; i < source.Length; i++) d[i] = (uint)source[i] << 16;
    }

    public static void SingleToBFloat16(Span<ushort> destination, ReadOnlySpan<float> source)
    {
        if (destination.Length != source.Length) throw new ArgumentException("lengths differ", nameof(destination));
        for (int i = 0; i < source.Length; i++) destination[i] = SingleToBFloat16(source[i]);
    }

    public static void HalfToSingle(Span<float> destination, ReadOnlySpan<ushort> source)
    {
        if (destination.Length != source.Length) throw new ArgumentException("lengths differ", nameof(destination));
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(source), destination);
    }

    public static void SingleToHalf(Span<ushort> destination, ReadOnlySpan<float> source)
    {
        if (destination.Length != source.Length) throw new ArgumentException("lengths differ", nameof(destination));
        TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<ushort, Half>(destination));
    }

    /// <summary>Converts little-endian stored elements of <paramref name="type"/> to F32.</summary>
    /// <param name="destination">F32[n].</param>
    /// <param name="source">bytes[n·size].</param>
    public static void ToSingle(Span<float> destination, ReadOnlySpan<byte> source, SafetensorsDType type)
    {
        int n = destination.Length;
        if (source.Length != (long)n * type.Size())
            throw new ArgumentException($"{source.Length} bytes do not hold {n} {type} elements", nameof(source));
        switch (type)
        {
            case SafetensorsDType.F32: MemoryMarshal.Cast<byte, float>(source).CopyTo(destination); break;
            case SafetensorsDType.F16: HalfToSingle(destination, MemoryMarshal.Cast<byte, ushort>(source)); break;
            case SafetensorsDType.BF16: BFloat16ToSingle(destination, MemoryMarshal.Cast<byte, ushort>(source)); break;
            case SafetensorsDType.F64: Narrow(destination, MemoryMarshal.Cast<byte, double>(source)); break;
            case SafetensorsDType.I64: Widen(destination, MemoryMarshal.Cast<byte, long>(source)); break;
            case SafetensorsDType.I32: Widen(destination, MemoryMarshal.Cast<byte, int>(source)); break;
            case SafetensorsDType.I16: Widen(destination, MemoryMarshal.Cast<byte, short>(source)); break;
            case SafetensorsDType.I8: Widen(destination, MemoryMarshal.Cast<byte, sbyte>(source)); break;
            case SafetensorsDType.U64: Widen(destination, MemoryMarshal.Cast<byte, ulong>(source)); break;
            case SafetensorsDType.U32: Widen(destination, MemoryMarshal.Cast<byte, uint>(source)); break;
            case SafetensorsDType.U16: Widen(destination, MemoryMarshal.Cast<byte, ushort>(source)); break;
            case SafetensorsDType.U8 or SafetensorsDType.BOOL: Widen(destination, source); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "unknown safetensors dtype");
        }
    }

    /// <summary>Converts F32 to little-endian stored elements of a writable float type.</summary>
    /// <param name="destination">bytes[n·size].</param>
    /// <param name="source">F32[n].</param>
    public static void FromSingle(Span<byte> destination, ReadOnlySpan<float> source, SafetensorsDType type)
    {
        if (destination.Length != (long)source.Length * type.Size())
            throw new ArgumentException($"{destination.Length} bytes do not hold {source.Length} {type} elements", nameof(destination));
        switch (type)
        {
            case SafetensorsDType.F32: MemoryMarshal.AsBytes(source).CopyTo(destination); break;
            case SafetensorsDType.F16: SingleToHalf(MemoryMarshal.Cast<byte, ushort>(destination), source); break;
            case SafetensorsDType.BF16: SingleToBFloat16(MemoryMarshal.Cast<byte, ushort>(destination), source); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "only F32, F16 and BF16 can be written");
        }
    }

    private static void Narrow(Span<float> d, ReadOnlySpan<double> s)
    {
        for (int i = 0; i < s.Length; i++) d[i] = (float)s[i];
    }

    private static void Widen<T>(Span<float> d, ReadOnlySpan<T> s) where T : unmanaged, System.Numerics.INumberBase<T>
    {
        for (int i = 0; i < s.Length; i++) d[i] = float.CreateTruncating(s[i]);
    }
}
