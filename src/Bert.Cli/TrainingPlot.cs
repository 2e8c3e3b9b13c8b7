using System.Globalization;
using System.Text.Json;
using ScottPlot;

namespace Bert.Cli;

/// <summary>Renders metrics.jsonl as a PNG: training loss (left) and MLM / NSP accuracy (right) per
/// step, with held-out evaluations as markers.</summary>
public static class TrainingPlot
{
    public static void Render(string metricsPath, string pngPath, string title)
    {
        var steps = new List<double>();
        var loss = new List<double>();
        var mlmAcc = new List<double>();
        var nspAcc = new List<double>();
        var evalSteps = new List<double>();
        var evalLoss = new List<double>();
        foreach (var line in File.ReadLines(metricsPath))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            if (!r.TryGetProperty("loss", out var l) || l.ValueKind != JsonValueKind.Number) continue;
            double step = r.GetProperty("step").GetDouble();
            string kind = r.TryGetProperty("kind", out var k) ? k.GetString() ?? "" : "";
            if (kind == "eval")
            {
                evalSteps.Add(step);
                evalLoss.Add(l.GetDouble());
                continue;
            }
            steps.Add(step);
            loss.Add(l.GetDouble());
            mlmAcc.Add(PlotOutput.Number(r, "mlm_accuracy"));
            nspAcc.Add(PlotOutput.Number(r, "nsp_accuracy"));
        }
        if (steps.Count == 0) return;

        var plot = new Plot();
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.YLabel("loss (MLM + NSP)");
        var lossLine = plot.Add.ScatterLine(steps.ToArray(), PlotOutput.Smooth(loss));
        lossLine.LegendText = "train loss";
        if (evalSteps.Count > 0)
        {
            var ev = plot.Add.ScatterPoints(evalSteps.ToArray(), evalLoss.ToArray());
            ev.LegendText = "held-out loss";
            ev.MarkerSize = 9;
        }
        var right = plot.Axes.Right;
        var mlm = plot.Add.ScatterLine(steps.ToArray(), PlotOutput.Smooth(mlmAcc));
        mlm.Axes.YAxis = right;
        mlm.LegendText = "MLM accuracy";
        var nsp = plot.Add.ScatterLine(steps.ToArray(), PlotOutput.Smooth(nspAcc));
        nsp.Axes.YAxis = right;
        nsp.LegendText = "NSP accuracy";
        right.Label.Text = "accuracy";
        plot.ShowLegend(Alignment.UpperCenter);

        PlotOutput.Save(plot, pngPath);
    }
}
