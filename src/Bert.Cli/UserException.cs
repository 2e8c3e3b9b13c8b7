namespace Bert.Cli;

/// <summary>A user's mistake (bad argument, missing file): printed as one line, no stack trace.</summary>
public sealed class UserException(string message, int exitCode = ExitCodes.Usage) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>Documented exit codes, one per error class.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>Unhandled internal error (a bug: please report it).</summary>
    public const int Internal = 1;
    /// <summary>Bad command-line argument or option value.</summary>
    public const int Usage = 2;
    /// <summary>An input file is missing, unreadable or malformed.</summary>
    public const int BadInput = 3;
    /// <summary>An output could not be written (permissions, full disk).</summary>
    public const int Io = 4;
    /// <summary>Training diverged (NaN/Inf loss or gradient).</summary>
    public const int NonFinite = 5;
    /// <summary>The requested device is not available (no GPU, no driver, out of device memory).</summary>
    public const int Device = 6;
    /// <summary>Data-parallel training failed: a collective timed out (a rank died or hangs), the ranks' replicas
    /// differ, or MPI/NCCL could not start.</summary>
    public const int Distributed = Bert.Runtime.Distributed.MpiCommunicator.TimeoutExitCode;
}
