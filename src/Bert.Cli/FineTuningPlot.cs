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
            double l = PlotOutput.Number(r, "loss");
            if (double.IsNaN(l)) continue;
            double step = r.GetProperty("step").GetDouble();
            if (kind == "eval")
            {
                if (r.TryGetProperty("split", out var split) && split.GetString() != "validation") continue;
                evalSteps.Add(step);
                evalLoss.Add(l);
                evalAccuracy.Add(PlotOutput.Number(r, "accuracy"));
                evalF1.Add(PlotOutput.Number(r, "f1"));
                continue;
            }
            steps.Add(step + 1);
            loss.Add(l);
            accuracy.Add(PlotOutput.Number(r, "accuracy"));
        }
        if (steps.Count == 0) return;

        var plot = new Plot();
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.YLabel("loss");
        var trainLoss = plot.Add.ScatterLine(steps.ToArray(), PlotOutput.Smooth(loss));
        trainLoss.LegendText = "train loss";
        var right = plot.Axes.Right;
        var trainAccuracy = plot.Add.ScatterLine(steps.ToArray(), PlotOutput.Smooth(accuracy));
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
}
