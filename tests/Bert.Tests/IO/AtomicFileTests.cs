using System.Text;
using Bert.Runtime.IO;
using NUnit.Framework;

namespace Bert.Tests.IO;

public class AtomicFileTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("atomic");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private static Action<Stream> Text(string s) => stream =>
    {
        // Several writes, so a crash can fall between them.
        foreach (var part in s.Chunk(4)) stream.Write(Encoding.UTF8.GetBytes(part));
    };

    [Test]
    public void WriteReplacesTheTargetAndLeavesNoTempFile()
    {
        string path = _dir["a.txt"];
        AtomicFile.Write(PhysicalFileSystem.Instance, path, Text("first version"));
        AtomicFile.Write(PhysicalFileSystem.Instance, path, Text("second"));
        Assert.That(File.ReadAllText(path), Is.EqualTo("second"));
        Assert.That(Directory.GetFiles(_dir.Path), Is.EqualTo(new[] { path }));
    }

    [Test]
    public void CrashAtEveryOperationLeavesOldOrNewContentNeverTorn()
    {
        string path = _dir["a.txt"];
        AtomicFile.Write(PhysicalFileSystem.Instance, path, Text("old content"));
        var probe = new FaultInjectingFileSystem();
        AtomicFile.Write(probe, path, Text("new content, longer than the old one"));
        int operations = probe.Operations;
        Assert.That(operations, Is.GreaterThan(5));

        for (int crashAt = 0; crashAt < operations; crashAt++)
        {
            AtomicFile.Write(PhysicalFileSystem.Instance, path, Text("old content"));
            var fs = new FaultInjectingFileSystem { CrashAtOperation = crashAt };
            Assert.Throws<SimulatedCrashException>(() => AtomicFile.Write(fs, path, Text("new content, longer than the old one")));
            string now = File.ReadAllText(path);
            Assert.That(now, Is.EqualTo("old content").Or.EqualTo("new content, longer than the old one"), $"crash at #{crashAt}: {string.Join("; ", fs.Log)}");
            // A crashed writer cannot clean up after itself; the next one does.
            Assert.That(AtomicFile.CleanStale(PhysicalFileSystem.Instance, _dir.Path), Is.LessThanOrEqualTo(1));
            Assert.That(Directory.GetFiles(_dir.Path), Is.EqualTo(new[] { path }));
        }
    }

    [Test]
    public void FullDiskGivesDiskFullExceptionAndKeepsOldFile()
    {
        string path = _dir["a.txt"];
        AtomicFile.Write(PhysicalFileSystem.Instance, path, Text("old content"));
        var fs = new FaultInjectingFileSystem { DiskFullAfterBytes = 10 };
        var e = Assert.Throws<DiskFullException>(() => AtomicFile.Write(fs, path, Text("new content that does not fit")))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("no space left"));
        Assert.That(e.Path, Is.EqualTo(path));
        Assert.That(DiskFull.Is(e));
        Assert.That(e.InnerException, Is.InstanceOf<IOException>());
        Assert.That(File.ReadAllText(path), Is.EqualTo("old content"));
        Assert.That(Directory.GetFiles(_dir.Path), Is.EqualTo(new[] { path }), "the temp file is removed after a failure");
    }

    [Test]
    public void ExceptionInTheCallbackRemovesTheTempFile()
    {
        string path = _dir["a.txt"];
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(PhysicalFileSystem.Instance, path, s =>
        {
            s.Write("partial"u8);
            throw new InvalidOperationException("serializer failed");
        }));
        Assert.That(Directory.GetFiles(_dir.Path), Is.Empty);
    }

    [Test]
    public void CleanStaleRemovesOnlyTempEntries()
    {
        File.WriteAllText(_dir["keep.txt"], "x");
        File.WriteAllText(_dir["keep.txt.tmp-0badc0de"], "x");
        Directory.CreateDirectory(_dir["step-000001.tmp-12345678"]);
        File.WriteAllText(_dir["step-000001.tmp-12345678/model.safetensors"], "x");
        Directory.CreateDirectory(_dir["step-000001"]);
        Assert.That(AtomicFile.CleanStale(PhysicalFileSystem.Instance, _dir.Path), Is.EqualTo(2));
        Assert.That(Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName), Is.EquivalentTo(new[] { "keep.txt", "step-000001" }));
    }

    [Test]
    public void TempPathsAreUniqueAndBesideTheTarget()
    {
        string a = AtomicFile.TempPath("/x/y/model.safetensors"), b = AtomicFile.TempPath("/x/y/model.safetensors");
        Assert.That(a, Does.StartWith("/x/y/model.safetensors.tmp-"));
        Assert.That(a, Is.Not.EqualTo(b));
    }

    [Test]
    public void PhysicalDirectoryFlushWorks()
    {
        Assert.DoesNotThrow(() => PhysicalFileSystem.Instance.FlushDirectory(_dir.Path));
        Assert.That(PhysicalFileSystem.Instance.AvailableFreeSpace(_dir.Path), Is.GreaterThan(0));
    }
}

public class XxHash64Tests
{
    // Reference values of XXH64 (seed 0 unless given): the published vectors for "", "abc" and the
    // fox sentence, and values from System.IO.Hashing.XxHash64 for the longer patterned inputs.
    [TestCase("", 0UL, 0xef46db3751d8e999UL)]
    [TestCase("abc", 0UL, 0x44bc2cf5ad770999UL)]
    [TestCase("The quick brown fox jumps over the lazy dog", 0UL, 0x0b242d361fda71bcUL)]
    public void KnownAnswers(string text, ulong seed, ulong expected) =>
        Assert.That(XxHash64.Hash(Encoding.UTF8.GetBytes(text), seed), Is.EqualTo(expected));

    private static byte[] Pattern(int n)
    {
        var b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte)(i * 7 + 3);
        return b;
    }

    [Test]
    public void LongInputsAndSeeds()
    {
        Assert.That(XxHash64.Hash(Pattern(1000)), Is.EqualTo(0x5f235fa033f1a3fbUL));
        Assert.That(XxHash64.Hash(Pattern(37)), Is.EqualTo(0xe32ef63802f5a3fdUL));
        Assert.That(XxHash64.Hash(Pattern(100), 12345), Is.EqualTo(0xacb8a02891fea7d2UL));
    }

    [Test]
    public void IncrementalEqualsOneShotForAnySplit()
    {
        var data = Pattern(1000);
        var rng = new Random(5);
        for (int trial = 0; trial < 200; trial++)
        {
            var h = new XxHash64();
            for (int pos = 0; pos < data.Length;)
            {
                int n = Math.Min(data.Length - pos, rng.Next(0, 80));
                h.Append(data.AsSpan(pos, n));
                pos += n;
            }
            Assert.That(h.Digest(), Is.EqualTo(0x5f235fa033f1a3fbUL));
        }
    }
}
