using System.Globalization;
using System.Text;

namespace Bert.Runtime.Training;

/// <summary>
/// metrics.jsonl: one JSON object per optimizer step (and one per evaluation). Lines are appended and
/// flushed as they come; on resume, lines at or beyond the resumed step are dropped first (rewritten
/// atomically) so the file reads as one uninterrupted run. With a TensorBoard directory, the same values
/// also go to an event file there (<see cref="TensorBoardWriter"/>), under HF Trainer's names:
/// train/loss, train/mlm_loss, train/nsp_loss, train/mlm_accuracy, train/nsp_accuracy, train/learning_rate,
/// train/grad_norm, train/sequences_per_second, and eval/&lt;split&gt;_loss (…_mlm_loss, …_nsp_loss,
/// …_mlm_accuracy, …_nsp_accuracy) for held-out evaluations; steps are metrics.jsonl's.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly TensorBoardWriter? _tensorBoard;

    /// <param name="tensorBoardDirectory">Where to write a TensorBoard event file too (null: none); each start
    /// (a resumed one too) adds a new file there, starting at <paramref name="resumeStep"/>.</param>
    public MetricsLog(string path, long resumeStep, string? tensorBoardDirectory = null)
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
        if (tensorBoardDirectory is not null)
        {
            try
            {
                _tensorBoard = TensorBoardWriter.Create(tensorBoardDirectory, Math.Max(0, resumeStep));
            }
            catch
            {
                _writer.Dispose();
                throw;
            }
        }
    }

    /// <summary>The TensorBoard event file, or null.</summary>
    public string? TensorBoardPath => _tensorBoard?.Path;

    public string Path { get; }

    public void Write(in StepReport r)
    {
        var c = CultureInfo.InvariantCulture;
        _writer.WriteLine(string.Create(c,
            $"{{\"kind\":\"train\",\"step\":{r.Step},\"phase\":\"{r.Phase}\",\"seq_length\":{r.SeqLength},\"loss\":{Num(r.Loss)},\"mlm_loss\":{Num(r.MlmLoss)},\"nsp_loss\":{Num(r.NspLoss)}," +
            $"\"mlm_accuracy\":{Num(r.MlmAccuracy)},\"nsp_accuracy\":{Num(r.NspAccuracy)},\"lr\":{Num(r.LearningRate)},\"grad_norm\":{Num(r.GradNorm)}," +
            $"\"sequences\":{r.Sequences},\"tokens\":{r.Tokens},\"seconds\":{Num(r.Seconds)}}}"));
        _writer.Flush();
        _tensorBoard?.Write(r.Step,
            ("train/loss", r.Loss), ("train/mlm_loss", r.MlmLoss), ("train/nsp_loss", r.NspLoss),
            ("train/mlm_accuracy", r.MlmAccuracy), ("train/nsp_accuracy", r.NspAccuracy),
            ("train/learning_rate", r.LearningRate), ("train/grad_norm", r.GradNorm),
            ("train/sequences_per_second", r.Sequences / r.Seconds));
    }

    public void WriteEval(long step, string split, in EvalReport e)
    {
        _writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"kind\":\"eval\",\"step\":{step},\"split\":\"{split}\",\"loss\":{Num(e.Loss)},\"mlm_loss\":{Num(e.MlmLoss)},\"nsp_loss\":{Num(e.NspLoss)}," +
            $"\"mlm_accuracy\":{Num(e.MlmAccuracy)},\"nsp_accuracy\":{Num(e.NspAccuracy)},\"sequences\":{e.Sequences}}}"));
        _writer.Flush();
        string p = $"eval/{split}_";
        _tensorBoard?.Write(step,
            (p + "loss", e.Loss), (p + "mlm_loss", e.MlmLoss), (p + "nsp_loss", e.NspLoss),
            (p + "mlm_accuracy", e.MlmAccuracy), (p + "nsp_accuracy", e.NspAccuracy));
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

    public void Dispose()
    {
        _writer.Dispose();
        _tensorBoard?.Dispose();
    }
}
