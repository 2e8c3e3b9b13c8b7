using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>Allocate, Upload, Download, Copy, Zero and their checks.</summary>
public abstract class MemoryOpTests : OpTestBase
{
    [TestCase(DType.F32)]
    [TestCase(DType.I32)]
    [TestCase(DType.BF16)]
    public void Allocate_IsZeroFilled(DType type)
    {
        var t = Alloc(1001, type);
        Assert.That(t.Length, Is.EqualTo(1001));
        Assert.That(t.DType, Is.EqualTo(type));
        Assert.That(t.IsNull, Is.False);
        if (type == DType.BF16)
        {
            var raw = new ushort[1001];
            Backend.Download<ushort>(raw, t);
            Assert.That(raw, Is.All.EqualTo((ushort)0));
        }
        else if (type == DType.I32)
        {
            var raw = new int[1001];
            Backend.Download<int>(raw, t);
            Assert.That(raw, Is.All.EqualTo(0));
        }
        else
        {
            Assert.That(Read(t), Is.All.EqualTo(0f));
        }
    }

    [Test]
    public void UploadDownload_RoundTrips_AndSlicesAddressElements()
    {
        var data = RandomFloats(new Random(90), 257);
        var t = Alloc(257, DType.F32);
        Backend.Upload<float>(t, data);
        Assert.That(Read(t), Is.EqualTo(data));
        var slice = t.Slice(100, 50);
        Assert.That(Read(slice), Is.EqualTo(data[100..150]));

        var ints = Enumerable.Range(-5, 33).ToArray();
        var ti = Alloc(33, DType.I32);
        Backend.Upload<int>(ti, ints);
        var back = new int[33];
        Backend.Download<int>(back, ti);
        Assert.That(back, Is.EqualTo(ints));
    }

    [Test]
    public void Copy_CopiesAndZero_Clears()
    {
        var data = RandomFloats(new Random(91), 77);
        var a = Param(data);
        var b = Alloc(77, DType.F32);
        Backend.Copy(b, a);
        Backend.Synchronize();
        Assert.That(Read(b), Is.EqualTo(data));
        Backend.Zero(a.Slice(10, 20));
        var expected = (float[])data.Clone();
        Array.Clear(expected, 10, 20);
        Assert.That(Read(a), Is.EqualTo(expected));
    }

    [Test]
    public void Copy_LengthOrTypeMismatch_Throws()
    {
        var a = Alloc(10, DType.F32);
        Assert.Throws<ArgumentException>(() => Backend.Copy(Alloc(11, DType.F32), a));
        Assert.Throws<ArgumentException>(() => Backend.Copy(Alloc(10, DType.I32), a));
    }

    [Test]
    public void UploadDownload_TooLongOrWrongType_Throws()
    {
        var t = Alloc(10, DType.F32);
        Assert.Throws<ArgumentException>(() => Backend.Upload<float>(t, new float[11]));
        Assert.Throws<ArgumentException>(() => Backend.Upload<int>(t, new int[10]));
        Assert.Throws<ArgumentException>(() => Backend.Download<float>(new float[11], t));
        Assert.Throws<ArgumentException>(() => Backend.Download<int>(new int[10], t));
    }
}
