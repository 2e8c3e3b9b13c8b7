using System.Runtime.InteropServices;
using Bert.Native.Interop;
using Bert.Runtime.Distributed;
using NUnit.Framework;

namespace Bert.Tests.Distributed;

/// <summary>The NCCL bindings without a GPU: the structs' layout as nccl.h declares it (64-bit Linux), the version
/// arithmetic, the library search order and the error when libnccl.so.2 is absent.</summary>
public class NcclBindingTests
{
    [Test]
    public void ConfigHasNccl218sLayoutAndInitializer()
    {
        // ncclConfig_v21700 + splitShare: size_t size; uint magic, version; int blocking, cgaClusterSize, minCTAs, maxCTAs;
        // const char* netName; int splitShare; padded to 8.
        Assert.That(Marshal.SizeOf<ncclConfig_t>(), Is.EqualTo(48));
        Assert.That(Marshal.OffsetOf<ncclConfig_t>(nameof(ncclConfig_t.Magic)), Is.EqualTo((nint)8));
        Assert.That(Marshal.OffsetOf<ncclConfig_t>(nameof(ncclConfig_t.Version)), Is.EqualTo((nint)12));
        Assert.That(Marshal.OffsetOf<ncclConfig_t>(nameof(ncclConfig_t.Blocking)), Is.EqualTo((nint)16));
        Assert.That(Marshal.OffsetOf<ncclConfig_t>(nameof(ncclConfig_t.MaxCTAs)), Is.EqualTo((nint)28));
        Assert.That(Marshal.OffsetOf<ncclConfig_t>(nameof(ncclConfig_t.NetName)), Is.EqualTo((nint)32));
        Assert.That(Marshal.OffsetOf<ncclConfig_t>(nameof(ncclConfig_t.SplitShare)), Is.EqualTo((nint)40));
        var c = ncclConfig_t.Initializer;
        Assert.That(c.Size, Is.EqualTo((nuint)48), "NCCL copies `size` bytes of the config: it must be this struct's size");
        Assert.That(c.Magic, Is.EqualTo(0xcafebeef));
        Assert.That(c.Version, Is.EqualTo(21800u));
        Assert.That(new[] { c.Blocking, c.CgaClusterSize, c.MinCTAs, c.MaxCTAs, c.SplitShare }, Is.All.EqualTo(int.MinValue));
        Assert.That(c.NetName, Is.EqualTo((nint)0));
    }

    [Test]
    public void UniqueIdIs128BytesByValue()
    {
        Assert.That(Marshal.SizeOf<ncclUniqueId>(), Is.EqualTo(128));
        var bytes = Enumerable.Range(0, 128).Select(i => (byte)(255 - i)).ToArray();
        Assert.That(ncclUniqueId.From(bytes).ToArray(), Is.EqualTo(bytes));
        Assert.That(() => ncclUniqueId.From(new byte[127]), Throws.ArgumentException.With.Message.Contains("128 bytes, got 127"));
    }

    [Test]
    public void EnumsHaveNcclHsValues()
    {
        Assert.That((int)ncclResult_t.ncclInProgress, Is.EqualTo(7));
        Assert.That((int)ncclResult_t.ncclRemoteError, Is.EqualTo(6));
        Assert.That((int)ncclDataType_t.ncclUint64, Is.EqualTo(5));
        Assert.That((int)ncclDataType_t.ncclFloat32, Is.EqualTo(7));
        Assert.That((int)ncclDataType_t.ncclFloat64, Is.EqualTo(8));
        Assert.That((int)ncclRedOp_t.ncclSum, Is.EqualTo(0));
    }

    [TestCase(2, 18, 0, 21800, "2.18.0")]
    [TestCase(2, 27, 3, 22703, "2.27.3")]
    [TestCase(2, 30, 1, 23001, "2.30.1")]
    public void VersionCodesFollowNcclVersion(int major, int minor, int patch, int code, string text)
    {
        Assert.That(Nccl.VersionCode(major, minor, patch), Is.EqualTo(code));
        Assert.That(Nccl.VersionText(code), Is.EqualTo(text));
    }

    [Test]
    public void SearchOrderTriesTheVariablesDirectoriesThenTheLoader()
    {
        if (OperatingSystem.IsWindows()) Assert.Ignore("NCCL is Linux only");
        var previous = Environment.GetEnvironmentVariable(NativeLibraries.PathVariable);
        try
        {
            Environment.SetEnvironmentVariable(NativeLibraries.PathVariable, "/opt/a:/opt/b");
            var order = NativeLibraries.SearchOrder(NativeLibraries.Nccl);
            Assert.That(order.Take(2), Is.EqualTo(new[] { "/opt/a/libnccl.so.2", "/opt/b/libnccl.so.2" }));
            Assert.That(order[^1], Is.EqualTo("libnccl.so.2"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(NativeLibraries.PathVariable, previous);
        }
    }

    [Test]
    public void NcclHomeAndAPythonEnvironmentsWheelAreSearched()
    {
        var root = Directory.CreateTempSubdirectory("bert-nccl-dirs").FullName;
        try
        {
            var wheel = Directory.CreateDirectory(Path.Combine(root, "venv", "lib", "python3.12", "site-packages", "nvidia", "nccl", "lib")).FullName;
            var home = Directory.CreateDirectory(Path.Combine(root, "nccl", "lib")).FullName;
            var env = new Dictionary<string, string?>
            {
                ["NCCL_HOME"] = Path.Combine(root, "nccl"),
                ["VIRTUAL_ENV"] = Path.Combine(root, "venv"),
                ["CONDA_PREFIX"] = Path.Combine(root, "no-such-conda"),
            };
            Assert.That(NativeLibraries.NcclDirectories(n => env.GetValueOrDefault(n)), Is.EqualTo(new[] { home, wheel }));
            Assert.That(NativeLibraries.NcclDirectories(_ => null), Is.Empty);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Test]
    public void AMissingLibncclIsAClearError()
    {
        if (NativeLibraries.TryLoad(NativeLibraries.Nccl, out _, out var path))
            Assert.Ignore($"this machine has NCCL ({path}); the missing-library path is not exercised");
        Assert.That(path, Does.StartWith("could not load NCCL libnccl.so.2").And.Contain("nvidia-nccl-cu13").And.Contain("tried").And.Contain("libnccl.so.2"));
        var e = Assert.Throws<CommunicatorException>(() => Nccl.Load())!;
        Assert.That(e.Message, Is.EqualTo(path));
    }
}
