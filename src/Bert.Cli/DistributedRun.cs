using System.IO.Hashing;
using System.Text;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Distributed;

namespace Bert.Cli;

/// <summary>
/// How a command joins the ranks its launcher started (see docs/distributed.md): the launch read from the
/// environment (<see cref="DistributedLaunch"/>), the communicator for the backend (Open MPI for the CPU
/// backend), the threads per rank, and the check that every rank was started with the same settings.
/// </summary>
internal static class DistributedRun
{
    /// <summary>The world this process belongs to, for <paramref name="backend"/>: a world of one without a launcher.</summary>
    public static ICommunicator Open(DistributedLaunch launch, IBackend backend, TimeSpan timeout)
    {
        if (!launch.IsDistributed) return SingleProcessCommunicator.Instance;
        if (backend is not CpuBackend)
            throw new CommunicatorException($"{launch}: data-parallel training on {backend.Name} needs NCCL, which this version does not bind yet; " +
                                            "train data-parallel on the CPU backend (--device cpu, launched by mpirun) or on one GPU");
        if (launch.Launcher == Launcher.Torchrun)
            throw new DistributedLaunchException($"{launch}: the CPU backend's collectives are Open MPI's, which torchrun does not start; " +
                                                 "launch with mpirun -np N (or srun --mpi=pmix)");
        var mpi = MpiCommunicator.Open(timeout);
        if (mpi.Size != launch.Size || mpi.Rank != launch.Rank)
            throw new CommunicatorException($"{launch}: but MPI sees rank {mpi.Rank} of {mpi.Size}" +
                (launch.Launcher == Launcher.Slurm ? " (srun must start Open MPI with PMIx: srun --mpi=pmix, or use mpirun inside the allocation)" : ""));
        return mpi;
    }

    /// <summary>CPU threads per rank when --threads is 0: the machine's cores shared by the ranks on it.</summary>
    public static int Threads(int requested, DistributedLaunch launch) =>
        requested > 0 || !launch.IsDistributed ? requested : Math.Max(1, Environment.ProcessorCount / launch.LocalSize);

    /// <summary>Fails on every rank when the ranks' <paramref name="settings"/> differ (ranks started with other
    /// options, or seeing another run directory state).</summary>
    public static void CheckSameSettings(ICommunicator comm, string settings)
    {
        if (comm.Size == 1) return;
        var differ = comm.RanksDifferingFromRankZero(XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(settings)), "the comparison of the ranks' settings");
        if (differ.Count > 0)
            throw new DistributedLaunchException($"rank(s) {string.Join(", ", differ)} were started with other settings than rank 0 " +
                                                 $"(this rank's: {settings}); start every rank with the same command");
    }
}
