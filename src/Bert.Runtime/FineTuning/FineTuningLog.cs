using System.Globalization;
using System.Text;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// metrics.jsonl of a fine-tuning run: one object per optimizer step
/// (<c>{"kind":"train","step","epoch","loss","accuracy","lr","grad_norm","rows","seconds"}</c>) and one
/// per evaluation (<c>{"kind":"eval","split","epoch","step","loss","accuracy","f1","examples"}</c>;
/// accuracy is the exact-match rate for spans). Each line is flushed as it is written. With a TensorBoard
/// directory the same values also go to an event file there, under HF Trainer's names: train/loss,
/// train/accuracy, train/learning_rate, train/grad_norm, train/epoch; eval/loss, eval/accuracy, eval/f1 for
/// validation and test/… for the test split; steps are metrics.jsonl's.
/// </summary>
public sealed class FineTuningLog : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly Training.TensorBoardWriter? _tensorBoard;

    /// <summary>Creates (or truncates) <paramref name="path"/>; with <paramref name="tensorBoardDirectory"/>, also
    /// a new TensorBoard event file there.</summary>
    public FineTuningLog(string path, string? tensorBoardDirectory = null)
    {
        Path = path;
        _writer = new StreamWriter(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
        if (tensorBoardDirectory is not null)
        {
            try
            {
                _tensorBoard = Training.TensorBoardWriter.Create(tensorBoardDirectory);
            }
            catch
            {
                _writer.Dispose();
                throw;
            }
        }
    }

    public string Path { get; }

    /// <summary>The TensorBoard event file, or null.</summary>
    public string? TensorBoardPath => _tensorBoard?.Path;

    public void WriteStep(in FineTuningStepReport r)
    {
        _writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"kind\":\"train\",\"step\":{r.Step},\"epoch\":{r.Epoch + 1},\"loss\":{Num(r.Loss)},\"accuracy\":{Num(r.Accuracy)},\"lr\":{Num(r.LearningRate)}," +
            $"\"grad_norm\":{Num(r.GradNorm)},\"rows\":{r.Rows},\"seconds\":{Num(r.Seconds)}}}"));
        _writer.Flush();
        _tensorBoard?.Write(r.Step, ("train/loss", r.Loss), ("train/accuracy", r.Accuracy), ("train/learning_rate", r.LearningRate),
            ("train/grad_norm", r.GradNorm), ("train/epoch", r.Epoch + 1));
    }

    /// <param name="epoch">1-based epoch the evaluation follows.</param>
    /// <param name="step">Optimizer steps done.</param>
    public void WriteEval(string split, int epoch, long step, EvaluationResult e)
    {
        _writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"kind\":\"eval\",\"split\":\"{split}\",\"epoch\":{epoch},\"step\":{step},\"loss\":{Num(e.Loss)},\"accuracy\":{Num(e.Accuracy)}," +
            $"\"f1\":{Num(e.F1)},\"examples\":{e.Examples}}}"));
        _writer.Flush();
        string p = split == "validation" ? "eval/" : split + "/";
        _tensorBoard?.Write(step, (p + "loss", e.Loss), (p + "accuracy", e.Accuracy), (p + "f1", e.F1));
    }

    private static string Num(double v) => double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : $"\"{v}\"";

    public void Dispose()
    {
        _writer.Dispose();
        _tensorBoard?.Dispose();
    }
}
