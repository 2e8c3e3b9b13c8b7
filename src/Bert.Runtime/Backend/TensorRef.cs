namespace Bert.Runtime;

/// <summary>Element types a backend stores.</summary>
public enum DType : byte
{
    F32 = 0,
    BF16 = 1,
    I32 = 2,
}

public static class DTypes
{
    public static int Size(this DType t) => t switch
    {
        DType.F32 => 4,
        DType.BF16 => 2,
        DType.I32 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };
}

/// <summary>
/// A non-owning view of backend memory: an address (host pointer on the CPU backend, CUdeviceptr on
/// CUDA), an element count and the element type. Views are plain values: slicing allocates nothing.
/// </summary>
public readonly record struct TensorRef(ulong Address, long Length, DType DType)
{
    public static readonly TensorRef Null = default;

    public bool IsNull => Address == 0;

    public long Bytes => Length * DType.Size();

    /// <summary>Elements [offset, offset+length) of this view.</summary>
    public TensorRef Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"slice [{offset}, {offset + length}) is outside a tensor of {Length} elements");
        return new TensorRef(Address + (ulong)(offset * DType.Size()), length, DType);
    }

    /// <summary>Throws when this view holds fewer than <paramref name="needed"/> elements of <paramref name="type"/>.</summary>
    public void Require(long needed, DType type, string op, string argument)
    {
        if (IsNull)
            throw new ArgumentException($"{op}: {argument} is null but {needed} elements of {type} are required", argument);
        if (DType != type)
            throw new ArgumentException($"{op}: {argument} has dtype {DType}, expected {type}", argument);
        if (Length < needed)
            throw new ArgumentException($"{op}: {argument} has {Length} elements, the shape needs {needed}", argument);
    }

    public override string ToString() => IsNull ? "null" : $"{DType}[{Length}]@0x{Address:x}";
}

/// <summary>An owning allocation on a backend. Dispose releases the memory.</summary>
public abstract class DeviceBuffer : IDisposable
{
    protected DeviceBuffer(TensorRef view, string label)
    {
        View = view;
        Label = label;
    }

    /// <summary>The whole allocation as a view.</summary>
    public TensorRef View { get; }

    public string Label { get; }

    public long Length => View.Length;

    public TensorRef Slice(long offset, long length) => View.Slice(offset, length);

    public abstract void Dispose();

    public static implicit operator TensorRef(DeviceBuffer b) => b.View;
}
