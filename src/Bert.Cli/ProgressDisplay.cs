using System.Globalization;
using Spectre.Console;

namespace Bert.Cli;

/// <summary>
/// Live progress for long work: a Spectre.Console bar (description, bar, percent, ETA) on an
/// interactive terminal; plain, periodic lines otherwise (CI logs, pipes). The ETA comes from the
/// rate over the last minute of this process's own work (<see cref="RateEstimator"/>): the work done
/// before a resume does not count as instant progress, and a slower phase (S=512 after S=128)
/// shows in the estimate within a minute.
/// </summary>
public static class ProgressDisplay
{
    private static volatile bool _live;

    public static bool Interactive =>
        AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected &&
        Environment.GetEnvironmentVariable("CI") is null;

    /// <summary>A line for the user while work runs (e.g. "stopping after this step"): above the live
    /// bar on a terminal, where a plain write to stderr would be drawn over; stderr otherwise.</summary>
    public static void Notice(string text)
    {
        if (_live) AnsiConsole.MarkupLine(Markup.Escape(text));
        else Console.Error.WriteLine(text);
    }

    /// <summary>No progress at all (the ranks of a data-parallel run other than rank 0).</summary>
    public static bool Quiet { get; set; }

    /// <summary>Runs <paramref name="work"/> with a reporter; <c>report(done, description)</c>.</summary>
    public static T Run<T>(string title, double total, Func<Action<double, string>, T> work)
    {
        if (Quiet) return work((_, _) => { });
        var rate = new RateEstimator();
        if (!Interactive)
        {
            var last = DateTime.MinValue;
            return work((done, text) =>
            {
                var now = DateTime.UtcNow;
                rate.Add(now, done);
                if ((now - last).TotalSeconds < 5 && done < total) return;
                last = now;
                double frac = total > 0 ? done / total : 1;
                string eta = rate.Remaining(total, done) is { } left && frac < 1 ? $" eta {Format(left)}" : "";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{title}: {100 * frac,5:F1}% {text}{eta}"));
            });
        }

        T result = default!;
        try
        {
            _live = true;
            AnsiConsole.Progress()
                .AutoClear(false)
                .HideCompleted(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(),
                    new PercentageColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(total, 1e-9));
                    result = work((done, text) =>
                    {
                        var now = DateTime.UtcNow;
                        rate.Add(now, done);
                        task.Value = done;
                        string eta = rate.Remaining(total, done) is { } left && done < total ? $" eta {Format(left)}" : "";
                        task.Description = Markup.Escape($"{title} {text}{eta}");
                    });
                    // The bar stays where the work stopped: a stopped run does not read as finished.
                });
        }
        finally
        {
            _live = false;
        }
        return result;
    }

    private static string Format(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t:mm\\:ss}" : t.ToString(@"mm\:ss", CultureInfo.InvariantCulture);
}

/// <summary>Remaining time from the rate of progress over a sliding window (the last minute), counting
/// only progress made while it watched: the first report is the baseline, not progress.</summary>
public sealed class RateEstimator(double windowSeconds = 60)
{
    private readonly Queue<(DateTime Time, double Done)> _samples = new();

    /// <summary>Thread-safe: reports may come from several threads (Progress&lt;T&gt; posts to the pool).</summary>
    public void Add(DateTime time, double done)
    {
        lock (_samples)
        {
            _samples.Enqueue((time, done));
            // Keep one sample older than the window so the window is always covered.
            while (_samples.Count > 2 && (time - _samples.ElementAt(1).Time).TotalSeconds > windowSeconds) _samples.Dequeue();
        }
    }

    /// <summary>null until there is progress to measure.</summary>
    public TimeSpan? Remaining(double total, double done)
    {
        DateTime t0, t1;
        double d0, d1;
        lock (_samples)
        {
            if (_samples.Count < 2) return null;
            (t0, d0) = _samples.Peek();
            (t1, d1) = _samples.Last();
        }
        double seconds = (t1 - t0).TotalSeconds;
        if (d1 <= d0 || seconds <= 0) return null;
        double left = Math.Max(0, total - done) * seconds / (d1 - d0);
        return TimeSpan.FromSeconds(Math.Min(left, TimeSpan.MaxValue.TotalSeconds / 2));
    }
}
