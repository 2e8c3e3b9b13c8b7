using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Bert.Tests.Reliability.Fuzz;

/// <summary>
/// One parser under test. <see cref="Run"/> feeds it an input; it either accepts the input or throws
/// one of the documented exception types (<see cref="IsExpected"/>). Anything else is a crash.
/// </summary>
internal abstract class FuzzTarget : IDisposable
{
    public abstract string Name { get; }

    /// <summary>Valid inputs that mutations start from.</summary>
    public abstract IReadOnlyList<byte[]> Seeds { get; }

    public abstract MutationHints Hints { get; }

    /// <summary>Produces input #i from a seed; targets with structure (a length prefix, checksums) override it.</summary>
    public virtual byte[] Mutate(FuzzRng rng, byte[] seed, Mutator mutator) => mutator.Mutate(rng, seed);

    public abstract void Run(byte[] input);

    public abstract bool IsExpected(Exception e);

    /// <summary>Whether the allocation bound applies (false where work fans out to other threads).</summary>
    public virtual bool CheckAllocation => true;

    /// <summary>The most a parse may allocate: a small multiple of the input plus a constant (buffers,
    /// tables). A parser that sizes an allocation from a header field exceeds it.</summary>
    public virtual long AllocationBudget(int inputLength) => 64L * inputLength + (8L << 20);

    /// <summary>Target-specific statistics for the summary (e.g. the CLI's exit codes).</summary>
    public virtual string Details => "";

    public virtual void Dispose()
    {
    }

    /// <summary>A scratch directory on a RAM disk when there is one (inputs are written as files).</summary>
    protected static string NewScratchDirectory(string name)
    {
        string root = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        string dir = Path.Combine(root, $"bert-fuzz-{name}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..12]}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}

/// <summary>A finding: an unexpected exception, a hang or an allocation beyond the bound.</summary>
internal sealed record FuzzFinding(string Kind, long Index, string Summary, string Detail);

/// <summary>What a run of one target did.</summary>
internal sealed class FuzzReport
{
    public required string Target { get; init; }
    public required ulong Seed { get; init; }
    public long Inputs { get; set; }
    public long Accepted { get; set; }
    public long Rejected { get; set; }
    public List<FuzzFinding> Crashes { get; } = [];
    public List<FuzzFinding> Hangs { get; } = [];
    public List<FuzzFinding> AllocationViolations { get; } = [];
    public double Seconds { get; set; }
    public double SlowestSeconds { get; set; }
    /// <summary>Inputs that overran the timeout once but finished in time on a second attempt.</summary>
    public long Stalls { get; set; }
    public long SlowestIndex { get; set; }
    /// <summary>Largest (allocated − constant) / input bytes seen.</summary>
    public double MaxAllocationRatio { get; set; }
    public long MaxAllocationBytes { get; set; }
    public Dictionary<string, long> RejectionsByType { get; } = new(StringComparer.Ordinal);
    public string Details { get; set; } = "";

    public bool Clean => Crashes.Count == 0 && Hangs.Count == 0 && AllocationViolations.Count == 0;

    public string Summary()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(inv, $"{Target}: {Inputs:N0} inputs in {Seconds:F1} s ({Inputs / Math.Max(Seconds, 1e-9):N0}/s), seed {Seed}; ");
        sb.Append(inv, $"accepted {Accepted:N0}, rejected {Rejected:N0}; crashes {Crashes.Count}, hangs {Hangs.Count}, allocation violations {AllocationViolations.Count}; ");
        sb.Append(inv, $"slowest {SlowestSeconds * 1000:F0} ms (#{SlowestIndex}), max allocation {MaxAllocationBytes:N0} B");
        if (Stalls > 0) sb.Append(inv, $"; {Stalls} stalls (over the timeout once, in time on a retry)");
        if (RejectionsByType.Count > 0)
            sb.Append(inv, $"; rejections ({RejectionsByType.Count} kinds): ")
                .AppendJoin(", ", RejectionsByType.OrderByDescending(kv => kv.Value).Take(12).Select(kv => $"{kv.Key} {kv.Value:N0}"));
        if (Details.Length > 0) sb.Append("; ").Append(Details);
        foreach (var f in Crashes.Concat(Hangs).Concat(AllocationViolations).Take(20))
            sb.Append(inv, $"\n  {f.Kind} at input #{f.Index}: {f.Summary}");
        return sb.ToString();
    }
}

/// <summary>
/// Runs a target over inputs [first, first + count) of a seeded run. Inputs execute on a worker
/// thread; the caller's thread is a watchdog that reports an input still running after the timeout
/// as a hang and carries on with a fresh worker. Allocation is measured per input on the worker
/// thread (GC.GetAllocatedBytesForCurrentThread). Distinct crashes are kept once (by exception type
/// and throwing frame) with the input that first showed them; those inputs are saved to
/// <c>findingsDirectory</c> when given.
/// </summary>
internal static class FuzzRunner
{
    public static FuzzReport Run(FuzzTarget target, ulong seed, long count, TimeSpan timeout, TimeSpan? timeBudget = null,
        string? findingsDirectory = null, long first = 0)
    {
        var report = new FuzzReport { Target = target.Name, Seed = seed };
        var mutator = new Mutator(target.Seeds, target.Hints);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var clock = Stopwatch.StartNew();
        long next = first, end = first + count;
        var gate = new object();

        long hung = -1;
        while (next < end)
        {
            var worker = new Worker();
            long start = next;
            void Body()
            {
                for (long i = start; i < end; i++)
                {
                    if (timeBudget is { } budget && clock.Elapsed > budget) break;
                    byte[] input;
                    try
                    {
                        input = Input(target, mutator, seed, i);
                    }
                    catch (Exception e)
                    {
                        lock (gate)
                        {
                            report.Inputs++;
                            report.Crashes.Add(new FuzzFinding("harness", i, $"the mutator failed: {e.GetType().Name}: {e.Message}", e.ToString()));
                        }
                        continue;
                    }
                    Volatile.Write(ref worker.Index, i);
                    Volatile.Write(ref worker.StartedTicks, Stopwatch.GetTimestamp());
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    Exception? error = null;
                    try
                    {
                        target.Run(input);
                    }
                    catch (Exception e)
                    {
                        error = e;
                    }
                    long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                    double seconds = Stopwatch.GetElapsedTime(worker.StartedTicks).TotalSeconds;
                    lock (gate)
                    {
                        if (worker.Abandoned) return;
                        Record(report, target, seen, findingsDirectory, i, input, error, allocated, seconds);
                        Volatile.Write(ref worker.Done, i + 1);
                    }
                }
            }

            // Deeply nested inputs recurse in some parsers: give them a main thread's 8 MB stack. A hung
            // input's thread is a background thread, so it cannot keep the process alive.
            var thread = new Thread(Body, maxStackSize: 8 << 20) { IsBackground = true, Name = $"fuzz {target.Name}" };
            thread.Start();

            while (true)
            {
                if (thread.Join(50))
                {
                    next = end;
                    break;
                }
                lock (gate)
                {
                    long index = Volatile.Read(ref worker.Index);
                    long started = Volatile.Read(ref worker.StartedTicks);
                    if (index >= 0 && Volatile.Read(ref worker.Done) <= index && started != 0
                        && Stopwatch.GetElapsedTime(started) > timeout)
                    {
                        worker.Abandoned = true;
                        hung = index;
                        next = index + 1;
                        break;
                    }
                }
            }
            if (hung >= 0)
            {
                // A loaded machine can stall any thread for seconds; an input is a hang only if it
                // also overruns a second, fresh attempt.
                byte[] input = Input(target, mutator, seed, hung);
                var retry = new Thread(() =>
                {
                    try
                    {
                        target.Run(input);
                    }
                    catch (Exception)
                    {
                        // Only the time matters here; the first attempt's outcome is the one judged.
                    }
                }, maxStackSize: 8 << 20) { IsBackground = true };
                retry.Start();
                report.Inputs++;
                if (retry.Join(timeout)) report.Stalls++;
                else
                {
                    report.Hangs.Add(new FuzzFinding("hang", hung, $"still running after {timeout.TotalSeconds:F0} s, twice ({input.Length} bytes)", ""));
                    Save(findingsDirectory, target.Name, "hang", hung, input);
                }
                hung = -1;
            }
            if (timeBudget is { } b && clock.Elapsed > b) break;
        }
        report.Seconds = clock.Elapsed.TotalSeconds;
        lock (gate) report.Details = target.Details;
        return report;
    }

    /// <summary>Input #<paramref name="index"/> of the run: a mutation of a seed, both chosen by the index's generator.</summary>
    public static byte[] Input(FuzzTarget target, Mutator mutator, ulong seed, long index)
    {
        var rng = FuzzRng.ForInput(seed, index);
        return target.Mutate(rng, rng.Pick(target.Seeds), mutator);
    }

    private static void Record(FuzzReport report, FuzzTarget target, HashSet<string> seen, string? findingsDirectory,
        long index, byte[] input, Exception? error, long allocated, double seconds)
    {
        report.Inputs++;
        if (seconds > report.SlowestSeconds)
        {
            report.SlowestSeconds = seconds;
            report.SlowestIndex = index;
        }
        if (error is null) report.Accepted++;
        else if (target.IsExpected(error))
        {
            report.Rejected++;
            // By type and, for the format exceptions, by field: which checks the inputs reached.
            string type = error.GetType().Name + error switch
            {
                Bert.Runtime.Data.DataFormatException d => " " + Short(d.Field),
                Bert.Runtime.IO.FileFormatException f => " " + Short(f.Field),
                _ => "",
            };
            report.RejectionsByType[type] = report.RejectionsByType.GetValueOrDefault(type) + 1;
        }
        else
        {
            string frame = error is CliInternalErrorException cli ? cli.Signature : error.StackTrace?.Split('\n').FirstOrDefault()?.Trim() ?? "";
            string key = error.GetType().FullName + " " + frame;
            if (seen.Add(key))
            {
                report.Crashes.Add(new FuzzFinding("crash", index, $"{error.GetType().Name}: {First(error.Message)} {frame}", error.ToString()));
                Save(findingsDirectory, target.Name, "crash", index, input);
            }
        }
        if (target.CheckAllocation)
        {
            report.MaxAllocationBytes = Math.Max(report.MaxAllocationBytes, allocated);
            report.MaxAllocationRatio = Math.Max(report.MaxAllocationRatio, (double)allocated / Math.Max(1, input.Length));
            if (allocated > target.AllocationBudget(input.Length))
            {
                string key = "alloc " + (error?.GetType().Name ?? "accepted");
                if (seen.Add(key) || report.AllocationViolations.Count < 5)
                {
                    report.AllocationViolations.Add(new FuzzFinding("allocation", index,
                        $"{allocated:N0} bytes allocated for a {input.Length:N0}-byte input (budget {target.AllocationBudget(input.Length):N0}); " +
                        (error is null ? "accepted" : $"{error.GetType().Name}: {First(error.Message)}"), error?.ToString() ?? ""));
                    Save(findingsDirectory, target.Name, "alloc", index, input);
                }
            }
        }
    }

    /// <summary>A field name without the per-input parts (record numbers, byte offsets, tensor names).</summary>
    private static string Short(string field)
    {
        string f = System.Text.RegularExpressions.Regex.Replace(field, @"\d+", "N");
        if (f.StartsWith("__metadata__.", StringComparison.Ordinal)) return "__metadata__.*";
        int dot = f.LastIndexOf('.');
        return dot > 0 && !f.Contains(' ', StringComparison.Ordinal) ? "*" + f[dot..] : f;
    }

    private static string First(string message)
    {
        string line = message.Split('\n')[0];
        return line.Length > 300 ? line[..300] + "..." : line;
    }

    private static void Save(string? directory, string target, string kind, long index, byte[] input)
    {
        if (directory is null) return;
        Directory.CreateDirectory(directory);
        File.WriteAllBytes(Path.Combine(directory, $"{target}-{kind}-{index}.bin"), input);
    }

    private sealed class Worker
    {
        public long Index = -1;
        public long StartedTicks;
        public long Done;
        public bool Abandoned;
    }
}
