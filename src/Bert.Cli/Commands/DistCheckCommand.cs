using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Bert.Runtime;
using Bert.Runtime.Distributed;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert dist-check`: the all-reduce smoke test of a data-parallel launch. Every rank all-reduces F32 buffers from
/// --min-bytes to --max-bytes (×4 each row), checks the sums (rank r contributes r + 1, so every element must be
/// N(N+1)/2, exact in F32) and prints, as nccl-tests' all_reduce_perf does, the time per call, the algorithm
/// bandwidth (bytes / time) and the bus bandwidth (algbw × 2(N−1)/N: what each link carries in a ring).
/// </summary>
public static class DistCheckCommand
{
    public static Command Create()
    {
        var minBytes = new Option<long>("--min-bytes") { Description = "smallest buffer", DefaultValueFactory = _ => 1024 };
        var maxBytes = new Option<long>("--max-bytes") { Description = "largest buffer (BERT-base's gradients: 440 MB)", DefaultValueFactory = _ => 64L << 20 };
        var iterations = new Option<int>("--iterations") { Description = "timed all-reduces per size (after 2 warm-up calls)", DefaultValueFactory = _ => 10 };
        var device = new Option<string>("--device") { Description = "cpu (Open MPI, launched by mpirun) or cuda (NCCL, one rank per GPU; launched by mpirun or torchrun)", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int>("--threads") { Description = "CPU threads per rank (0: the cores shared by the ranks on this machine)", DefaultValueFactory = _ => 0 };
        var timeout = new Option<double>("--dist-timeout") { Description = "seconds one collective may wait before the job is aborted", DefaultValueFactory = _ => 120 };
        var cmd = new Command("dist-check", "all-reduce check and bandwidth of a data-parallel launch (mpirun -np N bert dist-check; torchrun --no-python --nproc-per-node N bert dist-check --device cuda)")
        {
            minBytes, maxBytes, iterations, device, threads, timeout,
        };
        cmd.SetAction(r => Run(r.GetValue(minBytes), r.GetValue(maxBytes), r.GetValue(iterations), r.GetValue(device)!, r.GetValue(threads),
            r.GetValue(timeout), Console.Out));
        return cmd;
    }

    public static int Run(long minBytes, long maxBytes, int iterations, string device, int threads, double timeoutSeconds, TextWriter output)
    {
        try
        {
            return RunCore(minBytes, maxBytes, iterations, device, threads, timeoutSeconds, output);
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }

    private static int RunCore(long minBytes, long maxBytes, int iterations, string device, int threads, double timeoutSeconds, TextWriter output)
    {
        if (minBytes < 4) throw new UserException($"--min-bytes {minBytes}: must be at least 4 (one F32)");
        if (maxBytes < minBytes) throw new UserException($"--max-bytes {maxBytes}: must be at least --min-bytes {minBytes}");
        if (maxBytes > 16L << 30) throw new UserException($"--max-bytes {maxBytes}: at most 16 GiB");
        if (iterations < 1) throw new UserException($"--iterations {iterations}: must be positive");
        if (!(timeoutSeconds > 0)) throw new UserException($"--dist-timeout {timeoutSeconds.ToString(CultureInfo.InvariantCulture)}: must be positive");
        if (device is not ("cpu" or "cuda" or "auto")) throw new UserException($"--device {device}: choose cpu or cuda");

        var launch = DistributedLaunch.FromEnvironment();
        using var backend = Backends.Create(device, DistributedRun.Threads(threads, launch), "f32", deviceOrdinal: DistributedRun.DeviceOrdinal(launch, device));
        using var comm = DistributedRun.Open(launch, backend, TimeSpan.FromSeconds(timeoutSeconds));
        var log = comm.Rank == 0 ? output : TextWriter.Null;
        var inv = CultureInfo.InvariantCulture;
        log.WriteLine(string.Create(inv, $"# bert dist-check: {comm.Size} rank(s) over {comm.Name} on {backend.Name} ({launch})"));
        log.WriteLine("#");
        log.WriteLine("#       size         count      type   redop     time(us)  algbw(GB/s)  busbw(GB/s)  #wrong");

        long maxCount = maxBytes / 4;
        using var buffer = backend.Allocate(maxCount, DType.F32, "dist-check");
        var host = new float[maxCount];
        float expected = comm.Size * (comm.Size + 1) / 2f;
        double busFactor = comm.Size > 1 ? 2.0 * (comm.Size - 1) / comm.Size : 0;
        long totalWrong = 0;
        var slowest = new double[comm.Size];
        for (long bytes = minBytes; bytes <= maxBytes; bytes *= 4)
        {
            long count = bytes / 4;
            var view = buffer.View.Slice(0, count);
            // Correctness: one call on known values.
            Array.Fill(host, comm.Rank + 1f, 0, (int)count);
            backend.Upload<float>(view, host.AsSpan(0, (int)count));
            comm.AllReduceSum(view, $"the all-reduce of {bytes} bytes");
            backend.Download<float>(host.AsSpan(0, (int)count), view);
            long wrong = 0;
            for (long i = 0; i < count; i++)
                if (host[i] != expected) wrong++;
            Span<double> w = [wrong];
            comm.AllReduceSum(w, "the count of wrong elements");
            totalWrong += (long)w[0];
            // Time: warm-up, then the timed calls, the slowest rank's time counting (as nccl-tests reports).
            for (int i = 0; i < 2; i++) comm.AllReduceSum(view, $"the all-reduce of {bytes} bytes");
            comm.Barrier("the barrier before timing");
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < iterations; i++) comm.AllReduceSum(view, $"the all-reduce of {bytes} bytes");
            backend.Synchronize(); // NCCL's all-reduces are queued on the GPU: the clock stops when they are done
            double seconds = clock.Elapsed.TotalSeconds / iterations;
            Array.Clear(slowest);
            slowest[comm.Rank] = seconds;
            comm.AllReduceSum(slowest, "the timing reduction");
            double t = 0;
            foreach (var s in slowest) t = Math.Max(t, s);
            double algbw = bytes / t / 1e9;
            log.WriteLine(string.Create(inv, $"{bytes,12} {count,13}     float     sum {t * 1e6,12:F1} {algbw,12:F3} {algbw * busFactor,12:F3} {(long)w[0],7}"));
        }
        log.WriteLine(string.Create(inv, $"# wrong elements: {totalWrong}"));
        return totalWrong == 0 ? ExitCodes.Ok : ExitCodes.Distributed;
    }
}
