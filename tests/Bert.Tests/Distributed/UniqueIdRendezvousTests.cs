using System.Net;
using System.Net.Sockets;
using Bert.Runtime.Distributed;
using NUnit.Framework;

namespace Bert.Tests.Distributed;

/// <summary>The NCCL unique-id rendezvous with ranks as threads of this process: over TCP on the loopback (the
/// torchrun path) and over a communicator (the mpirun path), with the timeout and refusal paths.</summary>
public class UniqueIdRendezvousTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(20);

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private static byte[] Id(int seed) => Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + seed)).ToArray();

    private static byte[] Device(int rank) => Enumerable.Range(0, 16).Select(i => (byte)(rank * 16 + i)).ToArray();

    /// <summary>Runs one rendezvous per entry on its own thread; each entry is (rank, size claimed, delay before
    /// starting, timeout). Returns each rank's result or exception.</summary>
    private static (RendezvousResult? Result, Exception? Error)[] Run(int port, params (int Rank, int Size, int DelayMs, TimeSpan Timeout)[] ranks)
    {
        var results = new (RendezvousResult?, Exception?)[ranks.Length];
        var threads = ranks.Select((r, i) => new Thread(() =>
        {
            Thread.Sleep(r.DelayMs);
            try
            {
                results[i] = (UniqueIdRendezvous.OverTcp(r.Rank, r.Size, "127.0.0.1", port, () => Id(42), Device(r.Rank), r.Timeout), null);
            }
            catch (Exception e)
            {
                results[i] = (null, e);
            }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.That(t.Join(TimeSpan.FromSeconds(60)), Is.True, "a rank's rendezvous never returned");
        return results;
    }

    [Test]
    public void FourRanksOverTcpAllGetRankZerosIdAndEveryDeviceId()
    {
        int port = FreePort();
        // Rank 3 starts before rank 0 listens: it must retry rather than fail.
        var results = Run(port, (3, 4, 0, Generous), (0, 4, 400, Generous), (1, 4, 100, Generous), (2, 4, 600, Generous));
        foreach (var (result, error) in results)
        {
            Assert.That(error, Is.Null, error?.ToString());
            Assert.That(result!.UniqueId, Is.EqualTo(Id(42)));
            Assert.That(result.DeviceIds, Has.Count.EqualTo(4));
            for (int r = 0; r < 4; r++) Assert.That(result.DeviceIds[r], Is.EqualTo(Device(r)), $"device id of rank {r}");
        }
    }

    [Test]
    public void AWorldOfOneNeedsNoSocket()
    {
        var result = UniqueIdRendezvous.OverTcp(0, 1, "unused.invalid", 1, () => Id(1), Device(0), TimeSpan.FromSeconds(1));
        Assert.That(result.UniqueId, Is.EqualTo(Id(1)));
        Assert.That(result.DeviceIds.Single(), Is.EqualTo(Device(0)));
    }

    [Test]
    public void RankZeroTimesOutNamingTheMissingRanksAndTellsTheOthers()
    {
        int port = FreePort();
        var results = Run(port, (0, 3, 0, TimeSpan.FromSeconds(2)), (1, 3, 100, TimeSpan.FromSeconds(10)));
        Assert.That(results[0].Error, Is.TypeOf<CommunicatorException>());
        Assert.That(results[0].Error!.Message, Does.Contain("rank(s) 2 did not reach the NCCL rendezvous").And.Contain($"port {port}").And.Contain("2 s"));
        // Rank 1 connected: it fails with rank 0's reason, not a bare connection reset.
        Assert.That(results[1].Error, Is.TypeOf<CommunicatorException>());
        Assert.That(results[1].Error!.Message, Does.Contain("refused the NCCL rendezvous").And.Contain("rank(s) 2 did not reach"));
    }

    [Test]
    public void ARankWithoutRankZeroTimesOutNamingAddressAndPort()
    {
        int port = FreePort();
        var e = Assert.Throws<CommunicatorException>(() =>
            UniqueIdRendezvous.OverTcp(2, 4, "127.0.0.1", port, () => Id(0), Device(2), TimeSpan.FromSeconds(1)))!;
        Assert.That(e.Message, Does.StartWith("rank 2: could not reach rank 0 at 127.0.0.1:" + port).And.Contain("within 1 s").And.Contain("BERT_NCCL_PORT"));
    }

    [Test]
    public void AnotherWorldSizeIsRefusedOnBothSides()
    {
        int port = FreePort();
        var results = Run(port, (0, 2, 0, Generous), (1, 3, 100, Generous));
        Assert.That(results[0].Error?.Message, Does.Contain("rank 1 was started with a world of 3 ranks, rank 0 with 2"));
        Assert.That(results[1].Error?.Message, Does.StartWith("rank 1: rank 0 at 127.0.0.1:").And.Contain("world of 3 ranks, rank 0 with 2"));
    }

    [Test]
    public void TwoProcessesWithOneRankAreRefused()
    {
        int port = FreePort();
        var results = Run(port, (0, 3, 0, Generous), (1, 3, 100, Generous), (1, 3, 400, Generous));
        Assert.That(results[0].Error?.Message, Does.Contain("two processes report rank 1"));
        Assert.That(results[1].Error, Is.TypeOf<CommunicatorException>());
        Assert.That(results[2].Error, Is.TypeOf<CommunicatorException>());
    }

    [Test]
    public void APortInUseIsAClearError()
    {
        var busy = new TcpListener(IPAddress.Any, 0);
        busy.Start();
        try
        {
            int port = ((IPEndPoint)busy.LocalEndpoint).Port;
            var e = Assert.Throws<CommunicatorException>(() =>
                UniqueIdRendezvous.OverTcp(0, 2, "127.0.0.1", port, () => Id(0), Device(0), TimeSpan.FromSeconds(2)))!;
            Assert.That(e.Message, Does.StartWith($"rank 0: cannot listen on TCP port {port}").And.Contain("BERT_NCCL_PORT"));
        }
        finally
        {
            busy.Stop();
        }
    }

    [Test]
    public void PortIsBertNcclPortElseMasterPortPlusOne()
    {
        var launch = new DistributedLaunch(Launcher.Torchrun, 1, 2, 1, 2, "node0", 29500);
        Assert.That(UniqueIdRendezvous.Port(launch, _ => null), Is.EqualTo(29501));
        Assert.That(UniqueIdRendezvous.Port(launch, n => n == "BERT_NCCL_PORT" ? "40000" : null), Is.EqualTo(40000));
        Assert.That(() => UniqueIdRendezvous.Port(launch, n => n == "BERT_NCCL_PORT" ? "70000" : null),
            Throws.TypeOf<DistributedLaunchException>().With.Message.Contains("BERT_NCCL_PORT '70000'"));
        Assert.That(() => UniqueIdRendezvous.Port(launch with { MasterPort = 65535 }, _ => null),
            Throws.TypeOf<DistributedLaunchException>().With.Message.Contains("MASTER_PORT 65535"));
        Assert.That(() => UniqueIdRendezvous.Port(new DistributedLaunch(Launcher.Slurm, 0, 2, 0, 2), _ => null),
            Throws.TypeOf<DistributedLaunchException>().With.Message.Contains("MASTER_ADDR and MASTER_PORT (or BERT_NCCL_PORT)"));
    }

    [Test]
    public void OverACommunicatorRankZerosIdAndEveryDeviceIdArrive()
    {
        var world = ThreadCommunicator.Create(3);
        var results = new RendezvousResult[3];
        int made = 0;
        ThreadCommunicator.Run(world, c => results[c.Rank] = UniqueIdRendezvous.OverCommunicator(c, () =>
        {
            Interlocked.Increment(ref made);
            return Id(9);
        }, Device(c.Rank)));
        Assert.That(made, Is.EqualTo(1), "only rank 0 makes the id");
        foreach (var r in results)
        {
            Assert.That(r.UniqueId, Is.EqualTo(Id(9)));
            Assert.That(r.DeviceIds, Is.EqualTo(new[] { Device(0), Device(1), Device(2) }));
        }
    }
}
