using Bert.Cli;
using Bert.Runtime.Cpu;
using Bert.Runtime.Distributed;
using NUnit.Framework;

namespace Bert.Tests.Distributed;

/// <summary>Which communicator a command gets for its launch and backend, without starting MPI or NCCL.</summary>
public class DistributedRunTests
{
    private static readonly DistributedLaunch TwoByTorchrun = new(Launcher.Torchrun, 1, 2, 1, 2, "127.0.0.1", 29500);

    [Test]
    public void ASingleProcessOnTheCpuHasTheWorldOfOne()
    {
        using var cpu = new CpuBackend(1);
        Assert.That(DistributedRun.Open(DistributedLaunch.Single, cpu, TimeSpan.FromSeconds(5)), Is.SameAs(SingleProcessCommunicator.Instance));
    }

    [Test]
    public void TorchrunOnTheCpuIsRefusedPointingAtMpirunOrNccl()
    {
        using var cpu = new CpuBackend(1);
        var e = Assert.Throws<DistributedLaunchException>(() => DistributedRun.Open(TwoByTorchrun, cpu, TimeSpan.FromSeconds(5)))!;
        Assert.That(e.Message, Does.StartWith("rank 1 of 2 (local 1 of 2, Torchrun): the CPU backend's collectives are Open MPI's")
            .And.Contain("mpirun -np N").And.Contain("--device cuda: NCCL"));
    }

    [Test]
    public void TheCpuAndASingleProcessUseDeviceZero()
    {
        Assert.That(DistributedRun.DeviceOrdinal(DistributedLaunch.Single, "cuda"), Is.EqualTo(0));
        Assert.That(DistributedRun.DeviceOrdinal(TwoByTorchrun, "cpu"), Is.EqualTo(0));
    }
}
