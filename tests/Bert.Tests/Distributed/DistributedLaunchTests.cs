using Bert.Runtime.Distributed;
using NUnit.Framework;

namespace Bert.Tests.Distributed;

/// <summary>Reading mpirun's, torchrun's and srun's variables.</summary>
public class DistributedLaunchTests
{
    private static DistributedLaunch Detect(params (string Name, string Value)[] vars) =>
        DistributedLaunch.Detect(vars.ToDictionary(v => v.Name, v => (string?)v.Value));

    [Test]
    public void NoLauncherIsAWorldOfOne()
    {
        var l = Detect(("PATH", "/usr/bin"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")); // a batch script is not a rank
        Assert.That(l, Is.EqualTo(DistributedLaunch.Single));
        Assert.That(l.IsDistributed, Is.False);
    }

    [Test]
    public void ReadsMpirun()
    {
        var l = Detect(("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "8"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
            ("RANK", "7"), ("WORLD_SIZE", "9")); // mpirun's own variables win over stale torchrun ones
        Assert.That(l, Is.EqualTo(new DistributedLaunch(Launcher.Mpirun, 3, 8, 1, 4)));
    }

    [Test]
    public void ReadsTorchrun()
    {
        var l = Detect(("RANK", "5"), ("WORLD_SIZE", "16"), ("LOCAL_RANK", "5"), ("LOCAL_WORLD_SIZE", "8"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29500"));
        Assert.That(l, Is.EqualTo(new DistributedLaunch(Launcher.Torchrun, 5, 16, 5, 8, "node0", 29500)));
    }

    [Test]
    public void ReadsSrun()
    {
        var l = Detect(("SLURM_STEP_ID", "0"), ("SLURM_PROCID", "9"), ("SLURM_NTASKS", "16"), ("SLURM_LOCALID", "1"), ("SLURM_NTASKS_PER_NODE", "8"));
        Assert.That(l, Is.EqualTo(new DistributedLaunch(Launcher.Slurm, 9, 16, 1, 8)));
    }

    [TestCase("WORLD_SIZE", "RANK=1", "LOCAL_RANK=1", "MASTER_ADDR=a", "MASTER_PORT=1")]
    [TestCase("LOCAL_RANK", "RANK=1", "WORLD_SIZE=2", "MASTER_ADDR=a", "MASTER_PORT=1")]
    [TestCase("MASTER_ADDR", "RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_PORT=1")]
    [TestCase("MASTER_PORT", "RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=a")]
    [TestCase("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_LOCAL_RANK=0", "OMPI_COMM_WORLD_LOCAL_SIZE=1")]
    [TestCase("SLURM_NTASKS", "SLURM_STEP_ID=3", "SLURM_PROCID=0", "SLURM_LOCALID=0")]
    public void AMissingVariableIsNamed(string missing, params string[] set)
    {
        var e = Assert.Throws<DistributedLaunchException>(() => Detect(set.Select(s => (s.Split('=')[0], s.Split('=')[1])).ToArray()));
        Assert.That(e!.Message, Does.StartWith($"{missing} is not set"));
    }

    [Test]
    public void BadValuesAreNamed()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Assert.Throws<DistributedLaunchException>(() => Detect(("RANK", "x"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "1")))!.Message,
                Does.StartWith("RANK 'x': not an integer"));
            Assert.That(Assert.Throws<DistributedLaunchException>(() => Detect(("RANK", "2"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "1")))!.Message,
                Is.EqualTo("RANK 2: must be below WORLD_SIZE 2"));
            Assert.That(Assert.Throws<DistributedLaunchException>(() => Detect(("RANK", "0"), ("WORLD_SIZE", "0"), ("LOCAL_RANK", "0")))!.Message,
                Does.StartWith("WORLD_SIZE '0': not an integer ≥ 1"));
            Assert.That(Assert.Throws<DistributedLaunchException>(() => Detect(("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "70000")))!.Message,
                Does.StartWith("MASTER_PORT 70000: not a TCP port"));
            Assert.That(Assert.Throws<DistributedLaunchException>(() => Detect(("RANK", "1"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "2"), ("LOCAL_WORLD_SIZE", "2"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "1")))!.Message,
                Does.StartWith("local rank 2: must be below the local world size 2"));
        });
    }

    [Test]
    public void ASingleTorchrunProcessNeedsNoRendezvous()
    {
        var l = Detect(("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"));
        Assert.That((l.Launcher, l.Size, l.IsDistributed, l.MasterAddress, l.MasterPort), Is.EqualTo((Launcher.Torchrun, 1, false, (string?)null, (int?)null)));
    }
}
