namespace Bert.Native;

/// <summary>
/// Page-locked host memory the device copies from directly (<see cref="CudaBackend.UploadAsync{T}"/>):
/// fill <see cref="Span"/>, queue the upload, and call <see cref="WaitForTransfers"/> before refilling.
/// A batch loader keeps two and alternates, so filling one overlaps the copy of the other.
/// </summary>
public sealed unsafe class CudaPinnedBuffer<T> : IDisposable where T : unmanaged
{
    private readonly IDeviceApi _api;
    private nint _pointer;

    internal CudaPinnedBuffer(IDeviceApi api, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _api = api;
        Length = length;
        _pointer = api.AllocatePinned((long)length * sizeof(T));
        try
        {
            TransferEvent = api.CreateEvent();
        }
        catch
        {
            api.FreePinned(_pointer);
            throw;
        }
    }

    public int Length { get; }

    internal nint Pointer => _pointer != 0 ? _pointer : throw new ObjectDisposedException(nameof(CudaPinnedBuffer<T>));

    /// <summary>Recorded on the stream after each upload from this buffer.</summary>
    internal nint TransferEvent { get; }

    public Span<T> Span => new((void*)Pointer, Length);

    /// <summary>Waits until every upload queued from this buffer has read it.</summary>
    public void WaitForTransfers() => _api.SynchronizeEvent(TransferEvent);

    public void Dispose()
    {
        if (_pointer == 0) return;
        _api.SynchronizeEvent(TransferEvent);
        _api.DestroyEvent(TransferEvent);
        _api.FreePinned(_pointer);
        _pointer = 0;
    }
}
