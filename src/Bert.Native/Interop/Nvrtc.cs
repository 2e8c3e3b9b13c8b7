using System.Runtime.InteropServices;

namespace Bert.Native.Interop;

/// <summary>nvrtcResult, native names.</summary>
internal enum nvrtcResult
{
    NVRTC_SUCCESS = 0,
    NVRTC_ERROR_OUT_OF_MEMORY = 1,
    NVRTC_ERROR_PROGRAM_CREATION_FAILURE = 2,
    NVRTC_ERROR_INVALID_INPUT = 3,
    NVRTC_ERROR_INVALID_PROGRAM = 4,
    NVRTC_ERROR_INVALID_OPTION = 5,
    NVRTC_ERROR_COMPILATION = 6,
    NVRTC_ERROR_BUILTIN_OPERATION_FAILURE = 7,
    NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION = 8,
    NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION = 9,
    NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID = 10,
    NVRTC_ERROR_INTERNAL_ERROR = 11,
    NVRTC_ERROR_TIME_FILE_WRITE_FAILED = 12,
}

/// <summary>
/// NVRTC (libnvrtc.so.13, .12 or .11.2), raw. Compiles CUDA C++ to PTX on the host: no driver or GPU
/// needed, which is how CI compiles every kernel.
/// </summary>
internal static unsafe partial class Nvrtc
{
    static Nvrtc() => NativeLibraries.EnsureResolver();

    private const string Lib = NativeLibraries.Nvrtc;

    [LibraryImport(Lib)] public static partial byte* nvrtcGetErrorString(nvrtcResult result);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcGetSupportedArchs(int* archs);

    [LibraryImport(Lib)]
    public static partial nvrtcResult nvrtcCreateProgram(out nint program, byte* source, byte* name,
        int numHeaders, byte** headers, byte** includeNames);

    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcDestroyProgram(ref nint program);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcCompileProgram(nint program, int numOptions, byte** options);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcGetPTXSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial nvrtcResult nvrtcGetProgramLog(nint program, byte* log);
}
