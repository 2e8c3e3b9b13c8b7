using Bert.Native;
using Bert.Native.Interop;
using Bert.Runtime;
using Bert.Runtime.Distributed;
using Bert.Runtime.Training;
using Bert.Tests.Cuda;
using Bert.Tests.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Distributed;

/// <summary>
/// The NCCL communicator on one real GPU (ignored without a GPU or without libnccl.so.2): a world of one through
/// every collective, the stream ordering between the compute stream and NCCL's (large out-of-place copies that a
/// missing wait would expose), and pretraining steps over NCCL bit-identical to the same steps without it. Several
/// ranks need several GPUs (bench/gpu/run-all.sh's nccl stage tries two ranks on one GPU).
/// </summary>
[TestFixture, Gpu, NonParallelizable]
public class NcclGpuTests
{
    private static CudaBackend Backend(DType computeType = DType.F32)
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, new CudaBackendOptions { ComputeType = computeType })) Assert.Ignore(reason);
        if (!NativeLibraries.TryLoad(NativeLibraries.Nccl, out _, out var why))
        {
            backend!.Dispose();
            Assert.Ignore(why);
        }
        return backend!;
    }

    private static NcclCommunicator WorldOfOne(CudaBackend backend) => NcclCommunicator.Open(backend, DistributedLaunch.Single, TimeSpan.FromSeconds(60));

    [Test]
    public void AWorldOfOneRunsEveryCollective()
    {
        using var backend = Backend();
        using var comm = WorldOfOne(backend);
        TestContext.Progress.WriteLine($"{comm.Name} ({NativeLibraries.Describe(NativeLibraries.Nccl)}) on {backend.Name}");
        Assert.That(comm.Name, Does.StartWith("NCCL 2."));
        Assert.That(comm.Version, Is.GreaterThanOrEqualTo(Nccl.MinimumVersion));
        Assert.That((comm.Rank, comm.Size), Is.EqualTo((0, 1)));

        var values = Enumerable.Range(0, 1000).Select(i => MathF.Sin(i) * 1e3f).ToArray();
        using var buffer = backend.Allocate(values.Length, DType.F32, "values");
        backend.Upload<float>(buffer, values);
        comm.AllReduceSum(buffer.View, "all-reduce");
        comm.ReduceScatterSum(buffer.View, buffer.View, "reduce-scatter");
        comm.AllGather(buffer.View, buffer.View, "all-gather");
        comm.Broadcast(buffer.View, 0, "broadcast");
        Assert.That(Download(backend, buffer.View), Is.EqualTo(values), "a sum over one rank is the identity");

        Span<double> host = [0.1, -3.5e300, double.Epsilon];
        var expected = host.ToArray();
        comm.AllReduceSum(host, "host sum");
        Assert.That(host.ToArray(), Is.EqualTo(expected));
        var all = new ulong[1];
        comm.AllGather(0xfeedface12345678UL, all, "gather");
        Assert.That(all[0], Is.EqualTo(0xfeedface12345678UL));
        var bytes = Enumerable.Range(0, 10_000).Select(i => (byte)i).ToArray(); // larger than the first scratch buffer
        var copy = bytes.ToArray();
        comm.Broadcast(copy, 0, "bytes");
        Assert.That(copy, Is.EqualTo(bytes));
        comm.Barrier("barrier");
    }

    [Test]
    public void CollectivesRunAfterTheComputeStreamAndBeforeWhatFollowsIt()
    {
        using var backend = Backend();
        using var comm = WorldOfOne(backend);
        const int n = 32 << 20; // 128 MB: a copy that is not over before the host queues the next op
        using var send = backend.Allocate(n, DType.F32, "send");
        using var recv = backend.Allocate(n, DType.F32, "recv");
        var host = new float[n];
        for (int round = 1; round <= 3; round++)
        {
            Array.Fill(host, round);
            backend.Upload<float>(send, host);                 // compute stream writes send
            comm.AllGather(send.View, recv.View, "copy");       // NCCL reads send, writes recv
            backend.Zero(send.View);                            // compute stream overwrites send: must wait for NCCL
            var got = Download(backend, recv.View);             // compute stream reads recv: must wait for NCCL
            Assert.That(got.All(v => v == round), $"round {round}: recv holds {got.First(v => v != round)}");
            comm.ReduceScatterSum(recv.View, send.View, "copy back");
            Assert.That(Download(backend, send.View).All(v => v == round), $"round {round}: the reduce-scatter");
        }
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    public void PretrainingOverAWorldOfOneIsBitIdenticalToNoCommunicator(DType computeType)
    {
        using var backend = Backend(computeType);
        var plain = TrainedWeights(backend, null, 6);
        float[] overNccl;
        using (var comm = WorldOfOne(backend)) overNccl = TrainedWeights(backend, comm, 6);
        Assert.That(overNccl, Is.EqualTo(plain), "weights after 6 steps with and without NCCL");
    }
}
