using System.IO.Hashing;
using System.Text;
using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Distributed;

namespace Bert.Cli;

/// <summary>
/// How a command joins the ranks its launcher started (see docs/distributed.md): the launch read from the
/// environment (<see cref="DistributedLaunch"/>), the communicator for the backend (Open MPI for the CPU
/// backend, NCCL for the CUDA backend), the GPU of each rank, the threads per rank, and the check that every rank
/// was started with the same settings.
/// </summary>
internal static class DistributedRun
{
    /// <summary>The world this process belongs to, for <paramref name="backend"/>: a world of one without a launcher.
    /// The CUDA backend's is NCCL's (also for a world of one when BERT_FORCE_NCCL=1, to check the NCCL path on one
    /// GPU); under mpirun, MPI carries NCCL's unique id, otherwise TCP from rank 0 (MASTER_ADDR, BERT_NCCL_PORT or
    /// MASTER_PORT + 1). The CPU backend's is Open MPI's.</summary>
    public static ICommunicator Open(DistributedLaunch launch, IBackend backend, TimeSpan timeout)
    {
        if (backend is CudaBackend cuda && (launch.IsDistributed || GpuAssignment.Flag(Environment.GetEnvironmentVariable, GpuAssignment.ForceNcclVariable)))
            return NcclCommunicator.Open(cuda, launch, timeout, launch.IsDistributed && launch.Launcher == Launcher.Mpirun ? OpenMpi(launch, timeout) : null);
        if (!launch.IsDistributed) return SingleProcessCommunicator.Instance;
        if (backend is not CpuBackend)
            throw new CommunicatorException($"{launch}: data-parallel training runs on the CPU backend (Open MPI) or the CUDA backend (NCCL), not on {backend.Name}");
        if (launch.Launcher == Launcher.Torchrun)
            throw new DistributedLaunchException($"{launch}: the CPU backend's collectives are Open MPI's, which torchrun does not start; " +
                                                 "launch with mpirun -np N (or srun --mpi=pmix), or train on GPUs (--device cuda: NCCL)");
        return OpenMpi(launch, timeout);
    }

    private static MpiCommunicator OpenMpi(DistributedLaunch launch, TimeSpan timeout)
    {
        var mpi = MpiCommunicator.Open(timeout);
        if (mpi.Size != launch.Size || mpi.Rank != launch.Rank)
            throw new CommunicatorException($"{launch}: but MPI sees rank {mpi.Rank} of {mpi.Size}" +
                (launch.Launcher == Launcher.Slurm ? " (srun must start Open MPI with PMIx: srun --mpi=pmix, or use mpirun inside the allocation)" : ""));
        return mpi;
    }

    /// <summary>The GPU ordinal of this rank for --device <paramref name="device"/>: its local rank (or the one GPU it
    /// sees), see <see cref="GpuAssignment"/>; 0 for a single process or the CPU.</summary>
    public static int DeviceOrdinal(DistributedLaunch launch, string device)
    {
        if (!launch.IsDistributed || device == "cpu") return 0;
        int count = CudaDevice.Count();
        // No GPU: the backend's own error says why (or --device auto falls back to the CPU).
        return count == 0 ? 0 : GpuAssignment.DeviceOrdinal(launch, count, Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES"));
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
