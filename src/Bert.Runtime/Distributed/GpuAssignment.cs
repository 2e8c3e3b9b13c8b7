using System.Globalization;

namespace Bert.Runtime.Distributed;

/// <summary>
/// Which GPU a rank trains on, and the check that no two ranks share one. A rank uses the GPU of its local rank
/// (torchrun, mpirun and srun number the ranks of one machine 0..local size − 1); a process that sees a single GPU
/// uses it whatever its local rank (a launcher that gives each rank its own CUDA_VISIBLE_DEVICES, as Slurm's
/// --gpus-per-task does). Two ranks on one GPU are found by comparing the GPUs' UUIDs, which are unique across
/// machines, after the rendezvous has gathered them; NCCL up to 2.29 refuses them anyway ("Duplicate GPU
/// detected"), later than this check and less clearly. <see cref="AllowSharedVariable"/>=1 lets them through for
/// the experiment of issue 15 (two ranks on one GPU posing as two hosts).
/// </summary>
public static class GpuAssignment
{
    public const string AllowSharedVariable = "BERT_ALLOW_SHARED_GPU";
    public const string ForceNcclVariable = "BERT_FORCE_NCCL";

    /// <summary>True when <paramref name="name"/> is set to 1 (or true/yes).</summary>
    public static bool Flag(Func<string, string?> environment, string name) =>
        environment(name)?.Trim().ToLowerInvariant() is "1" or "true" or "yes";

    /// <summary>The device ordinal for <paramref name="launch"/> when <paramref name="visibleDevices"/> GPUs are visible.</summary>
    /// <exception cref="DistributedLaunchException">No GPU is visible, or more ranks run on this machine than it has GPUs.</exception>
    public static int DeviceOrdinal(DistributedLaunch launch, int visibleDevices, string? cudaVisibleDevices = null)
    {
        if (visibleDevices < 1)
            throw new DistributedLaunchException($"{launch}: no GPU is visible to this rank{Visible(cudaVisibleDevices)}");
        if (launch.LocalRank < visibleDevices) return launch.LocalRank;
        if (visibleDevices == 1) return 0;
        throw new DistributedLaunchException(string.Create(CultureInfo.InvariantCulture,
            $"{launch}: local rank {launch.LocalRank} needs GPU {launch.LocalRank}, but this machine shows {visibleDevices} GPUs{Visible(cudaVisibleDevices)}; " +
            $"start at most one rank per GPU (--nproc-per-node {visibleDevices}, or mpirun -np with {visibleDevices} slots per machine)"));
    }

    /// <summary>Throws when two ranks hold the same GPU (equal UUIDs in <paramref name="deviceIds"/>, indexed by rank),
    /// unless <paramref name="allowShared"/>. Every rank gets the same list, so every rank fails alike.</summary>
    /// <exception cref="DistributedLaunchException">Names the first two ranks on one GPU and the GPU.</exception>
    public static void CheckDistinct(IReadOnlyList<byte[]> deviceIds, bool allowShared)
    {
        if (allowShared) return;
        var first = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int r = 0; r < deviceIds.Count; r++)
        {
            var uuid = FormatUuid(deviceIds[r]);
            if (first.TryGetValue(uuid, out int other))
                throw new DistributedLaunchException(string.Create(CultureInfo.InvariantCulture,
                    $"ranks {other} and {r} both use GPU {uuid}: data-parallel training runs one rank per GPU (check the launcher's " +
                    $"--nproc-per-node / -np against the GPUs per machine, and CUDA_VISIBLE_DEVICES); {AllowSharedVariable}=1 lets ranks share a GPU " +
                    $"for an experiment (NCCL up to 2.29 still refuses it)"));
            first[uuid] = r;
        }
    }

    /// <summary>"GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi -L prints a UUID.</summary>
    public static string FormatUuid(ReadOnlySpan<byte> uuid)
    {
        if (uuid.Length != 16) throw new ArgumentException($"a GPU UUID is 16 bytes, got {uuid.Length}", nameof(uuid));
        var hex = Convert.ToHexStringLower(uuid);
        return $"GPU-{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..]}";
    }

    private static string Visible(string? cudaVisibleDevices) =>
        cudaVisibleDevices is null ? "" : $" (CUDA_VISIBLE_DEVICES={cudaVisibleDevices})";
}
