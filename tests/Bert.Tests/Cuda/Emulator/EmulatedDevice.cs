using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Bert.Native;
using Bert.Runtime;

namespace Bert.Tests.Cuda.Emulator;

/// <summary>
/// <see cref="IDeviceApi"/> backed by the CPU emulator (emulator.cpp): a child process built with g++ and
/// AddressSanitizer from the very kernel sources embedded in Bert.Native, so a <see cref="CudaBackend"/>
/// runs its launchers, grid computations, argument marshalling, GEMM mappings and kernels end to end
/// without a GPU. Memory, copies and kernels are synchronous; events time on the host.
/// </summary>
internal sealed unsafe class EmulatedDevice : IDeviceApi
{
    private const long TotalMemory = 2L << 30;
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(120);
    private static readonly object BuildGate = new();
    private static string? _builtPath;
    private static string? _buildFailure;

    private readonly Process _process;
    private readonly BinaryWriter _writer;
    private readonly BinaryReader _reader;
    private readonly StringBuilder _stderr = new();
    private readonly Dictionary<ulong, long> _sizes = [];
    private readonly Dictionary<nint, long> _events = [];
    private long _used;
    private nint _nextEvent = 1;
    private string? _broken;
    private readonly GraphRecorder _graphs = new();

    private enum Command : uint { Alloc = 1, Free = 2, Memset = 3, Copy = 4, Write = 5, Read = 6, Launch = 7, Gemm = 8, Lt = 9, Quit = 10 }

    private EmulatedDevice(string executable)
    {
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Leak checking needs ptrace, which containers often forbid; leaks are not what this looks for.
        start.Environment["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0";
        start.Environment["UBSAN_OPTIONS"] = "print_stacktrace=1";
        _process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {executable}");
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_stderr) _stderr.AppendLine(e.Data);
        };
        _process.BeginErrorReadLine();
        _writer = new BinaryWriter(_process.StandardInput.BaseStream);
        _reader = new BinaryReader(_process.StandardOutput.BaseStream);
        Description = $"CPU emulator {executable}";
    }

    /// <summary>Builds the emulator (once per source version, cached in the temp directory) and starts it;
    /// false with the reason when no C++ compiler is available.</summary>
    public static bool TryStart(out EmulatedDevice? device, out string reason)
    {
        device = null;
        lock (BuildGate)
        {
            if (_builtPath is null && _buildFailure is null)
            {
                try
                {
                    _builtPath = Build();
                }
                catch (Exception e) when (e is InvalidOperationException or IOException or System.ComponentModel.Win32Exception)
                {
                    _buildFailure = e.Message;
                }
            }
        }
        if (_builtPath is null)
        {
            reason = _buildFailure!;
            return false;
        }
        device = new EmulatedDevice(_builtPath);
        reason = "";
        return true;
    }

    private static string SourceDirectory([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    private static string Build()
    {
        if (OperatingSystem.IsWindows()) throw new InvalidOperationException("the emulator builds with g++ on Linux");
        var emulatorDir = SourceDirectory();
        if (!File.Exists(Path.Combine(emulatorDir, "emulator.cpp")))
            throw new InvalidOperationException($"emulator sources not found in {emulatorDir}");
        var files = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["cuda_emulator.h"] = File.ReadAllText(Path.Combine(emulatorDir, "cuda_emulator.h")),
            ["emulator.cpp"] = File.ReadAllText(Path.Combine(emulatorDir, "emulator.cpp")),
            [KernelCatalog.CommonHeader] = KernelSources.Read(KernelCatalog.CommonHeader),
        };
        foreach (var f in KernelCatalog.Files) files[f] = KernelSources.Read(f);
        var table = new StringBuilder("#include \"cuda_emulator.h\"\n");
        foreach (var f in KernelCatalog.Files) table.Append($"#include \"{f}\"\n");
        table.Append("const emu::KernelEntry kEmuKernels[] = {\n");
        foreach (var k in KernelCatalog.All) table.Append($"    {{\"{k.Name}\", [](void** a) {{ emu::invoke({k.Name}, a); }}}},\n");
        table.Append($"}};\nconst int kEmuKernelCount = {KernelCatalog.All.Count};\n");
        files["kernels.cpp"] = table.ToString();

        string[] flags =
        [
            "-std=c++20", "-O1", "-g", "-pthread", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer", "-Wall", "-Wno-unknown-pragmas", "-Werror", "-I.",
        ];
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
            string.Join("\n", files.Select(kv => kv.Key + "\n" + kv.Value)) + string.Join(' ', flags)))).ToLowerInvariant()[..16];
        var dir = Path.Combine(Path.GetTempPath(), "bert-cuda-emulator", hash);
        var exe = Path.Combine(dir, "bert-cuda-emu");
        if (File.Exists(exe)) return exe;

        var work = Path.Combine(Path.GetTempPath(), "bert-cuda-emulator", $"{hash}.{Environment.ProcessId}.tmp");
        Directory.CreateDirectory(work);
        foreach (var (name, text) in files) File.WriteAllText(Path.Combine(work, name), text);
        // The two translation units compile in parallel, then link.
        var compiles = new[] { "kernels", "emulator" }
            .Select(unit => Task.Run(() => RunCompiler(work, [.. flags, "-c", unit + ".cpp", "-o", unit + ".o"])))
            .ToArray();
        try
        {
            Task.WaitAll(compiles);
        }
        catch (AggregateException e)
        {
            throw new InvalidOperationException(e.InnerException?.Message ?? e.Message, e);
        }
        RunCompiler(work, [.. flags, "kernels.o", "emulator.o", "-o", "bert-cuda-emu"]);
        Directory.CreateDirectory(dir);
        File.Move(Path.Combine(work, "bert-cuda-emu"), exe, overwrite: true);
        Directory.Delete(work, true);
        return exe;
    }

    private static void RunCompiler(string workingDirectory, IReadOnlyList<string> arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("CXX") ?? "g++")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var gxx = Process.Start(start) ?? throw new InvalidOperationException("could not start g++");
        var errors = gxx.StandardError.ReadToEndAsync();
        gxx.StandardOutput.ReadToEnd();
        if (!gxx.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            gxx.Kill(true);
            throw new InvalidOperationException("g++ took more than 5 minutes building the emulator");
        }
        if (gxx.ExitCode != 0) throw new InvalidOperationException($"g++ failed building the emulator:\n{errors.Result}");
    }

    public CudaDeviceInfo Device { get; } = new()
    {
        Ordinal = 0, Name = "CPU emulator", ComputeMajor = 8, ComputeMinor = 0, TotalMemory = TotalMemory,
    };

    public string Description { get; }

    public bool SupportsLt => true;

    /// <summary>Everything the emulator wrote to stderr (sanitizer reports).</summary>
    public string Diagnostics
    {
        get
        {
            lock (_stderr) return _stderr.ToString();
        }
    }

    private void Send(Command command)
    {
        if (_broken is not null) throw new InvalidOperationException($"the emulator has stopped: {_broken}");
        _writer.Write((uint)command);
    }

    /// <summary>Flushes the command and reads its status; an error reply or a dead process throws.</summary>
    private void Complete(string what)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            CompleteCore(what);
        }
        finally
        {
            var key = what.Split(' ')[0] == "kernel" ? what.Split(' ')[1] : what.Split(' ')[0];
            CommandSeconds[key] = CommandSeconds.GetValueOrDefault(key) + Stopwatch.GetElapsedTime(started).TotalSeconds;
        }
    }

    /// <summary>Wall time per command kind (kernel name, "GEMM", "upload", …), for finding slow emulation.</summary>
    public Dictionary<string, double> CommandSeconds { get; } = [];

    private void CompleteCore(string what)
    {
        _writer.Flush();
        var read = Task.Run(() =>
        {
            uint status = _reader.ReadUInt32();
            if (status == 0) return null;
            int length = _reader.ReadInt32();
            return Encoding.UTF8.GetString(_reader.ReadBytes(length));
        });
        string? error;
        try
        {
            if (!read.Wait(CommandTimeout))
            {
                _broken = $"{what} did not finish in {CommandTimeout.TotalSeconds} s (a deadlock in the kernel?)";
                _process.Kill(true);
                throw new InvalidOperationException(_broken);
            }
            error = read.Result;
        }
        catch (AggregateException e) when (e.InnerException is EndOfStreamException or IOException)
        {
            _process.WaitForExit(10_000);
            Thread.Sleep(200);  // let the stderr reader drain the sanitizer report
            _broken = $"the emulator died during {what} (exit code {(_process.HasExited ? _process.ExitCode : -1)}):\n{Diagnostics}";
            throw new InvalidOperationException(_broken);
        }
        if (error is not null) throw new InvalidOperationException($"emulator: {what}: {error}");
    }

    public ulong Allocate(long bytes, string label)
    {
        _graphs.Host("cuMemAlloc");
        if (_used + bytes > TotalMemory) throw new CudaOutOfMemoryException(label, bytes, TotalMemory - _used, TotalMemory);
        Send(Command.Alloc);
        _writer.Write((ulong)bytes);
        Complete($"allocating {bytes} bytes for '{label}'");
        ulong address = _reader.ReadUInt64();
        _sizes[address] = bytes;
        _used += bytes;
        return address;
    }

    public void Free(ulong address)
    {
        _graphs.Host("cuMemFree");
        Send(Command.Free);
        _writer.Write(address);
        Complete("free");
        if (_sizes.Remove(address, out var bytes)) _used -= bytes;
    }

    public (long Free, long Total) MemoryInfo() => (TotalMemory - _used, TotalMemory);

    public void Memset(ulong destination, byte value, long bytes)
    {
        if (_graphs.Record(() => Memset(destination, value, bytes))) return;
        Send(Command.Memset);
        _writer.Write(destination);
        _writer.Write(value);
        _writer.Write((ulong)bytes);
        Complete("memset");
    }

    public void Copy(ulong destination, ulong source, long bytes)
    {
        if (_graphs.Record(() => Copy(destination, source, bytes))) return;
        Send(Command.Copy);
        _writer.Write(destination);
        _writer.Write(source);
        _writer.Write((ulong)bytes);
        Complete("copy");
    }

    public void Upload(ulong destination, ReadOnlySpan<byte> source)
    {
        _graphs.Host("an upload (cuEventSynchronize on the staging buffer)");
        Send(Command.Write);
        _writer.Write(destination);
        _writer.Write((ulong)source.Length);
        _writer.Write(source);
        Complete("upload");
    }

    public void Download(Span<byte> destination, ulong source)
    {
        _graphs.Host("a download (cuStreamSynchronize)");
        Send(Command.Read);
        _writer.Write(source);
        _writer.Write((ulong)destination.Length);
        Complete("download");
        int read = 0;
        while (read < destination.Length)
        {
            int n = _reader.Read(destination[read..]);
            if (n == 0) throw new InvalidOperationException("the emulator closed its output during a download");
            read += n;
        }
    }

    public void UploadPinned(ulong destination, nint pinnedSource, long bytes) =>
        Upload(destination, new ReadOnlySpan<byte>((void*)pinnedSource, checked((int)bytes)));

    public nint AllocatePinned(long bytes) => (nint)NativeMemory.AllocZeroed((nuint)Math.Max(1, bytes));

    public void FreePinned(nint pointer) => NativeMemory.Free((void*)pointer);

    public void Synchronize()
    {
        _graphs.Host("cuStreamSynchronize");
        if (_broken is not null) throw new InvalidOperationException($"the emulator has stopped: {_broken}");
    }

    public void Launch(KernelSpec kernel, Dim3 grid, Dim3 block, ReadOnlySpan<KernelArg> args)
    {
        KernelArg.Validate(kernel, grid, block, args, Device);
        if (_graphs.Capturing)
        {
            var kept = args.ToArray();
            _graphs.Record(() => Launch(kernel, grid, block, kept));
            return;
        }
        Send(Command.Launch);
        _writer.Write((uint)kernel.Index);
        _writer.Write(grid.X);
        _writer.Write(grid.Y);
        _writer.Write(grid.Z);
        _writer.Write(block.X);
        _writer.Write(block.Y);
        _writer.Write(block.Z);
        _writer.Write((uint)args.Length);
        foreach (var a in args)
        {
            _writer.Write((byte)(a.Kind == KernelArgKind.Pointer ? 1 : 0));
            _writer.Write(a.Bits);
        }
        Complete($"kernel {kernel.Name} grid {grid} block {block}");
        Launches.Add((kernel.Name, grid, block));
    }

    /// <summary>Every launch so far (kernel, grid, block), for tests of the launchers.</summary>
    public List<(string Kernel, Dim3 Grid, Dim3 Block)> Launches { get; } = [];

    /// <summary>Every GEMM so far.</summary>
    public List<GemmCall> Gemms { get; } = [];

    public void Gemm(in GemmCall g)
    {
        g.Validate();
        var call = g;
        if (_graphs.Record(() => Gemm(call))) return;
        Send(Command.Gemm);
        _writer.Write(g.TransA ? 1 : 0);
        _writer.Write(g.TransB ? 1 : 0);
        _writer.Write(g.M);
        _writer.Write(g.N);
        _writer.Write(g.K);
        _writer.Write(g.Alpha);
        _writer.Write(g.Beta);
        _writer.Write(g.A);
        _writer.Write((int)g.AType);
        _writer.Write(g.Lda);
        _writer.Write(g.StrideA);
        _writer.Write(g.B);
        _writer.Write((int)g.BType);
        _writer.Write(g.Ldb);
        _writer.Write(g.StrideB);
        _writer.Write(g.C);
        _writer.Write((int)g.CType);
        _writer.Write(g.Ldc);
        _writer.Write(g.StrideC);
        _writer.Write(g.BatchCount);
        Complete($"GEMM {g}");
        Gemms.Add(g);
    }

    /// <summary>Shapes the emulated cuBLASLt refuses (as a real heuristic may): LtMatmul answers false for them
    /// and queues nothing, so the backend's fallback runs. Null: none.</summary>
    public Func<LtMatmulCall, bool>? RefuseLt { get; set; }

    /// <summary>Every cuBLASLt matmul the emulator ran (refused ones are not here).</summary>
    public List<LtMatmulCall> LtLog { get; } = [];

    public bool LtMatmul(in LtMatmulCall c)
    {
        if (RefuseLt?.Invoke(c) == true) return false;
        var call = c;
        if (_graphs.Record(() => LtMatmul(call))) return true;
        Send(Command.Lt);
        _writer.Write(c.TransA ? 1 : 0);
        _writer.Write(c.TransB ? 1 : 0);
        _writer.Write(c.M);
        _writer.Write(c.N);
        _writer.Write(c.K);
        _writer.Write(c.A);
        _writer.Write(c.Lda);
        _writer.Write(c.B);
        _writer.Write(c.Ldb);
        _writer.Write(c.D);
        _writer.Write(c.Ldd);
        _writer.Write(c.Bias);
        _writer.Write(c.Aux);
        _writer.Write(c.Epilogue switch { LtEpilogue.GeluTanhAuxBias => 1, LtEpilogue.BiasGradB => 2, _ => 0 });
        _writer.Write(c.Type == DType.BF16 ? 1 : 0);
        _writer.Write(c.DType == DType.BF16 ? 1 : 0);
        _writer.Write(c.Beta);
        Complete($"cuBLASLt matmul {c}");
        LtCalls++;
        LtLog.Add(c);
        return true;
    }

    public int LtCalls { get; private set; }

    public nint CreateEvent()
    {
        var e = _nextEvent++;
        _events[e] = 0;
        return e;
    }

    public void RecordEvent(nint evt) => _events[evt] = Stopwatch.GetTimestamp();

    public void SynchronizeEvent(nint evt) { }

    public float ElapsedMilliseconds(nint start, nint end) =>
        (float)Stopwatch.GetElapsedTime(_events[start], _events[end]).TotalMilliseconds;

    public void DestroyEvent(nint evt) => _events.Remove(evt);

    /// <summary>Stream capture and graph replay (see <see cref="GraphRecorder"/>).</summary>
    public GraphRecorder Graphs => _graphs;

    public void BeginCapture() => _graphs.Begin();

    public (nint Graph, int Nodes) EndCapture() => _graphs.End();

    public void LaunchGraph(nint graph) => _graphs.Launch(graph);

    public void DestroyGraph(nint graph) => _graphs.Destroy(graph);

    public void Dispose()
    {
        try
        {
            if (_broken is null && !_process.HasExited)
            {
                Send(Command.Quit);
                Complete("quit");
            }
        }
        catch (InvalidOperationException) { }
        catch (IOException) { }
        if (!_process.WaitForExit(5000)) _process.Kill(true);
        _process.Dispose();
    }
}
