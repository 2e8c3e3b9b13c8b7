using System.Runtime.InteropServices;

namespace Bert.Runtime.Cpu;

/// <summary>Host memory for <see cref="CpuBackend"/>: 64-byte aligned (one cache line, one AVX-512
/// vector), zero-filled; the view's address is the host pointer.</summary>
internal sealed unsafe class CpuBuffer : DeviceBuffer
{
    private const nuint Alignment = 64;
    private nint _memory;

    private CpuBuffer(void* memory, long length, DType type, string label)
        : base(new TensorRef((ulong)memory, length, type), label)
    {
        _memory = (nint)memory;
    }

    public static CpuBuffer Create(long length, DType type, string label)
    {
        // At least one line, so a zero-length buffer still has a non-null address (Null means "absent").
        nuint bytes = (nuint)Math.Max(checked(length * type.Size()), (long)Alignment);
        bytes = (bytes + Alignment - 1) & ~(Alignment - 1);
        void* memory = NativeMemory.AlignedAlloc(bytes, Alignment);
        NativeMemory.Clear(memory, bytes);
        return new CpuBuffer(memory, length, type, label);
    }

    public override void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~CpuBuffer() => Free();

    private void Free()
    {
        nint memory = Interlocked.Exchange(ref _memory, 0);
        if (memory != 0) NativeMemory.AlignedFree((void*)memory);
    }
}
