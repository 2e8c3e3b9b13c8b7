using Bert.Native;
using Bert.Native.Interop;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>What can be checked without a GPU: NVRTC compiles every kernel file, the catalog agrees with
/// the .cu declarations and the PTX entries, and the library resolver and device probe behave.</summary>
[TestFixture]
public class KernelCompileTests
{
    private static NvrtcInfo Nvrtc()
    {
        if (!KernelCompiler.TryProbe(out var info, out var reason)) Assert.Ignore($"no NVRTC library can be loaded: {reason}");
        return info!;
    }

    private static readonly Dictionary<(string, int), string> PtxCache = [];

    private static string Ptx(string file, int arch)
    {
        lock (PtxCache)
        {
            if (!PtxCache.TryGetValue((file, arch), out var ptx))
            {
                ptx = KernelCompiler.CompileToPtx(file, KernelSources.Read(file), KernelSources.Read(KernelCatalog.CommonHeader),
                    KernelCompiler.Options(arch));
                PtxCache[(file, arch)] = ptx;
            }
            return ptx;
        }
    }

    public static IEnumerable<string> Files => KernelCatalog.Files;

    [Test]
    public void ResolverFindsNvrtc()
    {
        Assert.That(NativeLibraries.TryLoad(NativeLibraries.Nvrtc, out var handle, out var path), Is.True, path);
        Assert.That(handle, Is.Not.Zero);
        // This machine has Debian's CUDA 11.8 NVRTC; a machine with a toolkit may find 12 or 13 first.
        Assert.That(path, Does.Match(@"libnvrtc\.so\.(13|12|11\.2)$|nvrtc64_"));
        var info = Nvrtc();
        Assert.That(info.Major, Is.GreaterThanOrEqualTo(11));
        Assert.That(info.SupportedArchitectures, Does.Contain(info.DefaultArchitecture));
    }

    [Test]
    public void SearchOrderTriesTheEnvironmentDirectoriesFirst()
    {
        var previous = Environment.GetEnvironmentVariable(NativeLibraries.PathVariable);
        try
        {
            Environment.SetEnvironmentVariable(NativeLibraries.PathVariable, "/opt/a:/opt/b");
            var order = NativeLibraries.SearchOrder(NativeLibraries.Nvrtc);
            if (OperatingSystem.IsWindows()) Assert.Ignore("sonames are Linux's");
            if (NativeLibraries.DriverMajorVersion() is { } major && major < 13)
                Assert.Ignore($"a CUDA {major} driver is installed, so CUDA 13 sonames are left out of the order");
            Assert.That(order.Take(6), Is.EqualTo(new[]
            {
                "/opt/a/libnvrtc.so.13", "/opt/a/libnvrtc.so.12", "/opt/a/libnvrtc.so.11.2",
                "/opt/b/libnvrtc.so.13", "/opt/b/libnvrtc.so.12", "/opt/b/libnvrtc.so.11.2",
            }));
            Assert.That(order.Skip(6), Is.EqualTo(new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" }));
            Assert.That(NativeLibraries.SearchOrder(NativeLibraries.Cublas).Skip(4),
                Is.EqualTo(new[] { "libcublas.so.13", "libcublas.so.12" }));
            // The driver library must match the kernel module, so the loader's (installed) copy comes first and
            // a toolkit's forward-compatibility copy in the variable's directories only after it.
            Assert.That(NativeLibraries.SearchOrder(NativeLibraries.Cuda), Is.EqualTo(new[]
            {
                "libcuda.so.1", "libcuda.so", "/opt/a/libcuda.so.1", "/opt/a/libcuda.so", "/opt/b/libcuda.so.1", "/opt/b/libcuda.so",
            }));
        }
        finally
        {
            Environment.SetEnvironmentVariable(NativeLibraries.PathVariable, previous);
        }
    }

    [TestCase("libnvrtc.so.13", 13)]
    [TestCase("libnvrtc.so.11.2", 11)]
    [TestCase("libcublasLt.so.12", 12)]
    [TestCase("nvrtc64_120_0.dll", 12)]
    [TestCase("cublas64_13.dll", 13)]
    public void SonameMajorReadsTheCudaVersion(string file, int major) =>
        Assert.That(NativeLibraries.SonameMajor(file), Is.EqualTo(major));

    [Test]
    public void DeviceProbeGivesAReasonInsteadOfCrashing()
    {
        bool available = CudaDevice.IsAvailable(out var reason);
        if (available) Assert.Ignore("this machine has a GPU; the no-GPU path is not exercised");
        Assert.That(reason, Does.StartWith("no NVIDIA GPU available"));
        Assert.That(reason.Length, Is.GreaterThan("no NVIDIA GPU available: ".Length));

        Assert.That(CudaBackend.TryCreate(out var backend, out var createReason), Is.False);
        Assert.That(backend, Is.Null);
        Assert.That(createReason, Is.EqualTo(reason));
        var e = Assert.Throws<CudaException>(() => CudaBackend.Create());
        Assert.That(e!.Message, Is.EqualTo(reason));
    }

    [Test]
    public void MissingDriverIsDescribedWithEveryPathTried()
    {
        if (CudaDevice.IsAvailable(out _)) Assert.Ignore("this machine has a GPU");
        if (NativeLibraries.TryLoad(NativeLibraries.Cuda, out _, out var text)) Assert.Ignore("a driver library is present (no device)");
        Assert.That(text, Does.Contain("libcuda.so.1"));
        Assert.That(text, Does.Contain(NativeLibraries.PathVariable));
    }

    [TestCaseSource(nameof(Files))]
    public void KernelFileCompilesToPtx(string file)
    {
        var info = Nvrtc();
        var ptx = Ptx(file, info.DefaultArchitecture);
        Assert.That(ptx, Does.Contain($".target sm_{info.DefaultArchitecture}"));
        var entries = KernelSignatures.ParsePtx(ptx);
        var expected = KernelCatalog.All.Where(k => k.File == file).Select(k => k.Name).ToArray();
        Assert.That(entries.Keys, Is.EquivalentTo(expected), "every extern \"C\" kernel of the file is in the catalog and vice versa");
    }

    [TestCaseSource(nameof(Files))]
    public void CatalogMatchesPtxEntries(string file)
    {
        var info = Nvrtc();
        var problems = KernelSignatures.CompareWithPtx(file, Ptx(file, info.DefaultArchitecture));
        Assert.That(problems, Is.Empty);
    }

    [TestCaseSource(nameof(Files))]
    public void CatalogMatchesSourceDeclarations(string file)
    {
        var declared = KernelSignatures.ParseSource(KernelSources.Read(file));
        var specs = KernelCatalog.All.Where(k => k.File == file).ToArray();
        Assert.That(declared.Keys, Is.EquivalentTo(specs.Select(s => s.Name)));
        foreach (var spec in specs)
            Assert.That(spec.Parameters, Is.EqualTo(declared[spec.Name]), $"{spec.Name}: names and C types in order");
    }

    [TestCaseSource(nameof(Files))]
    public void KernelsUseNoLocalMemoryAndLittleSharedMemory(string file)
    {
        var info = Nvrtc();
        var ptx = Ptx(file, info.DefaultArchitecture);
        Assert.That(ptx, Does.Not.Contain(".local"), "local arrays or stack frames would be slow and are never needed here");
        long shared = System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\]")
            .Sum(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.That(shared, Is.LessThanOrEqualTo(48 * 1024), "static shared memory of the whole module (the per-kernel limit is 48 KiB)");
    }

    [Test]
    public void EveryArchitectureFromVoltaUpCompiles()
    {
        var info = Nvrtc();
        // One representative file for the oldest and newest targets this NVRTC offers (≥ sm_70).
        foreach (var arch in new[] { info.SupportedArchitectures.Where(a => a >= 70).Min(), info.SupportedArchitectures.Max() })
        {
            foreach (var file in KernelCatalog.Files)
                Assert.That(KernelSignatures.CompareWithPtx(file, Ptx(file, arch)), Is.Empty, $"{file} for compute_{arch}");
        }
    }

    [Test]
    public void FlashAttentionEmitsTensorCorePtxFromCompute80AndTrapsBelow()
    {
        var info = Nvrtc();
        if (!info.SupportedArchitectures.Contains(80)) Assert.Ignore("this NVRTC cannot target compute_80");
        var ptx = Ptx("flash_attention.cu", 80);
        Assert.That(ptx, Does.Contain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"));
        Assert.That(ptx, Does.Contain("ldmatrix.sync.aligned.m8n8.x4.shared.b16"));
        Assert.That(ptx, Does.Contain("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"));
        Assert.That(ptx, Does.Contain("cp.async.cg.shared.global"));
        Assert.That(ptx, Does.Contain("cp.async.wait_all"));
        Assert.That(ptx, Does.Not.Contain("trap;"));
        // Below sm_80 the module must still load (every module is loaded at start, fp32 runs on compute 7.x):
        // no sm_80 instructions, a trap where they would be.
        if (info.SupportedArchitectures.Contains(75))
        {
            var old = Ptx("flash_attention.cu", 75);
            Assert.That(old, Does.Not.Contain("mma.sync").And.Not.Contain("ldmatrix").And.Not.Contain("cp.async"));
            Assert.That(old, Does.Contain("trap;"));
        }
    }

    /// <summary>ptxas (the toolkit's PTX assembler, from <c>BERT_PTXAS</c> or the PATH; ignored without one)
    /// assembles every kernel file's PTX for sm_80 and sm_90, inline PTX included, and no kernel spills
    /// registers to local memory. Debian's nvidia-cuda-toolkit package has a ptxas that can be extracted
    /// alone (docs/cuda.md).</summary>
    [TestCaseSource(nameof(Files))]
    public void PtxasAssemblesWithoutSpills(string file)
    {
        var info = Nvrtc();
        var ptxas = Environment.GetEnvironmentVariable("BERT_PTXAS");
        if (string.IsNullOrEmpty(ptxas))
            ptxas = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
                .Select(d => Path.Combine(d, "ptxas")).FirstOrDefault(File.Exists);
        if (ptxas is null || !File.Exists(ptxas)) Assert.Ignore("no ptxas (set BERT_PTXAS or put it on the PATH)");
        foreach (var arch in new[] { 80, 90 }.Where(info.SupportedArchitectures.Contains))
        {
            var path = Path.Combine(Path.GetTempPath(), $"bert-ptxas-{Environment.ProcessId}-{arch}-{file}.ptx");
            File.WriteAllText(path, Ptx(file, arch));
            try
            {
                var start = new System.Diagnostics.ProcessStartInfo(ptxas, $"-arch=sm_{arch} -v \"{path}\" -o /dev/null")
                    { RedirectStandardOutput = true, RedirectStandardError = true };
                using var p = System.Diagnostics.Process.Start(start)!;
                var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
                p.WaitForExit();
                TestContext.Progress.Write(output);
                Assert.That(p.ExitCode, Is.EqualTo(0), $"ptxas sm_{arch} {file}: {output}");
                var spills = System.Text.RegularExpressions.Regex.Matches(output, @"(\d+) bytes spill stores")
                    .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
                Assert.That(spills, Has.All.EqualTo(0), $"ptxas sm_{arch} {file}: {output}");
            }
            finally
            {
                File.Delete(path);
            }
        }
    }

    [Test]
    public void CompilerCachesPtxByContent()
    {
        var info = Nvrtc();
        var dir = Path.Combine(Path.GetTempPath(), "bert-kernel-cache-" + Guid.NewGuid().ToString("N"));
        try
        {
            var compiler = new KernelCompiler(info, dir);
            var first = compiler.Compile("gather.cu", info.DefaultArchitecture);
            Assert.That(first.FromCache, Is.False);
            Assert.That(File.Exists(first.CachePath), Is.True);
            var second = compiler.Compile("gather.cu", info.DefaultArchitecture);
            Assert.That(second.FromCache, Is.True);
            Assert.That(second.Ptx, Is.EqualTo(first.Ptx));
            Assert.That(Path.GetFileName(first.CachePath), Does.StartWith($"gather-compute_{info.DefaultArchitecture}-"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Test]
    public void CompileErrorsCarryTheNvrtcLog()
    {
        var info = Nvrtc();
        var e = Assert.Throws<CudaException>(() => KernelCompiler.CompileToPtx("broken.cu",
            "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }", "", KernelCompiler.Options(info.DefaultArchitecture)));
        Assert.That(e!.Message, Does.Contain("broken.cu"));
        Assert.That(e.Message, Does.Contain("undefined_name"));
        Assert.That(e.ErrorName, Is.EqualTo("NVRTC_ERROR_COMPILATION"));
    }

    [Test]
    public void ArchitectureSelectionFallsBackToTheNewestSupported()
    {
        var info = new NvrtcInfo(11, 8, [35, 50, 60, 70, 75, 80, 86, 89, 90], "libnvrtc.so.11.2");
        Assert.That(info.ArchitectureFor(80), Is.EqualTo(80));
        Assert.That(info.ArchitectureFor(87), Is.EqualTo(86));
        Assert.That(info.ArchitectureFor(120), Is.EqualTo(90), "PTX for compute_90 runs on newer devices through the JIT");
        Assert.Throws<CudaException>(() => info.ArchitectureFor(30));
    }

    /// <summary>Issue 12: the kernels that stream whole rows (loss, residual LayerNorm forward, the fused LayerNorm
    /// backward) read and write global memory as 16-byte vectors (the bert_chunk16 loads and stores of load8/store8).</summary>
    [TestCase("loss.cu", "softmax_xent_forward_backward")]
    [TestCase("layernorm.cu", "residual_layernorm_forward")]
    [TestCase("layernorm.cu", "layernorm_backward_fused")]
    [TestCase("layernorm.cu", "layernorm_backward_fused_wide")]
    public void RowKernelsUse16ByteGlobalAccesses(string file, string kernel)
    {
        var info = Nvrtc();
        var ptx = Ptx(file, info.SupportedArchitectures.Contains(80) ? 80 : info.DefaultArchitecture);
        int start = ptx.IndexOf($".entry {kernel}(", StringComparison.Ordinal);
        Assert.That(start, Is.GreaterThanOrEqualTo(0), $"{kernel} in the PTX of {file}");
        int end = ptx.IndexOf(".entry ", start + 7, StringComparison.Ordinal);
        var body = end < 0 ? ptx[start..] : ptx[start..end];
        Assert.That(body, Does.Contain("ld.global.v2.u64"), $"{kernel}: 16-byte loads");
        Assert.That(body, Does.Contain("st.global.v2.u64"), $"{kernel}: 16-byte stores");
    }

    [Test]
    public void PtxParserReadsParameterSizesAndTypes()
    {
        const string ptx = """
            .visible .entry k(
            	.param .u64 k_param_0,
            	.param .u32 k_param_1,
            	.param .f32 k_param_2,
            	.param .align 8 .b8 k_param_3[24]
            )
            """;
        var entries = KernelSignatures.ParsePtx(ptx);
        Assert.That(entries["k"], Is.EqualTo(new[] { new PtxParam("u64", 8), new PtxParam("u32", 4), new PtxParam("f32", 4), new PtxParam("b8", 24) }));
    }

    [Test]
    public void SourceParserMapsCTypes()
    {
        const string src = """
            // extern "C" __global__ void commented(int x)
            extern "C" __global__ void k(const float* __restrict__ a, unsigned int b, long long c,
                unsigned long long d, float e, int f, bf16_t* g)
            { }
            extern "C" __global__ void __launch_bounds__(256, 2) bounded(int x) { }
            """;
        var kernels = KernelSignatures.ParseSource(src);
        Assert.That(kernels.Keys, Is.EqualTo(new[] { "k", "bounded" }));
        Assert.That(kernels["bounded"], Is.EqualTo(new[] { new KernelParam("x", KernelArgKind.Int32) }));
        Assert.That(kernels["k"], Is.EqualTo(new[]
        {
            new KernelParam("a", KernelArgKind.Pointer), new KernelParam("b", KernelArgKind.UInt32),
            new KernelParam("c", KernelArgKind.Int64), new KernelParam("d", KernelArgKind.UInt64),
            new KernelParam("e", KernelArgKind.Float32), new KernelParam("f", KernelArgKind.Int32),
            new KernelParam("g", KernelArgKind.Pointer),
        }));
    }
}
