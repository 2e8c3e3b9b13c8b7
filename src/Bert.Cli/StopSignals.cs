using System.Runtime.InteropServices;

namespace Bert.Cli;

/// <summary>
/// The one signal handler of the training commands. The first SIGINT (Ctrl+C), SIGTERM or SIGHUP asks
/// the loop to stop after the current step, save and exit with the shell's code for that signal
/// (130, 143, 129), so `bert pretrain &amp;&amp; bert export` does not go on with a half-trained model. A
/// second signal more than a second later exits at once without saving (exit code as above); one
/// within a second is the same keypress delivered twice (the process group under `dotnet run`) and is
/// ignored. System.CommandLine's own termination handler is off (Program.Run), so nothing else races
/// this one.
/// </summary>
public sealed class StopSignals : IDisposable
{
    private readonly List<PosixSignalRegistration> _registrations = [];
    private readonly string _command;
    private readonly Action<int> _exitNow;
    private readonly Func<DateTime> _clock;
    private DateTime _first;
    private volatile int _exitCode;

    public StopSignals(string command) : this(command, code => Environment.Exit(code), () => DateTime.UtcNow)
    {
        if (OperatingSystem.IsWindows())
        {
            Console.CancelKeyPress += OnCancelKeyPress;
            return;
        }
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP })
            _registrations.Add(PosixSignalRegistration.Create(signal, c =>
            {
                c.Cancel = true;
                Raise(c.Signal);
            }));
    }

    /// <summary>For tests: no OS registration; <paramref name="exitNow"/> stands in for Environment.Exit.</summary>
    internal StopSignals(string command, Action<int> exitNow, Func<DateTime> clock)
    {
        _command = command;
        _exitNow = exitNow;
        _clock = clock;
    }

    /// <summary>A stop was asked for: finish the step, save, exit with <see cref="ExitCode"/>.</summary>
    public bool Requested => _exitCode != 0;

    /// <summary>130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP); 0 while no signal came.</summary>
    public int ExitCode => _exitCode;

    public static int CodeOf(PosixSignal signal) => signal switch
    {
        PosixSignal.SIGINT => 130,
        PosixSignal.SIGTERM => 143,
        PosixSignal.SIGHUP => 129,
        _ => 128,
    };

    internal void Raise(PosixSignal signal)
    {
        var now = _clock();
        if (_exitCode == 0)
        {
            _first = now;
            _exitCode = CodeOf(signal);
            ProgressDisplay.Notice($"{_command}: {signal}: stopping after this step and saving a checkpoint (send it again, or Ctrl+C, to quit at once without saving)");
            return;
        }
        if ((now - _first).TotalSeconds < 1) return;  // the same signal delivered to the process group
        ProgressDisplay.Notice($"{_command}: {signal} again: quitting without saving; the last complete checkpoint is intact");
        _exitNow(CodeOf(signal));
    }

    private void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
    {
        e.Cancel = true;
        Raise(PosixSignal.SIGINT);
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancelKeyPress;
        foreach (var r in _registrations) r.Dispose();
    }
}
