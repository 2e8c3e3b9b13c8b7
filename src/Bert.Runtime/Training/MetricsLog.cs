using System.Globalization;
using System.Text;

namespace Bert.Runtime.Training;

/// <summary>
/// metrics.jsonl: one JSON object per optimizer step (and one per evaluation). Lines are appended and
/// flushed as they come; on resume, lines at or beyond the resumed step are dropped first (rewritten
/// atomically) so the file reads as one uninterrupted run.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    private readonly StreamWriter _writer;

    public MetricsLog(string path, long resumeStep)
    {
        Path = path;
        if (File.Exists(path) && resumeStep >= 0)
        {
            var kept = File.ReadLines(path).Where(l => StepOf(l) is { } s && s < resumeStep).ToList();
            // Atomic: a full disk leaves the old file whole and no temp file behind.
            IO.AtomicFile.Write(IO.PhysicalFileSystem.Instance, path, s =>
            {
                using var w = new StreamWriter(s, new UTF8Encoding(false), leaveOpen: true);
                foreach (var line in kept) w.WriteLine(line);
            });
        }
        _writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
    }

    public string Path { get; }

    public void Write(in StepReport r)
    {
        var c = CultureInfo.InvariantCulture;
        _writer.WriteLine(string.Create(c,
            $"{{\"kind\":\"train\",\"step\":{r.Step},\"phase\":\"{r.Phase}\",\"seq_length\":{r.SeqLength},\"loss\":{Num(r.Loss)},\"mlm_loss\":{Num(r.MlmLoss)},\"nsp_loss\":{Num(r.NspLoss)}," +
            $"\"mlm_accuracy\":{Num(r.MlmAccuracy)},\"nsp_accuracy\":{Num(r.NspAccuracy)},\"lr\":{Num(r.LearningRate)},\"grad_norm\":{Num(r.GradNorm)}," +
            $"\"sequences\":{r.Sequences},\"tokens\":{r.Tokens},\"seconds\":{Num(r.Seconds)}}}"));
        _writer.Flush();
    }

    public void WriteEval(long step, string split, in EvalReport e)
    {
        _writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"kind\":\"eval\",\"step\":{step},\"split\":\"{split}\",\"loss\":{Num(e.Loss)},\"mlm_loss\":{Num(e.MlmLoss)},\"nsp_loss\":{Num(e.NspLoss)}," +
            $"\"mlm_accuracy\":{Num(e.MlmAccuracy)},\"nsp_accuracy\":{Num(e.NspAccuracy)},\"sequences\":{e.Sequences}}}"));
        _writer.Flush();
    }

    private static string Num(double v) => double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : $"\"{v}\"";

    /// <summary>The "step" field of a metrics line, or null.</summary>
    public static long? StepOf(string line)
    {
        int i = line.IndexOf("\"step\":", StringComparison.Ordinal);
        if (i < 0) return null;
        i += 7;
        int j = i;
        while (j < line.Length && char.IsAsciiDigit(line[j])) j++;
        return long.TryParse(line.AsSpan(i, j - i), NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s : null;
    }

    public void Dispose() => _writer.Dispose();
}
