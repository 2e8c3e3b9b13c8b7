using System.Globalization;
using System.Text;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// metrics.jsonl of a fine-tuning run: one object per optimizer step
/// (<c>{"kind":"train","step","epoch","loss","accuracy","lr","grad_norm","rows","seconds"}</c>) and one
/// per evaluation (<c>{"kind":"eval","split","epoch","step","loss","accuracy","f1","examples"}</c>;
/// accuracy is the exact-match rate for spans). Each line is flushed as it is written.
/// </summary>
public sealed class FineTuningLog : IDisposable
{
    private readonly StreamWriter _writer;

    /// <summary>Creates (or truncates) <paramref name="path"/>.</summary>
    public FineTuningLog(string path)
    {
        Path = path;
        _writer = new StreamWriter(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
    }

    public string Path { get; }

    public void WriteStep(in FineTuningStepReport r)
    {
        _writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"kind\":\"train\",\"step\":{r.Step},\"epoch\":{r.Epoch + 1},\"loss\":{Num(r.Loss)},\"accuracy\":{Num(r.Accuracy)},\"lr\":{Num(r.LearningRate)}," +
            $"\"grad_norm\":{Num(r.GradNorm)},\"rows\":{r.Rows},\"seconds\":{Num(r.Seconds)}}}"));
        _writer.Flush();
    }

    /// <param name="epoch">1-based epoch the evaluation follows.</param>
    /// <param name="step">Optimizer steps done.</param>
    public void WriteEval(string split, int epoch, long step, EvaluationResult e)
    {
        _writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"kind\":\"eval\",\"split\":\"{split}\",\"epoch\":{epoch},\"step\":{step},\"loss\":{Num(e.Loss)},\"accuracy\":{Num(e.Accuracy)}," +
            $"\"f1\":{Num(e.F1)},\"examples\":{e.Examples}}}"));
        _writer.Flush();
    }

    private static string Num(double v) => double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : $"\"{v}\"";

    public void Dispose() => _writer.Dispose();
}
