using System.Collections;
using System.Globalization;

namespace Bert.Runtime.Distributed;

/// <summary>Who started this process as one rank of several.</summary>
public enum Launcher
{
    /// <summary>No launcher: a world of one.</summary>
    None,
    /// <summary>Open MPI's mpirun/mpiexec (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE).</summary>
    Mpirun,
    /// <summary>torchrun (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT).</summary>
    Torchrun,
    /// <summary>Slurm's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_STEP_ID).</summary>
    Slurm,
}

/// <summary>A launch configuration problem: a missing or malformed launcher variable, two ranks on one device.
/// The message names the variable and its value.</summary>
public sealed class DistributedLaunchException(string message) : Exception(message);

/// <summary>
/// The rank layout a launcher hands to this process through its environment, read the way each launcher
/// documents it: Open MPI's mpirun first (its variables are the most specific), then torchrun's, then Slurm's
/// (only inside a job step started by srun: a batch script's own SLURM_PROCID is not a rank). A partial set of
/// variables is an error naming the missing one; no variables is a world of one.
/// </summary>
public sealed record DistributedLaunch(Launcher Launcher, int Rank, int Size, int LocalRank, int LocalSize,
    string? MasterAddress = null, int? MasterPort = null)
{
    public static readonly DistributedLaunch Single = new(Launcher.None, 0, 1, 0, 1);

    public bool IsDistributed => Size > 1;

    /// <summary>The launch this process's environment describes.</summary>
    public static DistributedLaunch FromEnvironment()
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables()) env[(string)e.Key] = e.Value as string;
        return Detect(env);
    }

    /// <summary>The launch <paramref name="env"/> describes (see the type's remarks).</summary>
    public static DistributedLaunch Detect(IReadOnlyDictionary<string, string?> env)
    {
        string? Get(string name) => env.TryGetValue(name, out var v) && !string.IsNullOrEmpty(v) ? v : null;

        if (Get("OMPI_COMM_WORLD_RANK") is not null)
        {
            const string who = "mpirun";
            int size = Int(env, "OMPI_COMM_WORLD_SIZE", who, min: 1);
            int rank = Int(env, "OMPI_COMM_WORLD_RANK", who, min: 0);
            int localSize = Int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", who, min: 1);
            int localRank = Int(env, "OMPI_COMM_WORLD_LOCAL_RANK", who, min: 0);
            return Checked(new DistributedLaunch(Launcher.Mpirun, rank, size, localRank, localSize), "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE");
        }
        if (Get("RANK") is not null || Get("WORLD_SIZE") is not null)
        {
            const string who = "torchrun";
            int size = Int(env, "WORLD_SIZE", who, min: 1);
            int rank = Int(env, "RANK", who, min: 0);
            int localRank = Int(env, "LOCAL_RANK", who, min: 0);
            int localSize = Get("LOCAL_WORLD_SIZE") is null ? size : Int(env, "LOCAL_WORLD_SIZE", who, min: 1);
            string? address = size > 1 ? Get("MASTER_ADDR") ?? throw Missing("MASTER_ADDR", who) : Get("MASTER_ADDR");
            int? port = size > 1 || Get("MASTER_PORT") is not null ? Int(env, "MASTER_PORT", who, min: 1) : null;
            if (port > 65535) throw new DistributedLaunchException($"MASTER_PORT {port}: not a TCP port (1-65535)");
            return Checked(new DistributedLaunch(Launcher.Torchrun, rank, size, localRank, localSize, address, port), "RANK", "WORLD_SIZE");
        }
        if (Get("SLURM_STEP_ID") is { } step && step != "batch" && Get("SLURM_PROCID") is not null)
        {
            const string who = "srun";
            int size = Int(env, "SLURM_NTASKS", who, min: 1);
            int rank = Int(env, "SLURM_PROCID", who, min: 0);
            int localRank = Int(env, "SLURM_LOCALID", who, min: 0);
            int localSize = Get("SLURM_NTASKS_PER_NODE") is { } perNode && int.TryParse(perNode, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : size;
            return Checked(new DistributedLaunch(Launcher.Slurm, rank, size, localRank, localSize, Get("MASTER_ADDR"),
                Get("MASTER_PORT") is null ? null : Int(env, "MASTER_PORT", who, min: 1)), "SLURM_PROCID", "SLURM_NTASKS");
        }
        return Single;
    }

    private static DistributedLaunch Checked(DistributedLaunch l, string rankName, string sizeName)
    {
        if (l.Rank >= l.Size) throw new DistributedLaunchException($"{rankName} {l.Rank}: must be below {sizeName} {l.Size}");
        if (l.LocalRank >= l.LocalSize)
            throw new DistributedLaunchException($"local rank {l.LocalRank}: must be below the local world size {l.LocalSize} ({l.Launcher} launch)");
        return l;
    }

    private static int Int(IReadOnlyDictionary<string, string?> env, string name, string launcher, int min)
    {
        if (!env.TryGetValue(name, out var text) || string.IsNullOrEmpty(text)) throw Missing(name, launcher);
        if (!int.TryParse(text, NumberStyles.AllowLeadingWhite | NumberStyles.AllowTrailingWhite, CultureInfo.InvariantCulture, out int value) || value < min)
            throw new DistributedLaunchException($"{name} '{text}': not an integer ≥ {min} ({launcher} launch)");
        return value;
    }

    private static DistributedLaunchException Missing(string name, string launcher) =>
        new($"{name} is not set: this process looks launched by {launcher} (some of its variables are set) but {name} is missing");

    public override string ToString() => Launcher == Launcher.None ? "single process"
        : string.Create(CultureInfo.InvariantCulture, $"rank {Rank} of {Size} (local {LocalRank} of {LocalSize}, {Launcher})");
}
