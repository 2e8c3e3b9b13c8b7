using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Bert.Runtime.IO;
using NUnit.Framework;

namespace Bert.Tests.IO;

public class SafetensorsTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("st");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    internal static string GoldenDirectory()
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "Bert.Tests", "IO", "golden");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("tests/Bert.Tests/IO/golden not found above " + TestContext.CurrentContext.TestDirectory);
    }

    private static float[] Values(int n, int seed)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-6, 5)));
        // Edge values every type must carry (within its range).
        v[0] = 0f;
        v[1] = -0f;
        v[2] = 1f;
        v[3] = float.PositiveInfinity;
        v[4] = float.NegativeInfinity;
        v[5] = float.NaN;
        return v;
    }

    [TestCase(SafetensorsDType.F32)]
    [TestCase(SafetensorsDType.F16)]
    [TestCase(SafetensorsDType.BF16)]
    public void RoundTrip_EveryWritableDType_WithMetadata(SafetensorsDType dtype)
    {
        // Odd sizes; a scalar and an empty tensor too.
        var a = Values(13 * 7, 1);
        var b = Values(37, 2);
        var scalar = new[] { 0.375f };
        var tensors = new List<SafetensorsEntry>
        {
            new("bert.a", dtype, [13, 7], a),
            new("bert.b", dtype, [37], b),
            new("scalar", dtype, [], scalar),
            new("empty", dtype, [0, 5], Array.Empty<float>()),
        };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode ✓ \"quoted\"" };
        string path = _dir["rt.safetensors"];
        SafetensorsWriter.Write(PhysicalFileSystem.Instance, path, tensors, metadata);

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Metadata, Is.EquivalentTo(metadata));
        Assert.That(file.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "bert.a", "bert.b", "scalar", "empty" }));
        Assert.That(file.DataStart % 8, Is.EqualTo(0), "header padded to a multiple of 8");
        Assert.That(file["bert.a"].Shape, Is.EqualTo(new long[] { 13, 7 }));
        Assert.That(file["scalar"].Shape, Is.Empty);
        Assert.That(file["empty"].ElementCount, Is.EqualTo(0));
        Assert.That(file.FileLength, Is.EqualTo(file.DataStart + (a.Length + b.Length + 1) * dtype.Size()));

        foreach (var (name, source) in new[] { ("bert.a", a), ("bert.b", b), ("scalar", scalar) })
        {
            var t = file[name];
            Assert.That(t.DType, Is.EqualTo(dtype));
            var read = t.ReadAsFloat32();
            for (int i = 0; i < source.Length; i++)
            {
                float expected = dtype switch
                {
                    SafetensorsDType.F32 => source[i],
                    SafetensorsDType.F16 => (float)(Half)source[i],
                    _ => FloatConversions.BFloat16ToSingle(FloatConversions.SingleToBFloat16(source[i])),
                };
                if (float.IsNaN(expected)) Assert.That(float.IsNaN(read[i]), $"{name}[{i}]");
                else Assert.That(BitConverter.SingleToInt32Bits(read[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected)), $"{name}[{i}]");
                if (float.IsFinite(source[i]) && Math.Abs(source[i]) > 1e-4f && Math.Abs(source[i]) < 6e4f)
                {
                    double tolerance = dtype switch { SafetensorsDType.F32 => 0, SafetensorsDType.F16 => 1.0 / 2048, _ => 1.0 / 256 };
                    Assert.That(Math.Abs(read[i] - source[i]), Is.LessThanOrEqualTo(tolerance * Math.Abs(source[i])), $"{name}[{i}] relative error");
                }
            }
        }
        Assert.That(file["empty"].ReadAsFloat32(), Is.Empty);
    }

    [Test]
    public void BFloat16_RoundsToNearestEven()
    {
        // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties go to the even mantissa (1).
        Assert.That(FloatConversions.SingleToBFloat16(1f + 1f / 256), Is.EqualTo((ushort)0x3F80));
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
        Assert.That(FloatConversions.SingleToBFloat16(1f + 3f / 256), Is.EqualTo((ushort)0x3F82));
        // Just above a tie rounds up.
        Assert.That(FloatConversions.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808001)), Is.EqualTo((ushort)0x3F81));
        Assert.That(FloatConversions.SingleToBFloat16(float.MaxValue), Is.EqualTo((ushort)0x7F80), "overflow rounds to +inf");
        Assert.That(FloatConversions.SingleToBFloat16(float.NegativeInfinity), Is.EqualTo((ushort)0xFF80));
        ushort nan = FloatConversions.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x7F800001));
        Assert.That(float.IsNaN(FloatConversions.BFloat16ToSingle(nan)), "a NaN with only low payload bits must not become infinity");
        Assert.That(FloatConversions.BFloat16ToSingle((ushort)0xC049), Is.EqualTo(-3.140625f));
    }

    [Test]
    public void ReadsTheGoldenFileWrittenByTorch()
    {
        string golden = GoldenDirectory();
        using var file = SafetensorsFile.Open(Path.Combine(golden, "torch_mixed.safetensors"));
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(golden, "torch_mixed.expected.json")));
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
        var names = new List<string>();
        foreach (var entry in doc.RootElement.EnumerateObject())
        {
            if (entry.Name.StartsWith('@')) continue;
            names.Add(entry.Name);
            var t = file[entry.Name];
            Assert.That(t.DType.Name(), Is.EqualTo(entry.Value.GetProperty("dtype").GetString()), entry.Name);
            Assert.That(t.Shape, Is.EqualTo(entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray()), entry.Name);
            var expected = ExpectedValues(entry.Value);
            var read = t.ReadAsFloat32();
            Assert.That(read.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(expected.Select(BitConverter.SingleToInt32Bits)), entry.Name);
        }
        Assert.That(file.Tensors.Select(t => t.Name), Is.EquivalentTo(names));
    }

    [Test]
    public void OurRoundingMatchesTorch()
    {
        string golden = GoldenDirectory();
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(golden, "torch_mixed.expected.json")));
        var root = doc.RootElement;
        foreach (var (source, f16, bf16) in new[] { ("@source.base", "encoder.weight_f16", "encoder.weight_bf16"), ("@source.edge", "edge_f16", "edge_bf16") })
        {
            var x = ExpectedValues(root.GetProperty(source));
            var h = new ushort[x.Length];
            var hf = new float[x.Length];
            FloatConversions.SingleToHalf(h, x);
            FloatConversions.HalfToSingle(hf, h);
            Assert.That(hf.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(ExpectedValues(root.GetProperty(f16)).Select(BitConverter.SingleToInt32Bits)), f16);
            var b = new ushort[x.Length];
            var bf = new float[x.Length];
            FloatConversions.SingleToBFloat16(b, x);
            FloatConversions.BFloat16ToSingle(bf, b);
            Assert.That(bf.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(ExpectedValues(root.GetProperty(bf16)).Select(BitConverter.SingleToInt32Bits)), bf16);
        }
    }

    [Test]
    public void OurWriterReproducesTheReferenceLayoutByteForByte()
    {
        // Same tensors, same order as safetensors' save_file chose: the file must be identical.
        string golden = Path.Combine(GoldenDirectory(), "torch_mixed.safetensors");
        using var file = SafetensorsFile.Open(golden);
        var entries = new List<SafetensorsEntry>();
        foreach (var t in file.Tensors)
        {
            var bytes = new byte[t.ByteLength];
            t.ReadBytes(bytes);
            int[] shape = t.Shape.Select(d => (int)d).ToArray();
            entries.Add(t.DType.IsWritableFloat()
                ? new SafetensorsEntry(t.Name, t.DType, shape, t.ReadAsFloat32())
                : SafetensorsEntry.FromBytes(t.Name, t.DType, shape, bytes));
        }
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["source"] = "make_golden.py" };
        using var ms = new MemoryStream();
        SafetensorsWriter.WriteTo(ms, entries, metadata);
        Assert.That(ms.ToArray(), Is.EqualTo(File.ReadAllBytes(golden)));
    }

    private static float[] ExpectedValues(JsonElement e) =>
        e.GetProperty("values").EnumerateArray().Select(v => v.ValueKind == JsonValueKind.String
            ? v.GetString() switch { "inf" => float.PositiveInfinity, "-inf" => float.NegativeInfinity, _ => float.NaN }
            : (float)v.GetDouble()).ToArray();

    [Test]
    public void WriterRejectsInconsistentEntries()
    {
        var fs = PhysicalFileSystem.Instance;
        string path = _dir["bad.safetensors"];
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(fs, path, [new("a", SafetensorsDType.F32, [2, 3], new float[5])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(fs, path,
            [new("a", SafetensorsDType.F32, [1], new float[1]), new("a", SafetensorsDType.F16, [1], new float[1])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(fs, path, [new("a", SafetensorsDType.I64, [1], new float[1])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(fs, path, [new("__metadata__", SafetensorsDType.F32, [1], new float[1])]));
        Assert.That(File.Exists(path), Is.False, "a rejected write leaves nothing behind");
        Assert.That(Directory.GetFiles(_dir.Path), Is.Empty, "and no temp file");
    }

    [Test]
    public void ReadIntoWrongSizedDestinationThrows()
    {
        string path = _dir["a.safetensors"];
        SafetensorsWriter.Write(PhysicalFileSystem.Instance, path, [new("a", SafetensorsDType.F32, [4], new float[4])]);
        using var file = SafetensorsFile.Open(path);
        Assert.Throws<ArgumentException>(() => file["a"].ReadAsFloat32(new float[3]));
        Assert.Throws<KeyNotFoundException>(() => _ = file["b"]);
    }

    // ---- Invalid files: every one must be rejected with the typed error naming file, field and value.

    /// <summary>Writes a file: the 8-byte length (given, or the header's), the header bytes, then data.</summary>
    private static void WriteRaw(string path, byte[] header, int dataBytes, ulong? length = null)
    {
        using var f = File.Create(path);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, length ?? (ulong)header.Length);
        f.Write(prefix);
        f.Write(header);
        f.Write(new byte[dataBytes]);
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    public static IEnumerable<TestCaseData> InvalidFiles()
    {
        const string ok = "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]";
        TestCaseData Case(string name, byte[] header, int data, string field, string phrase, ulong? length = null) =>
            new TestCaseData(header, data, length, field, phrase).SetName("Invalid_" + name);

        yield return new TestCaseData(Array.Empty<byte>(), -1, null, "header length", "too short").SetName("Invalid_FileShorterThan8Bytes");
        yield return Case("HeaderLengthBeyondFile", Utf8("{}"), 0, "header length", "past the end", 1000);
        yield return Case("HeaderOver100MB", Utf8("{}"), 0, "header length", "limit", 200_000_000);
        yield return Case("InvalidUtf8", [(byte)'{', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)':', (byte)'1', (byte)'}'], 0, "header", "UTF-8");
        yield return Case("TruncatedJson", Utf8("{\"a\":{\"dtype\":"), 0, "header", "not valid JSON");
        yield return Case("NotAnObject", Utf8("[1,2]   "), 0, "header", "not a JSON object");
        yield return Case("TrailingContent", Utf8("{} x"), 0, "header", "not valid JSON");
        yield return Case("EntryNotAnObject", Utf8("{\"a\":[1]}"), 0, "a", "must be an object");
        yield return Case("MissingDtype", Utf8("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}"), 8, "a.dtype", "lacks");
        yield return Case("MissingShape", Utf8("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}"), 8, "a.shape", "lacks");
        yield return Case("MissingOffsets", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}"), 8, "a.data_offsets", "lacks");
        yield return Case("DtypeNotString", Utf8("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}"), 8, "a.dtype", "must be a string");
        yield return Case("UnknownDtype", Utf8("{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}"), 8, "a.dtype", "unknown dtype");
        yield return Case("NegativeShape", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}"), 8, "a.shape", "non-negative");
        yield return Case("FractionalShape", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}"), 8, "a.shape", "non-negative");
        yield return Case("OverflowingShape", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}"), 8, "a.shape", "overflows");
        yield return Case("OverflowingByteLength", Utf8("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}"), 8, "a", "size mismatch");
        yield return Case("OffsetsArity", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}"), 8, "a.data_offsets", "[begin, end]");
        yield return Case("EndBeforeBegin", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}"), 8, "a.data_offsets", "before begin");
        yield return Case("OffsetsOutOfRange", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"), 8, "a.data_offsets", "out of range");
        yield return Case("SizeMismatch", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}"), 8, "a", "size mismatch");
        yield return Case("Overlap", Utf8("{\"a\":{" + ok + "},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"), 12, "b.data_offsets", "overlaps");
        yield return Case("Gap", Utf8("{\"a\":{" + ok + "},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}"), 16, "b.data_offsets", "gap");
        yield return Case("NotStartingAtZero", Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"), 12, "a.data_offsets", "offset 0");
        yield return Case("NotEndingAtDataEnd", Utf8("{\"a\":{" + ok + "}}"), 12, "a.data_offsets", "data buffer has 12 bytes");
        yield return Case("DataWithoutTensors", Utf8("{}      "), 4, "data", "non-empty");
        yield return Case("DuplicateTensorName", Utf8("{\"a\":{" + ok + "},\"a\":{" + ok + "}}"), 8, "a", "duplicate tensor name");
        yield return Case("DuplicateKeyInEntry", Utf8("{\"a\":{" + ok + ",\"dtype\":\"F16\"}}"), 8, "a.dtype", "duplicate key");
        yield return Case("MetadataNotObject", Utf8("{\"__metadata__\":[\"x\"]}"), 0, "__metadata__", "object of string values");
        yield return Case("MetadataNonString", Utf8("{\"__metadata__\":{\"step\":12}}"), 0, "__metadata__.step", "must be strings");
        yield return Case("MetadataDuplicate", Utf8("{\"__metadata__\":{},\"__metadata__\":{}}"), 0, "__metadata__", "duplicate");
    }

    [TestCaseSource(nameof(InvalidFiles))]
    public void InvalidFileIsRejectedWithTypedError(byte[] header, int dataBytes, ulong? length, string field, string phrase)
    {
        string path = _dir["bad.safetensors"];
        if (dataBytes < 0) File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        else WriteRaw(path, header, dataBytes, length);
        var e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.File, Is.EqualTo(path));
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.Contain(phrase));
        Assert.That(e.Message, Does.Contain(path).And.Contain(field));
        Assert.That(e.Value, Is.Not.Empty);
    }

    [Test]
    public void InvalidCaseTableIsLargeEnough() => Assert.That(InvalidFiles().Count(), Is.GreaterThanOrEqualTo(15));

    [Test]
    public void UnknownPerTensorKeysAreIgnoredAndPaddingAccepted()
    {
        string path = _dir["extra.safetensors"];
        WriteRaw(path, Utf8("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4],\"extra\":{\"x\":[1]}}}    "), 4);
        using var file = SafetensorsFile.Open(path);
        Assert.That(file["a"].ReadAsFloat32(), Is.EqualTo(new[] { 0f, 0f }));
    }

    [Test]
    public void ReaderNeverAllocatesFromHeaderSizes()
    {
        // A header claiming a 2^40-element tensor in a tiny file fails validation before any read.
        string path = _dir["huge.safetensors"];
        WriteRaw(path, Utf8("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776],\"data_offsets\":[0,4398046511104]}}"), 8);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20));
    }
}
