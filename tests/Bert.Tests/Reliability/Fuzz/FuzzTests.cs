using System.Globalization;
using NUnit.Framework;

namespace Bert.Tests.Reliability.Fuzz;

/// <summary>
/// Seeded mutation fuzzing of every loader and of CLI parsing. Goal: no crash (an exception other
/// than the target's documented format exception), no input running over 5 s, and no allocation
/// beyond a small multiple of the input's size. CI runs a fixed number of inputs per target;
/// scripts/fuzz.sh runs many more through the environment variables:
/// <list type="bullet">
/// <item>BERT_FUZZ_ITERATIONS: inputs per target (default <see cref="DefaultIterations"/>);</item>
/// <item>BERT_FUZZ_SECONDS: stop a target after this long;</item>
/// <item>BERT_FUZZ_SEED: the run seed (default 1); BERT_FUZZ_FIRST: first input index (replay one input
/// with BERT_FUZZ_FIRST=i BERT_FUZZ_ITERATIONS=1);</item>
/// <item>BERT_FUZZ_FINDINGS: directory for the inputs that failed; BERT_FUZZ_REPORT: a file each target's summary is appended to.</item>
/// </list>
/// </summary>
[NonParallelizable] // the CLI target changes the working directory and the console writers
public class FuzzTests
{
    public static readonly string[] Targets = ["safetensors", "config", "vocab", "corpus", "shard", "trainer-state", "manifest", "cli"];

    private static readonly Dictionary<string, long> DefaultIterations = new(StringComparer.Ordinal)
    {
        ["safetensors"] = 20_000, ["config"] = 20_000, ["vocab"] = 8_000, ["corpus"] = 6_000, ["shard"] = 30_000,
        ["trainer-state"] = 30_000, ["manifest"] = 8_000, ["cli"] = 6_000,
    };

    internal static FuzzTarget Create(string name) => name switch
    {
        "safetensors" => new SafetensorsTarget(),
        "config" => new ConfigTarget(),
        "vocab" => new VocabTarget(),
        "corpus" => new CorpusTarget(),
        "shard" => new ShardTarget(),
        "trainer-state" => new TrainerStateTarget(),
        "manifest" => new ManifestTarget(),
        "cli" => new CliTarget(),
        _ => throw new ArgumentException($"unknown fuzz target '{name}'; targets: {string.Join(", ", Targets)}", nameof(name)),
    };

    [TestCaseSource(nameof(Targets))]
    public void NoCrashesHangsOrUnboundedAllocations(string name)
    {
        long iterations = Env("BERT_FUZZ_ITERATIONS") ?? DefaultIterations[name];
        long? seconds = Env("BERT_FUZZ_SECONDS");
        ulong seed = (ulong)(Env("BERT_FUZZ_SEED") ?? 1);
        long first = Env("BERT_FUZZ_FIRST") ?? 0;
        string findings = Environment.GetEnvironmentVariable("BERT_FUZZ_FINDINGS")
            ?? Path.Combine(TestContext.CurrentContext.WorkDirectory, "fuzz-findings");

        using var target = Create(name);
        var report = FuzzRunner.Run(target, seed, iterations, TimeSpan.FromSeconds(5),
            seconds is { } s ? TimeSpan.FromSeconds(s) : null, findings, first);
        string summary = report.Summary();
        TestContext.Out.WriteLine(summary);
        if (Environment.GetEnvironmentVariable("BERT_FUZZ_REPORT") is { Length: > 0 } reportFile)
            File.AppendAllText(reportFile, summary + Environment.NewLine);

        Assert.That(report.Clean, Is.True, summary + "\n\n" + string.Join("\n\n",
            report.Crashes.Concat(report.AllocationViolations).Take(5).Select(f => $"#{f.Index}: {f.Detail}")));
        Assert.That(report.Inputs, Is.GreaterThan(0));
        Assert.That(report.Accepted + report.Rejected + report.Stalls, Is.EqualTo(report.Inputs));
    }

    private static long? Env(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } text ? long.Parse(text, CultureInfo.InvariantCulture) : null;
}

/// <summary>The harness itself: reproducible inputs, and each kind of finding is detected.</summary>
public class FuzzHarnessTests
{
    [Test]
    public void InputsAreAFunctionOfSeedAndIndex()
    {
        using var target = new TrainerStateTarget();
        var mutator = new Mutator(target.Seeds, target.Hints);
        for (long i = 0; i < 200; i++)
        {
            var a = FuzzRng.ForInput(7, i);
            var b = FuzzRng.ForInput(7, i);
            Assert.That(target.Mutate(b, b.Pick(target.Seeds), mutator), Is.EqualTo(target.Mutate(a, a.Pick(target.Seeds), mutator)));
        }
        var distinct = Enumerable.Range(0, 200).Select(i =>
        {
            var r = FuzzRng.ForInput(7, i);
            return Convert.ToBase64String(target.Mutate(r, r.Pick(target.Seeds), mutator));
        }).Distinct().Count();
        Assert.That(distinct, Is.GreaterThan(150), "mutations should differ from input to input");
    }

    [Test]
    public void DetectsCrashesHangsAndLargeAllocations()
    {
        using var target = new PlantedBugTarget();
        var report = FuzzRunner.Run(target, seed: 3, count: 400, timeout: TimeSpan.FromSeconds(1));
        Assert.That(report.Crashes.Select(c => c.Summary), Has.Some.Contains(nameof(IndexOutOfRangeException)));
        Assert.That(report.Hangs, Has.Count.EqualTo(1));
        // The planted slow-once input is a stall, not a hang; on a loaded machine an ordinary input may stall too.
        Assert.That(report.Stalls, Is.GreaterThanOrEqualTo(1), "an input slow once but fast on the retry is a stall, not a hang");
        Assert.That(report.AllocationViolations, Is.Not.Empty);
        Assert.That(report.Rejected, Is.GreaterThan(0));
        Assert.That(report.Inputs, Is.EqualTo(400));
    }

    /// <summary>Rejects most inputs properly, but crashes on a 0x00 first byte, allocates from a length
    /// field on 0x01, hangs on the first input starting 0x02 (every time it sees it) and stalls once
    /// on the first input starting 0x03.</summary>
    private sealed class PlantedBugTarget : FuzzTarget
    {
        private byte[]? _hangs;
        private int _stalled;

        public override string Name => "planted";
        public override IReadOnlyList<byte[]> Seeds { get; } = [[0x10, 0x20, 0x30, 0x40], [0x50, 0x60]];
        public override MutationHints Hints { get; } = new() { IntegerFields = [(0, 1)] };

        public override byte[] Mutate(FuzzRng rng, byte[] seed, Mutator mutator)
        {
            var d = mutator.Mutate(rng, seed);
            if (d.Length == 0) d = [0x10];
            d[0] = (byte)rng.Below(8);
            return d;
        }

        public override void Run(byte[] input)
        {
            switch (input[0])
            {
                case 0:
                    _ = input[input.Length + 1];
                    break;
                case 1:
                    GC.KeepAlive(new byte[64 << 20]);
                    break;
                case 2 when (Interlocked.CompareExchange(ref _hangs, input, null) ?? input).AsSpan().SequenceEqual(input):
                    Thread.Sleep(3000);
                    break;
                case 3 when Interlocked.Exchange(ref _stalled, 1) == 0:
                    Thread.Sleep(3000);
                    break;
                default:
                    throw new FormatException("rejected");
            }
        }

        public override bool IsExpected(Exception e) => e is FormatException;
    }
}
