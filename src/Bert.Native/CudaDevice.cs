using System.Text;
using Bert.Native.Interop;
using static Bert.Native.CudaCheck;

namespace Bert.Native;

/// <summary>What the backend needs to know about a device (or an emulated one in tests).</summary>
public sealed record CudaDeviceInfo
{
    public required int Ordinal { get; init; }
    public required string Name { get; init; }
    public required int ComputeMajor { get; init; }
    public required int ComputeMinor { get; init; }
    public required long TotalMemory { get; init; }
    public int Multiprocessors { get; init; } = 1;
    public int MaxThreadsPerBlock { get; init; } = 1024;
    public int MaxGridX { get; init; } = int.MaxValue;
    public int MaxGridY { get; init; } = 65535;
    public int MaxGridZ { get; init; } = 65535;
    public int MaxSharedMemoryPerBlock { get; init; } = 48 * 1024;
    /// <summary>Driver API version, e.g. 12040 for CUDA 12.4 (0 when emulated).</summary>
    public int DriverVersion { get; init; }

    /// <summary>"8.0" style.</summary>
    public string ComputeCapability => $"{ComputeMajor}.{ComputeMinor}";

    public override string ToString() =>
        $"cuda:{Ordinal} ({Name}, sm_{ComputeMajor}{ComputeMinor}, {CudaOutOfMemoryException.Bytes(TotalMemory)})";
}

/// <summary>Finds NVIDIA GPUs through the driver API. Never throws for a missing driver or device:
/// <see cref="IsAvailable"/> says why instead.</summary>
public static unsafe class CudaDevice
{
    private static readonly object Gate = new();
    private static bool _initialized;

    /// <summary>True when the driver loads, initializes and reports at least one device; otherwise
    /// <paramref name="reason"/> says what is missing (no driver library, no device, driver too old…).</summary>
    public static bool IsAvailable(out string reason)
    {
        try
        {
            if (!NativeLibraries.TryLoad(NativeLibraries.Cuda, out _, out var where))
            {
                reason = $"no NVIDIA GPU available: {where}";
                return false;
            }
            var status = Initialize();
            if (status != CUresult.CUDA_SUCCESS)
            {
                reason = status == CUresult.CUDA_ERROR_NO_DEVICE
                    ? "no NVIDIA GPU available: the driver is installed but reports no CUDA device"
                    : $"no NVIDIA GPU available: cuInit failed with {ErrorName(status)} ({ErrorString(status)})";
                return false;
            }
            var countStatus = CuDriver.cuDeviceGetCount(out int count);
            if (countStatus != CUresult.CUDA_SUCCESS || count == 0)
            {
                reason = countStatus != CUresult.CUDA_SUCCESS
                    ? $"no NVIDIA GPU available: cuDeviceGetCount failed with {ErrorName(countStatus)}"
                    : "no NVIDIA GPU available: the driver reports no CUDA device";
                return false;
            }
            reason = "";
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            reason = $"no NVIDIA GPU available: the CUDA driver library could not be used ({e.Message})";
            return false;
        }
    }

    /// <summary>Every device the driver reports. Throws <see cref="CudaException"/> when none is available.</summary>
    public static IReadOnlyList<CudaDeviceInfo> Enumerate()
    {
        if (!IsAvailable(out var reason)) throw new CudaException(reason);
        Check(CuDriver.cuDeviceGetCount(out int count));
        var list = new List<CudaDeviceInfo>(count);
        for (int i = 0; i < count; i++) list.Add(Query(i));
        return list;
    }

    /// <summary>Properties of device <paramref name="ordinal"/> (the driver must be initialized).</summary>
    internal static CudaDeviceInfo Query(int ordinal)
    {
        Check(CuDriver.cuDeviceGet(out int device, ordinal));
        var name = stackalloc byte[256];
        Check(CuDriver.cuDeviceGetName(name, 256, device));
        Check(CuDriver.cuDeviceTotalMem(out nuint total, device));
        Check(CuDriver.cuDriverGetVersion(out int driver));
        return new CudaDeviceInfo
        {
            Ordinal = ordinal,
            Name = Encoding.UTF8.GetString(name, IndexOfZero(name, 256)),
            ComputeMajor = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            ComputeMinor = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            TotalMemory = (long)total,
            Multiprocessors = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            MaxThreadsPerBlock = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
            MaxGridX = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X),
            MaxGridY = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y),
            MaxGridZ = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z),
            MaxSharedMemoryPerBlock = Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK),
            DriverVersion = driver,
        };
    }

    /// <summary>The number of devices the driver reports (0 without a usable driver).</summary>
    public static int Count() => IsAvailable(out _) && CuDriver.cuDeviceGetCount(out int count) == CUresult.CUDA_SUCCESS ? count : 0;

    /// <summary>Device <paramref name="ordinal"/>'s 16-byte UUID, as nvidia-smi -L prints it (GPU-…); unique across machines.</summary>
    public static byte[] Uuid(int ordinal)
    {
        if (!IsAvailable(out var reason)) throw new CudaException(reason);
        Check(CuDriver.cuDeviceGet(out int device, ordinal));
        var uuid = new byte[16];
        fixed (byte* p = uuid) Check(CuDriver.cuDeviceGetUuid(p, device));
        return uuid;
    }

    internal static CUresult Initialize()
    {
        lock (Gate)
        {
            if (_initialized) return CUresult.CUDA_SUCCESS;
            var status = CuDriver.cuInit(0);
            _initialized = status == CUresult.CUDA_SUCCESS;
            return status;
        }
    }

    private static int Attribute(int device, CUdevice_attribute attribute)
    {
        Check(CuDriver.cuDeviceGetAttribute(out int value, attribute, device));
        return value;
    }

    private static int IndexOfZero(byte* p, int length)
    {
        for (int i = 0; i < length; i++) if (p[i] == 0) return i;
        return length;
    }
}
