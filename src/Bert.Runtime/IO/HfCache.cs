namespace Bert.Runtime.IO;

/// <summary>
/// Finds models in the HuggingFace hub cache offline, as transformers does with local_files_only: a model id
/// ("bert-base-uncased", "google/bert_uncased_L-2_H-128_A-2") is looked up as hub/models--{org}--{name} under
/// HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub; a cache repository directory (models--…)
/// resolves to the snapshot refs/main names (or its only snapshot). Nothing is downloaded.
/// </summary>
public static class HfCache
{
    /// <summary>The hub cache directory transformers would use.</summary>
    public static string HubDirectory()
    {
        if (Environment.GetEnvironmentVariable("HF_HUB_CACHE") is { Length: > 0 } hub) return hub;
        if (Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } home) return Path.Combine(home, "hub");
        string user = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg : Path.Combine(user, ".cache");
        return Path.Combine(cache, "huggingface", "hub");
    }

    /// <summary>Whether <paramref name="text"/> looks like a hub model id rather than a path.</summary>
    public static bool IsModelId(string text) =>
        text.Length > 0 && !text.StartsWith('.') && !text.StartsWith('/') && !text.Contains('\\') && text.Count(c => c == '/') <= 1
        && text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/');

    /// <summary>The directory holding the model's files for <paramref name="pathOrId"/>: an existing directory as it is
    /// (a cache repository resolved to its snapshot), else a model id found in the cache; null when it is neither.</summary>
    /// <exception cref="DirectoryNotFoundException">A cache repository without a usable snapshot (the message says why).</exception>
    public static string? Resolve(string pathOrId)
    {
        ArgumentException.ThrowIfNullOrEmpty(pathOrId);
        if (Directory.Exists(pathOrId))
            return IsRepository(pathOrId) ? Snapshot(Path.GetFullPath(pathOrId)) : Path.GetFullPath(pathOrId);
        if (!IsModelId(pathOrId)) return null;
        string repository = Path.Combine(HubDirectory(), "models--" + pathOrId.Replace("/", "--", StringComparison.Ordinal));
        return Directory.Exists(repository) ? Snapshot(repository) : null;
    }

    private static bool IsRepository(string directory) =>
        Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory))).StartsWith("models--", StringComparison.Ordinal)
        && Directory.Exists(Path.Combine(directory, "snapshots"));

    private static string Snapshot(string repository)
    {
        string snapshots = Path.Combine(repository, "snapshots");
        string main = Path.Combine(repository, "refs", "main");
        if (File.Exists(main))
        {
            string commit = File.ReadAllText(main).Trim();
            string dir = Path.Combine(snapshots, commit);
            if (commit.Length > 0 && Directory.Exists(dir)) return dir;
            throw new DirectoryNotFoundException($"{main}: names snapshot '{commit}', which is not in {snapshots}; download the model again");
        }
        var all = Directory.Exists(snapshots) ? Directory.GetDirectories(snapshots) : [];
        return all.Length switch
        {
            1 => all[0],
            0 => throw new DirectoryNotFoundException($"{repository}: the cache holds no snapshot of this model; download it (e.g. `huggingface-cli download`)"),
            _ => throw new DirectoryNotFoundException($"{repository}: {all.Length} snapshots and no refs/main to choose one; pass the snapshot directory"),
        };
    }
}
