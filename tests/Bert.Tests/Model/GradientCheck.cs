using System.Globalization;
using System.Text;
using Bert.Runtime;

namespace Bert.Tests.Model;

/// <summary>
/// Whole-model gradient check: the analytic gradient of the model's loss (one Forward + Backward)
/// against central finite differences of the same loss, for a sample of elements of every parameter
/// tensor. Everything runs in fp32 on the backend, so the step is large (1e-2) and the tolerance
/// fp32-sized:
/// <c>|fd − an| ≤ Relative·max(|fd|, |an|) + Absolute</c>.
/// Why these numbers: the loss is O(5) and carries fp32 rounding noise of about 1e-6 relative, which the
/// difference quotient amplifies by 1/(2·eps) to a few 1e-5 (so Absolute 2e-4 leaves a margin of ten),
/// while the truncation error eps²/6·f''' stays below 1% of the gradient for the weights used here (so
/// Relative 2e-2 leaves a margin). Each tensor's sample includes its two largest-magnitude gradient
/// elements, where the relative term dominates, so an error of a few percent fails the check
/// (see <see cref="WholeModelGradientTests"/>' sensitivity tests).
/// </summary>
internal static class GradientCheck
{
    public const double Step = 1e-2;
    public const double Relative = 2e-2;
    public const double Absolute = 2e-4;

    /// <summary>One checked element.</summary>
    public sealed record Sample(string Tensor, int Row, long Index, double Analytic, double Numeric)
    {
        public double Error => Math.Abs(Numeric - Analytic);
        public double Allowed => Relative * Math.Max(Math.Abs(Numeric), Math.Abs(Analytic)) + Absolute;
        public bool Passed => Error <= Allowed;

        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"{Tensor}[{Index}]: analytic {Analytic:g6}, finite difference {Numeric:g6}, |diff| {Error:g3} > allowed {Allowed:g3}");
    }

    public sealed record Result(IReadOnlyList<Sample> Samples, double Loss, float[] Gradients)
    {
        public IReadOnlyList<Sample> Failures => [.. Samples.Where(s => !s.Passed)];

        public string Report(int max = 20)
        {
            var failures = Failures;
            var text = new StringBuilder();
            text.Append(CultureInfo.InvariantCulture, $"{failures.Count} of {Samples.Count} sampled gradient elements outside tolerance:");
            foreach (var f in failures.Take(max)) text.Append("\n  ").Append(f);
            if (failures.Count > max) text.Append(CultureInfo.InvariantCulture, $"\n  … and {failures.Count - max} more");
            return text.ToString();
        }
    }

    /// <summary>
    /// Runs Forward + Backward once for the analytic gradient, then two Forward passes per sampled
    /// element. The model's dropout settings (Training, Seed, DropoutStep) stay fixed, so with dropout
    /// on every pass draws the same masks and the loss is a smooth function of the weights.
    /// </summary>
    /// <param name="perTensor">Elements sampled per tensor: its two largest |gradient| elements, the
    /// rest uniformly at random (all elements of a smaller tensor).</param>
    /// <param name="include">Elements (within a tensor) to check besides the sample.</param>
    /// <param name="corrupt">Applied to the analytic gradient before the comparison (sensitivity tests).</param>
    /// <param name="tensors">Which tensors to check (all when null).</param>
    public static Result Run(BertModelBase model, in BertBatch batch, int perTensor = 6, int seed = 1,
        Func<ParameterInfo, IEnumerable<long>>? include = null, Action<float[]>? corrupt = null,
        Func<ParameterInfo, bool>? tensors = null)
    {
        var backend = model.Backend;
        model.ZeroGradients();
        model.Forward(batch);
        double loss = ModelLoss.Total(model);
        model.Backward(batch);
        var gradients = ModelLoss.Download(backend, model.Gradients);
        corrupt?.Invoke(gradients);
        var weights = ModelLoss.Download(backend, model.Parameters);

        var samples = new List<Sample>();
        var table = model.ParameterTable;
        for (int row = 0; row < table.Count; row++)
        {
            var p = table[row];
            if (tensors is not null && !tensors(p)) continue;
            var chosen = Choose(gradients.AsSpan((int)p.Offset, (int)p.Count), perTensor, seed * 7919 + row);
            foreach (long i in include?.Invoke(p) ?? []) if (!chosen.Contains(i)) chosen.Add(i);
            foreach (long i in chosen)
            {
                long at = p.Offset + i;
                float w = weights[at];
                // The difference quotient over the steps fp32 actually takes.
                float plus = (float)(w + Step), minus = (float)(w - Step);
                double lossPlus = LossAt(model, batch, at, plus);
                double lossMinus = LossAt(model, batch, at, minus);
                backend.Upload<float>(model.Parameters.Slice(at, 1), [w]);
                samples.Add(new Sample(p.Name, row, i, gradients[at], (lossPlus - lossMinus) / ((double)plus - minus)));
            }
        }
        return new Result(samples, loss, gradients);
    }

    private static double LossAt(BertModelBase model, in BertBatch batch, long at, float value)
    {
        model.Backend.Upload<float>(model.Parameters.Slice(at, 1), [value]);
        model.Forward(batch);
        return ModelLoss.Total(model);
    }

    /// <summary>The two largest-magnitude elements, then distinct random ones.</summary>
    private static List<long> Choose(ReadOnlySpan<float> gradient, int count, int seed)
    {
        if (gradient.Length <= count) return [.. Enumerable.Range(0, gradient.Length).Select(i => (long)i)];
        var chosen = new List<long>();
        var g = gradient.ToArray();
        foreach (int i in Enumerable.Range(0, g.Length).OrderByDescending(i => Math.Abs(g[i])).Take(Math.Min(2, count)))
            chosen.Add(i);
        var rng = new Random(seed);
        while (chosen.Count < count)
        {
            long i = rng.Next(g.Length);
            if (!chosen.Contains(i)) chosen.Add(i);
        }
        return chosen;
    }
}
