using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Bert.Native.Interop;
using static Bert.Native.CudaCheck;

namespace Bert.Native;

/// <summary>The kernel sources embedded in this assembly (Kernels/*.cu and the common header).</summary>
public static class KernelSources
{
    /// <summary>The text of a kernel file or header, by file name ("layernorm.cu", "common.cuh").</summary>
    public static string Read(string file)
    {
        var name = "Bert.Native.Kernels." + file;
        using var stream = typeof(KernelSources).Assembly.GetManifestResourceStream(name)
            ?? throw new FileNotFoundException($"kernel source '{file}' is not embedded in Bert.Native (resource {name})", file);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}

/// <summary>What the loaded NVRTC is: version, the virtual architectures it can target, and its file.</summary>
public sealed record NvrtcInfo(int Major, int Minor, IReadOnlyList<int> SupportedArchitectures, string LibraryPath)
{
    public string Version => $"{Major}.{Minor}";

    /// <summary>The newest architecture this NVRTC supports that is no newer than <paramref name="deviceArch"/>
    /// (e.g. 90 for an sm_100 device with NVRTC 11.8): PTX runs on newer devices through the driver's JIT.</summary>
    public int ArchitectureFor(int deviceArch)
    {
        int best = -1;
        foreach (var a in SupportedArchitectures) if (a <= deviceArch && a > best) best = a;
        if (best < 0)
            throw new CudaException($"NVRTC {Version} supports compute_{SupportedArchitectures.Min()}..compute_{SupportedArchitectures.Max()}, " +
                                    $"none of which runs on this sm_{deviceArch} device");
        return best;
    }

    /// <summary>The architecture to compile for when there is no device (tests, CI): compute_80 (A100),
    /// or the newest supported below it.</summary>
    public int DefaultArchitecture => ArchitectureFor(80);
}

/// <summary>One compiled kernel file.</summary>
public sealed record CompiledKernels(string File, int Architecture, string Ptx, bool FromCache, string? CachePath);

/// <summary>
/// Compiles Kernels/*.cu to PTX with NVRTC for a virtual architecture (compute_XY) and caches the PTX on
/// disk, keyed by SHA-256 of the sources, the architecture, the options and the NVRTC version. The cache
/// lives in <c>BERT_KERNEL_CACHE</c>, else <c>$XDG_CACHE_HOME/bert/kernels</c>, else
/// <c>~/.cache/bert/kernels</c>; an unwritable cache only costs a recompile.
/// </summary>
public sealed unsafe class KernelCompiler
{
    public const string CacheVariable = "BERT_KERNEL_CACHE";

    // Precise sqrt/division (the defaults) keep fp32 kernels within 1e-5 of the CPU; no fast math.
    private static readonly string[] BaseOptions = ["--fmad=true"];

    public KernelCompiler(NvrtcInfo nvrtc, string? cacheDirectory = null)
    {
        Nvrtc = nvrtc;
        CacheDirectory = cacheDirectory ?? DefaultCacheDirectory();
    }

    public NvrtcInfo Nvrtc { get; }

    public string? CacheDirectory { get; }

    public static string? DefaultCacheDirectory()
    {
        var env = Environment.GetEnvironmentVariable(CacheVariable);
        if (!string.IsNullOrWhiteSpace(env)) return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, "bert", "kernels");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".cache", "bert", "kernels");
    }

    /// <summary>Loads NVRTC and asks its version and architectures; false (with the reason) when it cannot be loaded.</summary>
    public static bool TryProbe(out NvrtcInfo? info, out string reason)
    {
        info = null;
        try
        {
            if (!NativeLibraries.TryLoad(NativeLibraries.Nvrtc, out _, out var where))
            {
                reason = where;
                return false;
            }
            Check(Interop.Nvrtc.nvrtcVersion(out int major, out int minor));
            Check(Interop.Nvrtc.nvrtcGetNumSupportedArchs(out int count));
            var archs = new int[count];
            fixed (int* p = archs) Check(Interop.Nvrtc.nvrtcGetSupportedArchs(p));
            info = new NvrtcInfo(major, minor, archs, where);
            reason = "";
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or CudaException)
        {
            reason = $"NVRTC could not be used: {e.Message}";
            return false;
        }
    }

    public static NvrtcInfo Probe() =>
        TryProbe(out var info, out var reason) ? info! : throw new CudaException(reason);

    /// <summary>The exact NVRTC options for <paramref name="architecture"/> (part of the cache key).</summary>
    public static IReadOnlyList<string> Options(int architecture) => [$"--gpu-architecture=compute_{architecture}", .. BaseOptions];

    /// <summary>PTX of one kernel file, from the cache when an identical compile is there.</summary>
    public CompiledKernels Compile(string file, int architecture)
    {
        var source = KernelSources.Read(file);
        var header = KernelSources.Read(KernelCatalog.CommonHeader);
        var options = Options(architecture);
        var key = CacheKey(file, source, header, options);
        string? path = CacheDirectory is null ? null
            : Path.Combine(CacheDirectory, $"{Path.GetFileNameWithoutExtension(file)}-compute_{architecture}-{key[..16]}.ptx");
        if (path is not null && File.Exists(path))
        {
            try
            {
                return new CompiledKernels(file, architecture, File.ReadAllText(path, Encoding.UTF8), true, path);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        var ptx = CompileToPtx(file, source, header, options);
        if (path is not null) TryWrite(path, ptx);
        return new CompiledKernels(file, architecture, ptx, false, path);
    }

    private string CacheKey(string file, string source, string header, IReadOnlyList<string> options)
    {
        var text = new StringBuilder()
            .Append("bert-kernels/1\n").Append(file).Append('\n').Append(source).Append('\n')
            .Append(KernelCatalog.CommonHeader).Append('\n').Append(header).Append('\n')
            .Append(string.Join(' ', options)).Append("\nnvrtc ").Append(Nvrtc.Version).ToString();
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text))).ToLowerInvariant();
    }

    private static void TryWrite(string path, string ptx)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var temp = path + "." + Environment.ProcessId + ".tmp";
            File.WriteAllText(temp, ptx, new UTF8Encoding(false));
            File.Move(temp, path, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Runs NVRTC; a compile error throws with the program log.</summary>
    public static string CompileToPtx(string file, string source, string header, IReadOnlyList<string> options)
    {
        var allocations = new List<nint>();
        nint Utf8(string s)
        {
            var p = Marshal.StringToCoTaskMemUTF8(s);
            allocations.Add(p);
            return p;
        }
        nint program = 0;
        try
        {
            var headers = stackalloc byte*[1];
            var includeNames = stackalloc byte*[1];
            headers[0] = (byte*)Utf8(header);
            includeNames[0] = (byte*)Utf8(KernelCatalog.CommonHeader);
            Check(Interop.Nvrtc.nvrtcCreateProgram(out program, (byte*)Utf8(source), (byte*)Utf8(file), 1, headers, includeNames));
            var opts = stackalloc byte*[options.Count];
            for (int i = 0; i < options.Count; i++) opts[i] = (byte*)Utf8(options[i]);
            var status = Interop.Nvrtc.nvrtcCompileProgram(program, options.Count, opts);
            var log = ProgramLog(program);
            if (status != nvrtcResult.NVRTC_SUCCESS)
                throw new CudaException($"NVRTC failed to compile {file} ({string.Join(' ', options)}): {status}\n{log}")
                    { Call = "nvrtcCompileProgram", ErrorName = status.ToString() };
            Check(Interop.Nvrtc.nvrtcGetPTXSize(program, out nuint size));
            var buffer = new byte[(int)size];
            fixed (byte* p = buffer) Check(Interop.Nvrtc.nvrtcGetPTX(program, p));
            int length = Array.IndexOf(buffer, (byte)0);
            return Encoding.UTF8.GetString(buffer, 0, length < 0 ? buffer.Length : length);
        }
        finally
        {
            if (program != 0) Interop.Nvrtc.nvrtcDestroyProgram(ref program);
            foreach (var p in allocations) Marshal.FreeCoTaskMem(p);
        }
    }

    private static string ProgramLog(nint program)
    {
        if (Interop.Nvrtc.nvrtcGetProgramLogSize(program, out nuint size) != nvrtcResult.NVRTC_SUCCESS || size <= 1) return "";
        var buffer = new byte[(int)size];
        fixed (byte* p = buffer)
            if (Interop.Nvrtc.nvrtcGetProgramLog(program, p) != nvrtcResult.NVRTC_SUCCESS) return "";
        return Encoding.UTF8.GetString(buffer, 0, (int)size - 1).Trim();
    }
}
