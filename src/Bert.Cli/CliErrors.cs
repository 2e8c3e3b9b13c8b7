using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.Distributed;
using Bert.Runtime.IO;
using Bert.Runtime.Training;

namespace Bert.Cli;

/// <summary>
/// The one mapping from the runtime's exceptions to the CLI's one-line errors and exit codes, used by
/// <see cref="Program.Run"/> for every command (and by the commands' Run methods, which tests call directly):
/// <list type="table">
/// <item><term>2 Usage</term><description>bad arguments (parse errors, <see cref="UserException"/> by default, a --resume with
/// settings other than the checkpoint's: <see cref="CheckpointSettingsMismatchException"/>)</description></item>
/// <item><term>3 BadInput</term><description>a missing or malformed input: the typed format exceptions
/// (<see cref="DataFormatException"/> and its shard, vocabulary and corpus kinds; <see cref="FileFormatException"/>
/// and its safetensors, config and checkpoint kinds), <see cref="TensorMismatchException"/>,
/// <see cref="InvalidDataException"/>, <see cref="FileNotFoundException"/>, <see cref="DirectoryNotFoundException"/>, a checkpoint's
/// trainer state that cannot continue the run (<see cref="ResumeStateException"/>)</description></item>
/// <item><term>4 Io</term><description>an output that cannot be written: <see cref="DiskFullException"/>, any other
/// <see cref="IOException"/>, <see cref="UnauthorizedAccessException"/>; a cancelled command</description></item>
/// <item><term>5 NonFinite</term><description><see cref="NonFiniteException"/>: training diverged</description></item>
/// <item><term>6 Device</term><description>the GPU or its driver failed: exceptions of the CUDA bindings (namespace
/// Bert.Native), a missing native library</description></item>
/// <item><term>7 Distributed</term><description>data-parallel training: <see cref="CommunicatorException"/> (MPI/NCCL missing or
/// failing), <see cref="ReplicaMismatchException"/>; a collective's timeout ends the job with this code too. A launch
/// with a missing or malformed rank variable (<see cref="DistributedLaunchException"/>) is a usage error (2)</description></item>
/// </list>
/// Anything else is a bug: <see cref="ExitCodes.Internal"/> with the stack trace.
/// </summary>
internal static class CliErrors
{
    /// <summary>The user-facing error for <paramref name="e"/>, or null when it is a bug.</summary>
    public static UserException? Translate(Exception e) => e switch
    {
        UserException u => u,
        NonFiniteException => new UserException(e.Message, ExitCodes.NonFinite),
        CheckpointSettingsMismatchException => new UserException("--resume: " + e.Message, ExitCodes.Usage),
        ResumeStateException => new UserException("--resume: " + e.Message, ExitCodes.BadInput),
        // The format exceptions first: DataFormatException is an IOException, and its message already names file, field and value.
        DataFormatException or FileFormatException or TensorMismatchException or InvalidDataException
            => new UserException(e.Message, ExitCodes.BadInput),
        FileNotFoundException or DirectoryNotFoundException => new UserException(e.Message, ExitCodes.BadInput),
        DiskFullException => new UserException(e.Message, ExitCodes.Io),
        IOException or UnauthorizedAccessException => new UserException(e.Message, ExitCodes.Io),
        OperationCanceledException => new UserException("cancelled", 130),
        DistributedLaunchException => new UserException(e.Message, ExitCodes.Usage),
        CommunicatorException or ReplicaMismatchException => new UserException(e.Message, ExitCodes.Distributed),
        ModelMemoryException => new UserException(e.Message, ExitCodes.Device),
        GraphCaptureException => new UserException(e.Message, ExitCodes.Device),
        DllNotFoundException or EntryPointNotFoundException => new UserException(e.Message, ExitCodes.Device),
        _ when e.GetType().Namespace?.StartsWith("Bert.Native", StringComparison.Ordinal) == true
            => new UserException(e.Message, ExitCodes.Device),
        _ => null,
    };
}
