using System.Globalization;
using Spectre.Console;

namespace Bert.Cli;

/// <summary>
/// Live progress for long work: a Spectre.Console bar (description, bar, percent, ETA) on an
/// interactive terminal; plain, periodic lines otherwise (CI logs, pipes).
/// </summary>
public static class ProgressDisplay
{
    public static bool Interactive =>
        AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected &&
        Environment.GetEnvironmentVariable("CI") is null;

    /// <summary>Runs <paramref name="work"/> with a reporter; <c>report(done, description)</c>.</summary>
    public static T Run<T>(string title, double total, Func<Action<double, string>, T> work)
    {
        if (!Interactive)
        {
            var last = DateTime.MinValue;
            var start = DateTime.UtcNow;
            return work((done, text) =>
            {
                var now = DateTime.UtcNow;
                if ((now - last).TotalSeconds < 5 && done < total) return;
                last = now;
                double frac = total > 0 ? done / total : 1;
                double elapsed = (now - start).TotalSeconds;
                string eta = frac > 0 && frac < 1 ? $" eta {TimeSpan.FromSeconds(elapsed / frac - elapsed):mm\\:ss}" : "";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{title}: {100 * frac,5:F1}% {text}{eta}"));
            });
        }

        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(),
                new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(total, 1e-9));
                result = work((done, text) =>
                {
                    task.Value = done;
                    task.Description = Markup.Escape($"{title} {text}");
                });
                task.Value = task.MaxValue;
            });
        return result;
    }
}
