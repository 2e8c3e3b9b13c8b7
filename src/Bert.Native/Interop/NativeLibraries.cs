using System.Reflection;
using System.Runtime.InteropServices;

namespace Bert.Native.Interop;

/// <summary>
/// Finds the CUDA libraries for the <c>[LibraryImport]</c> declarations of this assembly. Each binding
/// names a logical library (<see cref="Cuda"/>, <see cref="Cublas"/>, <see cref="CublasLt"/>,
/// <see cref="Nvrtc"/>, <see cref="Nccl"/>); the resolver tries, in order, every directory of <c>BERT_CUDA_LIBRARY_PATH</c>
/// (colon separated) with every candidate soname, then the loader's default search path with every
/// candidate soname (NCCL also in the directories of <see cref="NcclDirectories"/>: NCCL_HOME's and a Python
/// environment's nvidia-nccl wheel). Candidates go newest first (CUDA 13, then 12; NVRTC also 11.2, Debian's CUDA 11.8
/// build, so CI can compile kernels without a GPU). A miss leaves the runtime to throw
/// <see cref="DllNotFoundException"/>; <see cref="Describe"/> says what was tried.
/// </summary>
internal static class NativeLibraries
{
    public const string Cuda = "bert-cuda";
    public const string Cublas = "bert-cublas";
    public const string CublasLt = "bert-cublaslt";
    public const string Nvrtc = "bert-nvrtc";
    public const string Nccl = "bert-nccl";

    /// <summary>Colon-separated directories searched before the loader's default path.</summary>
    public const string PathVariable = "BERT_CUDA_LIBRARY_PATH";

    private static readonly object Gate = new();
    private static readonly Dictionary<string, Result> Results = new(StringComparer.Ordinal);
    private static bool _resolverInstalled;

    private sealed record Result(nint Handle, string Path, string[] Tried);

    /// <summary>Candidate file names of a logical library, preferred first.</summary>
    public static IReadOnlyList<string> Candidates(string logical)
    {
        if (OperatingSystem.IsWindows())
        {
            return logical switch
            {
                Cuda => ["nvcuda.dll"],
                Cublas => ["cublas64_13.dll", "cublas64_12.dll"],
                CublasLt => ["cublasLt64_13.dll", "cublasLt64_12.dll"],
                Nvrtc => ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"],
                Nccl => [], // NCCL has no Windows build
                _ => throw new ArgumentException($"unknown CUDA library '{logical}'", nameof(logical)),
            };
        }
        return logical switch
        {
            Cuda => ["libcuda.so.1", "libcuda.so"],
            Cublas => ["libcublas.so.13", "libcublas.so.12"],
            CublasLt => ["libcublasLt.so.13", "libcublasLt.so.12"],
            Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"],
            Nccl => ["libnccl.so.2"],
            _ => throw new ArgumentException($"unknown CUDA library '{logical}'", nameof(logical)),
        };
    }

    /// <summary>Every path tried for <paramref name="logical"/>, in order. NVRTC and cuBLAS sonames of a CUDA
    /// major version newer than the driver supports are left out when the driver can be asked: PTX or a
    /// runtime from CUDA 13 does not load on a CUDA 12 driver.</summary>
    public static IReadOnlyList<string> SearchOrder(string logical)
    {
        var names = Candidates(logical);
        if (logical is Nvrtc or Cublas or CublasLt && DriverMajorVersion() is int driverMajor)
        {
            var usable = names.Where(n => SonameMajor(n) is not int m || m <= driverMajor).ToArray();
            if (usable.Length > 0) names = usable;
        }
        var order = new List<string>();
        // The driver library must match the kernel module: the loader's copy (the installed driver) comes
        // first; directories of the variable may hold a toolkit's forward-compatibility copy.
        if (logical == Cuda) order.AddRange(names);
        var env = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrWhiteSpace(env))
        {
            foreach (var dir in env.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                foreach (var name in names)
                    order.Add(Path.Combine(dir, name));
        }
        if (logical == Nccl)
            foreach (var dir in NcclDirectories(Environment.GetEnvironmentVariable))
                foreach (var name in names)
                    order.Add(Path.Combine(dir, name));
        if (logical != Cuda) order.AddRange(names);
        return order;
    }

    /// <summary>Where NCCL may be besides <see cref="PathVariable"/> and the loader's path: <c>$NCCL_HOME/lib</c> (a
    /// source build, as nccl-tests takes it), then the nvidia-nccl-cu13/-cu12 wheel (torch's dependency) in the Python
    /// environment that <c>VIRTUAL_ENV</c> or <c>CONDA_PREFIX</c> names (site-packages/nvidia/nccl/lib; CUDA 13
    /// wheels may use nvidia/cu13/lib). Only existing directories are listed.</summary>
    public static IReadOnlyList<string> NcclDirectories(Func<string, string?> environment)
    {
        var dirs = new List<string>();
        void Add(string dir)
        {
            if (Directory.Exists(dir) && !dirs.Contains(dir)) dirs.Add(dir);
        }
        if (environment("NCCL_HOME") is { Length: > 0 } home) Add(Path.Combine(home, "lib"));
        foreach (var variable in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
        {
            if (environment(variable) is not { Length: > 0 } prefix || !Directory.Exists(Path.Combine(prefix, "lib"))) continue;
            string[] pythons;
            try
            {
                pythons = Directory.GetDirectories(Path.Combine(prefix, "lib"), "python3*");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // an unreadable environment is not a place NCCL can be loaded from either
            }
            foreach (var python in pythons.Order(StringComparer.Ordinal))
                foreach (var sub in new[] { "nccl", "cu13", "cu12" })
                    Add(Path.Combine(python, "site-packages", "nvidia", sub, "lib"));
        }
        return dirs;
    }

    /// <summary>The CUDA major version the installed driver supports (12 for 12.x), or null without a driver.</summary>
    public static int? DriverMajorVersion()
    {
        if (!TryLoad(Cuda, out var handle, out _) || !NativeLibrary.TryGetExport(handle, "cuDriverGetVersion", out var export))
            return null;
        int version = 0;
        unsafe
        {
            var getVersion = (delegate* unmanaged<int*, int>)export;
            if (getVersion(&version) != 0) return null;
        }
        return version / 1000;
    }

    /// <summary>13 for "libnvrtc.so.13", 11 for "libnvrtc.so.11.2", 12 for "cublas64_12.dll"; null when unknown.</summary>
    public static int? SonameMajor(string fileName)
    {
        var m = System.Text.RegularExpressions.Regex.Match(fileName, @"\.so\.(\d+)|64_(\d\d)");
        if (!m.Success) return null;
        var digits = m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value[..2];
        return int.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Installs the resolver on this assembly once; every binding class calls it from its static constructor.</summary>
    public static void EnsureResolver()
    {
        lock (Gate)
        {
            if (_resolverInstalled) return;
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
            _resolverInstalled = true;
        }
    }

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) =>
        libraryName is Cuda or Cublas or CublasLt or Nvrtc or Nccl && TryLoad(libraryName, out var handle, out _) ? handle : 0;

    /// <summary>Loads (once) the first candidate that opens. <paramref name="pathOrReason"/> is the file
    /// loaded, or on failure a sentence listing what was tried.</summary>
    public static bool TryLoad(string logical, out nint handle, out string pathOrReason)
    {
        lock (Gate)
        {
            if (!Results.TryGetValue(logical, out var result))
            {
                var tried = SearchOrder(logical).ToArray();
                result = new Result(0, "", tried);
                foreach (var candidate in tried)
                {
                    if (NativeLibrary.TryLoad(candidate, out var h))
                    {
                        // A driver library that does not match the kernel module (CUDA's forward-compatibility
                        // copy under cuda/compat on a newer driver, or a stub) loads but fails cuInit: skip it.
                        if (logical == Cuda && !DriverUsable(h))
                        {
                            NativeLibrary.Free(h);
                            continue;
                        }
                        result = new Result(h, candidate, tried);
                        break;
                    }
                }
                Results[logical] = result;
            }
            handle = result.Handle;
            pathOrReason = handle != 0 ? result.Path : NotFoundMessage(logical, result.Tried);
            return handle != 0;
        }
    }

    private const int CudaErrorSystemDriverMismatch = 803, CudaErrorCompatNotSupported = 804, CudaErrorStubLibrary = 34;

    /// <summary>False when <paramref name="handle"/> is a libcuda that cannot drive this machine's kernel module.
    /// Other cuInit failures (no device, say) keep the library, so that the error reaches the user.</summary>
    private static bool DriverUsable(nint handle)
    {
        if (!NativeLibrary.TryGetExport(handle, "cuInit", out var export)) return false;
        int status;
        unsafe { status = ((delegate* unmanaged<uint, int>)export)(0); }
        return status is not (CudaErrorSystemDriverMismatch or CudaErrorCompatNotSupported or CudaErrorStubLibrary);
    }

    /// <summary>The loaded file of a logical library, or why it could not be loaded.</summary>
    public static string Describe(string logical) => TryLoad(logical, out _, out var text) ? text : text;

    private static string NotFoundMessage(string logical, string[] tried)
    {
        string what = logical switch
        {
            Cuda => "the NVIDIA driver library libcuda (is the NVIDIA driver installed?)",
            Cublas => "cuBLAS (CUDA 12 or 13 toolkit or the nvidia-cublas wheel)",
            CublasLt => "cuBLASLt (CUDA 12 or 13 toolkit or the nvidia-cublas wheel)",
            Nvrtc => "NVRTC (CUDA toolkit, the nvidia-cuda-nvrtc wheel, or Debian's libnvrtc11.2)",
            Nccl => OperatingSystem.IsWindows() ? "NCCL (NCCL has no Windows build: data-parallel GPU training needs Linux)"
                : "NCCL libnccl.so.2 (the system's libnccl2, $NCCL_HOME/lib, or the nvidia-nccl-cu13/-cu12 wheel torch installs, found under $VIRTUAL_ENV or $CONDA_PREFIX)",
            _ => logical,
        };
        var env = Environment.GetEnvironmentVariable(PathVariable);
        return $"could not load {what}; tried {string.Join(", ", tried)}" +
               (string.IsNullOrWhiteSpace(env) ? $"; set {PathVariable} to the directory holding it" : "");
    }
}
