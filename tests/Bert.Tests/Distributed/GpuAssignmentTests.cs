using Bert.Runtime.Distributed;
using NUnit.Framework;

namespace Bert.Tests.Distributed;

/// <summary>One rank per GPU: the device a rank picks from its local rank, and the refusal of two ranks on one GPU
/// (UUIDs as the rendezvous gathers them; fakes here, real ones on a GPU machine).</summary>
public class GpuAssignmentTests
{
    private static DistributedLaunch Local(int localRank, int localSize) =>
        new(Launcher.Torchrun, 8 + localRank, 16, localRank, localSize, "node0", 29500);

    private static byte[] Uuid(byte b) => Enumerable.Repeat(b, 16).ToArray();

    [Test]
    public void EachLocalRankTakesItsOwnGpu()
    {
        for (int r = 0; r < 8; r++) Assert.That(GpuAssignment.DeviceOrdinal(Local(r, 8), 8), Is.EqualTo(r));
    }

    [Test]
    public void ARankThatSeesOneGpuUsesIt()
    {
        // Slurm's --gpus-per-task or a per-rank CUDA_VISIBLE_DEVICES: every rank sees its own GPU as device 0.
        Assert.That(GpuAssignment.DeviceOrdinal(Local(3, 4), 1, "3"), Is.EqualTo(0));
    }

    [Test]
    public void MoreLocalRanksThanGpusIsRefused()
    {
        var e = Assert.Throws<DistributedLaunchException>(() => GpuAssignment.DeviceOrdinal(Local(5, 8), 4, "0,1,2,3"))!;
        Assert.That(e.Message, Does.Contain("local rank 5 needs GPU 5, but this machine shows 4 GPUs (CUDA_VISIBLE_DEVICES=0,1,2,3)")
            .And.Contain("--nproc-per-node 4"));
        Assert.That(() => GpuAssignment.DeviceOrdinal(Local(0, 1), 0),
            Throws.TypeOf<DistributedLaunchException>().With.Message.Contains("no GPU is visible"));
    }

    [Test]
    public void TwoRanksOnOneGpuAreRefusedNamingThemAndTheGpu()
    {
        var ids = new[] { Uuid(1), Uuid(2), Uuid(1), Uuid(3) };
        var e = Assert.Throws<DistributedLaunchException>(() => GpuAssignment.CheckDistinct(ids, allowShared: false))!;
        Assert.That(e.Message, Does.StartWith("ranks 0 and 2 both use GPU GPU-01010101-0101-0101-0101-010101010101")
            .And.Contain("BERT_ALLOW_SHARED_GPU=1"));
        Assert.DoesNotThrow(() => GpuAssignment.CheckDistinct(ids, allowShared: true));
        Assert.DoesNotThrow(() => GpuAssignment.CheckDistinct([Uuid(1), Uuid(2), Uuid(3)], allowShared: false));
    }

    [Test]
    public void UuidsPrintAsNvidiaSmiPrintsThem()
    {
        var uuid = Convert.FromHexString("5e3a8a1f0b2c4d6e8f90a1b2c3d4e5f6");
        Assert.That(GpuAssignment.FormatUuid(uuid), Is.EqualTo("GPU-5e3a8a1f-0b2c-4d6e-8f90-a1b2c3d4e5f6"));
    }

    [TestCase("1", true)]
    [TestCase("true", true)]
    [TestCase(" YES ", true)]
    [TestCase("0", false)]
    [TestCase("", false)]
    [TestCase(null, false)]
    public void FlagsAreOneTrueOrYes(string? value, bool expected) =>
        Assert.That(GpuAssignment.Flag(_ => value, GpuAssignment.ForceNcclVariable), Is.EqualTo(expected));
}
