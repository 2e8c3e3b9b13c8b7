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
}
