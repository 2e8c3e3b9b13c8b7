using System.Reflection;
using System.Runtime.InteropServices;

namespace Bert.Runtime.Cpu;

/// <summary>
/// Bindings to OpenBLAS (Debian: libopenblas0-pthread). The library is looked up once, as
/// libopenblas.so.0 then libopenblas.so (then the macOS and Windows names); when none loads,
/// <see cref="IsAvailable"/> is false and the CPU backend uses <see cref="ManagedGemm"/>.
/// Only 32-bit-integer builds (the default, not "openblas64") are supported.
/// </summary>
internal static unsafe partial class OpenBlas
{
    private const string Library = "libopenblas.so.0";
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private static readonly string[] Candidates =
        ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib", "libopenblas.dll", "openblas.dll"];

    private static readonly nint Handle = Load(out LoadedName);
    private static readonly object ThreadGate = new();
    private static int s_threads = -1;

    /// <summary>The file name that loaded, or null.</summary>
    public static readonly string? LoadedName;

    static OpenBlas()
    {
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(OpenBlas).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // Another part of this assembly installed a resolver first; the default probing still
            // finds libopenblas.so.0 on the systems we support, and Handle already decided availability.
        }
    }

    public static bool IsAvailable => Handle != 0;

    /// <summary>openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64".</summary>
    public static string Config => IsAvailable ? Marshal.PtrToStringUTF8(openblas_get_config()) ?? "" : "";

    private static nint Load(out string? loadedName)
    {
        foreach (var name in Candidates)
        {
            if (NativeLibrary.TryLoad(name, out var handle))
            {
                loadedName = name;
                return handle;
            }
        }
        loadedName = null;
        return 0;
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name == Library ? Handle : 0;

    /// <summary>OpenBLAS's thread count is process-wide; set it only when it changes.</summary>
    public static void SetThreads(int threads)
    {
        if (Volatile.Read(ref s_threads) == threads) return;
        lock (ThreadGate)
        {
            openblas_set_num_threads(threads);
            s_threads = threads;
        }
    }

    /// <summary>C[m,n] = alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc) =>
        cblas_sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    [LibraryImport(Library)]
    internal static partial void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [LibraryImport(Library)]
    private static partial void openblas_set_num_threads(int threads);

    [LibraryImport(Library)]
    private static partial nint openblas_get_config();
}
