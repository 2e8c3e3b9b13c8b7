using System.Text.Json;
using Bert.Runtime.IO;
using ScottPlot;

namespace Bert.Cli;

/// <summary>Writes a finished run's plot. The plot is a convenience drawn after the results are saved:
/// when it cannot be written (a full disk, no permission) the run still succeeds, with a warning, and
/// no temp file is left behind.</summary>
internal static class PlotOutput
{
    public static bool Save(Plot plot, string pngPath, int width = 1000, int height = 600)
    {
        try
        {
            byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
            AtomicFile.Write(PhysicalFileSystem.Instance, pngPath, s => s.Write(png));
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"bert: warning: plot not written: {e.Message}; the run's checkpoints and metrics are saved");
            return false;
        }
    }

    /// <summary>Trailing mean over a window of ~2% of the run, so noisy per-step values read as a curve.</summary>
    public static double[] Smooth(List<double> values)
    {
        int w = Math.Max(1, values.Count / 50);
        var result = new double[values.Count];
        double sum = 0;
        for (int i = 0; i < values.Count; i++)
        {
            sum += values[i];
            if (i >= w) sum -= values[i - w];
            result[i] = sum / Math.Min(i + 1, w);
        }
        return result;
    }

    /// <summary>A metrics.jsonl row's numeric field, or NaN when it is absent or not a number.</summary>
    public static double Number(JsonElement row, string name) =>
        row.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetDouble() : double.NaN;
}
