using Bert.Native;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>The per-launch check that catches marshalling mistakes (wrong order, kind, count, block shape,
/// grid limits) before cuLaunchKernel sees them.</summary>
[TestFixture]
public class KernelLaunchValidationTests
{
    private static readonly CudaDeviceInfo Device = new()
    {
        Ordinal = 0, Name = "test", ComputeMajor = 8, ComputeMinor = 0, TotalMemory = 1L << 30,
    };

    private static KernelArg[] ConvertArgs() =>
    [
        KernelArg.Ptr("out", 0x1000), KernelArg.I32("outType", 0), KernelArg.Ptr("in", 0x2000),
        KernelArg.I32("inType", 1), KernelArg.I64("count", 10),
    ];

    [Test]
    public void MatchingArgumentsPass() =>
        Assert.DoesNotThrow(() => KernelArg.Validate(KernelCatalog.ConvertDtype, new Dim3(1), new Dim3(256), ConvertArgs(), Device));

    [Test]
    public void SwappedArgumentsAreNamed()
    {
        var args = ConvertArgs();
        (args[0], args[2]) = (args[2], args[0]);
        var e = Assert.Throws<InvalidOperationException>(() => KernelArg.Validate(KernelCatalog.ConvertDtype, new Dim3(1), new Dim3(256), args, Device));
        Assert.That(e!.Message, Does.Contain("convert_dtype").And.Contain("'in'").And.Contain("out"));
    }

    [Test]
    public void WrongKindIsRejected()
    {
        var args = ConvertArgs();
        args[4] = KernelArg.I32("count", 10);
        Assert.Throws<InvalidOperationException>(() => KernelArg.Validate(KernelCatalog.ConvertDtype, new Dim3(1), new Dim3(256), args, Device));
    }

    [Test]
    public void WrongCountIsRejected() =>
        Assert.Throws<InvalidOperationException>(() =>
            KernelArg.Validate(KernelCatalog.ConvertDtype, new Dim3(1), new Dim3(256), ConvertArgs()[..4], Device));

    [Test]
    public void FixedBlockShapeIsEnforced()
    {
        KernelArg[] args =
        [
            KernelArg.Ptr("out", 1), KernelArg.I32("outType", 0), KernelArg.Ptr("mean", 1), KernelArg.Ptr("rstd", 1),
            KernelArg.Ptr("in", 1), KernelArg.I32("inType", 0), KernelArg.Ptr("gamma", 1), KernelArg.Ptr("beta", 1),
            KernelArg.I32("rows", 3), KernelArg.I32("hidden", 32), KernelArg.F32("eps", 1e-5f),
        ];
        Assert.DoesNotThrow(() => KernelArg.Validate(KernelCatalog.LayerNormForward, new Dim3(1), new Dim3(256), args, Device));
        Assert.Throws<InvalidOperationException>(() => KernelArg.Validate(KernelCatalog.LayerNormForward, new Dim3(1), new Dim3(128), args, Device));
    }

    [Test]
    public void GridLimitsAreEnforced()
    {
        Assert.Throws<InvalidOperationException>(() =>
            KernelArg.Validate(KernelCatalog.ConvertDtype, new Dim3(1, 65536), new Dim3(256), ConvertArgs(), Device));
        Assert.Throws<InvalidOperationException>(() =>
            KernelArg.Validate(KernelCatalog.ConvertDtype, new Dim3(0), new Dim3(256), ConvertArgs(), Device));
        Assert.Throws<InvalidOperationException>(() =>
            KernelArg.Validate(KernelCatalog.ConvertDtype, new Dim3(1), new Dim3(100), ConvertArgs(), Device));
    }

    [Test]
    public void CatalogIndicesAreDenseAndNamesUnique()
    {
        var all = KernelCatalog.All;
        Assert.That(all.Select(k => k.Index), Is.EqualTo(Enumerable.Range(0, all.Count)));
        Assert.That(all.Select(k => k.Name), Is.Unique);
    }

    [Test]
    public void ArgumentsMarshalToTheirLowBytes()
    {
        Assert.That(KernelArg.F32("x", 1.5f).Bits, Is.EqualTo((ulong)BitConverter.SingleToUInt32Bits(1.5f)));
        Assert.That(KernelArg.I32("x", -1).Bits, Is.EqualTo(0xffffffffUL), "4-byte values fill the low half only");
        Assert.That(KernelArg.I64("x", -1).Bits, Is.EqualTo(ulong.MaxValue));
        Assert.That(KernelArgKind.Int32.Size(), Is.EqualTo(4));
        Assert.That(KernelArgKind.Pointer.Size(), Is.EqualTo(8));
    }
}
