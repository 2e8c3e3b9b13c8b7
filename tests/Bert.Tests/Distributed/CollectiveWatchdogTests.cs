using Bert.Runtime.Distributed;
using NUnit.Framework;

namespace Bert.Tests.Distributed;

/// <summary>The NCCL communicator's watchdog logic with a fake clock, a fake completion query and a fake transport
/// error (on the GPU the query is cuEventQuery and the error ncclCommGetAsyncError; the fault action aborts).</summary>
public class CollectiveWatchdogTests
{
    private sealed class Fakes
    {
        public long Now;                // seconds (the clock ticks once a second)
        public bool Finished;
        public string? AsyncError;
        public Exception? QueryThrows;
        public readonly List<string> Faults = [];
        public int FaultCount;
        public int Queries;

        private void Fault(string reason)
        {
            Faults.Add(reason);
            Interlocked.Increment(ref FaultCount);
        }

        public CollectiveWatchdog Create() => new(
            () =>
            {
                Queries++;
                if (QueryThrows is { } e) throw e;
                return Finished;
            },
            () => AsyncError, Fault, TimeSpan.FromMilliseconds(10), () => Now, ticksPerSecond: 1);
    }

    [Test]
    public void ACollectivePastItsDeadlineFaultsNamingItAndTheTimeout()
    {
        var f = new Fakes();
        using var w = f.Create();
        w.Arm(w.Begin(new Collective("the gradient all-reduce", 12), TimeSpan.FromSeconds(30)));
        f.Now = 30;
        Assert.That(w.Poll(), Is.False, "at the deadline, not past it");
        f.Now = 31;
        Assert.That(w.Poll(), Is.True);
        Assert.That(f.Faults, Is.EqualTo(new[]
        {
            "the gradient all-reduce of step 12 did not finish within 30 s: another rank died or hangs (--dist-timeout); aborting the job",
        }));
        Assert.That(w.Poll(), Is.True);
        Assert.That(f.Faults, Has.Count.EqualTo(1), "the fault action runs once");
    }

    [Test]
    public void AFinishedCollectiveIsNoLongerWatched()
    {
        var f = new Fakes();
        using var w = f.Create();
        w.Arm(w.Begin("the metrics reduction", TimeSpan.FromSeconds(5)));
        f.Finished = true;
        Assert.That(w.Poll(), Is.False);
        f.Now = 100;
        f.Finished = false; // the event would still say finished; the watchdog must not even ask
        int queries = f.Queries;
        Assert.That(w.Poll(), Is.False);
        Assert.That(f.Queries, Is.EqualTo(queries), "nothing armed: no query");
        Assert.That(f.Faults, Is.Empty);
    }

    [Test]
    public void NothingIsWatchedBeforeItsCompletionMarkerExists()
    {
        // Between Begin and Arm the event still belongs to the previous collective: a "finished" answer must not disarm
        // the new one, and the new one is not timed out by the polls (the queueing thread polls its own deadline).
        var f = new Fakes { Finished = true };
        using var w = f.Create();
        long g = w.Begin("the weights' broadcast", TimeSpan.FromSeconds(1));
        f.Now = 10;
        Assert.That(w.Poll(), Is.False);
        Assert.That(w.Expired, Is.True, "the queueing thread sees its deadline passed");
        f.Finished = false;
        w.Arm(g);
        Assert.That(w.Poll(), Is.True, "armed and past its deadline");
        Assert.That(f.Faults.Single(), Does.StartWith("the weights' broadcast did not finish within 1 s"));
    }

    [Test]
    public void TheDeadlineCountsFromTheLatestCollective()
    {
        var f = new Fakes();
        using var w = f.Create();
        w.Arm(w.Begin("first", TimeSpan.FromSeconds(10)));
        f.Now = 8;
        w.Arm(w.Begin("second", TimeSpan.FromSeconds(10))); // queued behind the first on one stream
        f.Now = 15;
        Assert.That(w.Poll(), Is.False, "the second collective's 10 s run until 18");
        f.Now = 19;
        Assert.That(w.Poll(), Is.True);
        Assert.That(f.Faults.Single(), Does.StartWith("second did not finish within 10 s"));
    }

    [Test]
    public void AnInfiniteLimitNeverTimesOut()
    {
        var f = new Fakes();
        using var w = f.Create();
        w.Arm(w.Begin("waiting for rank 0's data preparation", Timeout.InfiniteTimeSpan));
        f.Now = long.MaxValue / 4;
        Assert.That(w.Poll(), Is.False);
        Assert.That(w.Expired, Is.False);
    }

    [Test]
    public void AnAsynchronousTransportErrorFaultsAtOnce()
    {
        var f = new Fakes();
        using var w = f.Create();
        w.Arm(w.Begin(new Collective("the gradient all-reduce", 3), TimeSpan.FromSeconds(600)));
        f.AsyncError = "NCCL reported the communicator failed: ncclRemoteError (remote process exited or there was a network error)";
        Assert.That(w.Poll(), Is.True);
        Assert.That(f.Faults.Single(), Is.EqualTo("NCCL reported the communicator failed: ncclRemoteError (remote process exited or there was a network error) " +
                                                  "during the gradient all-reduce of step 3 (a peer died or its connection broke); aborting the job"));
    }

    [Test]
    public void AFailingQueryFaults()
    {
        var f = new Fakes { QueryThrows = new InvalidOperationException("cuEventQuery failed: CUDA_ERROR_ILLEGAL_ADDRESS") };
        using var w = f.Create();
        w.Arm(w.Begin("the all-gather", TimeSpan.FromSeconds(600)));
        Assert.That(w.Poll(), Is.True);
        Assert.That(f.Faults.Single(), Is.EqualTo("cuEventQuery failed: CUDA_ERROR_ILLEGAL_ADDRESS while waiting for the all-gather; aborting the job"));
    }

    [Test]
    public void TheBackgroundThreadFindsAHang()
    {
        var f = new Fakes();
        using var w = f.Create();
        w.Arm(w.Begin("a hung collective", TimeSpan.FromSeconds(1)));
        f.Now = 5;
        w.Start("test-watchdog");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Volatile.Read(ref f.FaultCount) == 0 && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(5);
        Assert.That(w.Faulted, Is.True, "the thread polled");
        Assert.That(f.Faults.Single(), Does.StartWith("a hung collective did not finish"));
    }
}
