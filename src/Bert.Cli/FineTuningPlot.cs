using System.Globalization;
using System.Text.Json;
using ScottPlot;

namespace Bert.Cli;

/// <summary>Renders a fine-tuning metrics.jsonl as a PNG: training loss per step and validation loss per
/// epoch (left axis), training accuracy per step and validation accuracy and F1 per epoch (right axis).</summary>
public static class FineTuningPlot
{
    public static void Render(string metricsPath, string pngPath, string title)
    {
        var steps = new List<double>();
        var loss = new List<double>();
        var accuracy = new List<double>();
        var evalSteps = new List<double>();
        var evalLoss = new List<double>();
        var evalAccuracy = new List<double>();
        var evalF1 = new List<double>();
        foreach (var line in File.ReadLines(metricsPath))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            string kind = r.TryGetProperty("kind", out var k) ? k.GetString() ?? "" : "";
            if (!Number(r, "loss", out double l)) continue;
            double step = r.GetProperty("step").GetDouble();
            if (kind == "eval")
            {
                if (r.TryGetProperty("split", out var split) && split.GetString() != "validation") continue;
                evalSteps.Add(step);
                evalLoss.Add(l);
                evalAccuracy.Add(Number(r, "accuracy", out double a) ? a : double.NaN);
                evalF1.Add(Number(r, "f1", out double f) ? f : double.NaN);
                continue;
            }
            steps.Add(step + 1);
            loss.Add(l);
            accuracy.Add(Number(r, "accuracy", out double acc) ? acc : double.NaN);
        }
        if (steps.Count == 0) return;

        var plot = new Plot();
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.YLabel("loss");
        var trainLoss = plot.Add.ScatterLine(steps.ToArray(), Smooth(loss));
        trainLoss.LegendText = "train loss";
        var right = plot.Axes.Right;
        var trainAccuracy = plot.Add.ScatterLine(steps.ToArray(), Smooth(accuracy));
        trainAccuracy.Axes.YAxis = right;
        trainAccuracy.LegendText = "train accuracy";
        if (evalSteps.Count > 0)
        {
            var vl = plot.Add.Scatter(evalSteps.ToArray(), evalLoss.ToArray());
            vl.LegendText = "validation loss";
            vl.MarkerSize = 9;
            var va = plot.Add.Scatter(evalSteps.ToArray(), evalAccuracy.ToArray());
            va.Axes.YAxis = right;
            va.LegendText = "validation accuracy";
            va.MarkerSize = 9;
            var vf = plot.Add.Scatter(evalSteps.ToArray(), evalF1.ToArray());
            vf.Axes.YAxis = right;
            vf.LegendText = "validation F1";
            vf.MarkerSize = 9;
        }
        right.Label.Text = "accuracy / F1";
        plot.ShowLegend(Alignment.MiddleRight);

        PlotOutput.Save(plot, pngPath);
    }

    private static bool Number(JsonElement r, string name, out double value)
    {
        value = 0;
        if (!r.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.Number) return false;
        value = e.GetDouble();
        return true;
    }

    /// <summary>Trailing mean over ~2% of the run (per-step values are noisy).</summary>
    private static double[] Smooth(List<double> values)
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
}
