using System.CommandLine;
using Bert.Native;
using Bert.Runtime;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert check-kernels`: runs every op on the CPU reference backend and on the GPU with the same random
/// inputs, and prints op, shape, max abs error, max rel error and GPU time. Exit 0 when every op is within
/// tolerance, 1 when one is not (a kernel bug), 6 without a usable GPU.
/// </summary>
public static class CheckKernelsCommand
{
    /// <param name="referenceBackend">Creates the reference backend (the CPU backend); null when the build has
    /// none, which the command reports.</param>
    public static Command Create(Func<IBackend>? referenceBackend)
    {
        var precision = new Option<string>("--precision")
        {
            Description = "compute type of the GPU backend: f32 (tolerance 1e-5) or bf16 (tolerance 5e-2)",
            DefaultValueFactory = _ => "f32",
        };
        precision.AcceptOnlyFromAmong("f32", "bf16");
        var size = new Option<string>("--size")
        {
            Description = "problem sizes: small (odd sizes: B 3, S 7, H 32, I 37, V 99) or base (BERT-base)",
            DefaultValueFactory = _ => "small",
        };
        size.AcceptOnlyFromAmong("small", "base");
        var seed = new Option<int>("--seed") { Description = "seed of the random inputs", DefaultValueFactory = _ => 1234 };
        var filter = new Option<string?>("--filter") { Description = "only cases whose op/case name contains this text" };
        var device = new Option<int>("--device") { Description = "GPU ordinal", DefaultValueFactory = _ => 0 };
        var repeats = new Option<int>("--repeats") { Description = "timed runs per op on the GPU", DefaultValueFactory = _ => 3 };
        var cmd = new Command("check-kernels", "compare every CUDA op with the CPU reference on the same inputs")
        {
            precision, size, seed, filter, device, repeats,
        };
        cmd.SetAction((r, cancellationToken) =>
        {
            int n = r.GetValue(repeats);
            if (n < 0) throw new UserException($"--repeats must be non-negative, got {n}");
            var options = new CudaBackendOptions
            {
                DeviceOrdinal = r.GetValue(device),
                ComputeType = r.GetValue(precision) == "bf16" ? DType.BF16 : DType.F32,
                Profile = true,
            };
            var check = new KernelCheckOptions
            {
                Seed = r.GetValue(seed),
                Size = r.GetValue(size) == "base" ? KernelCheckSize.Base : KernelCheckSize.Small,
                Filter = r.GetValue(filter),
                TimingRepeats = n,
            };
            return Task.FromResult(Run(referenceBackend, options, check, Console.Out, Console.Error, cancellationToken));
        });
        return cmd;
    }

    /// <summary>The command's work, with its writers passed in so tests can read the output.</summary>
    public static int Run(Func<IBackend>? referenceBackend, CudaBackendOptions options, KernelCheckOptions check,
        TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        if (!CudaBackend.TryCreate(out var gpu, out var reason, options))
        {
            error.WriteLine($"bert: check-kernels: {reason}");
            return ExitCodes.Device;
        }
        using (gpu)
        {
            if (referenceBackend is null)
            {
                error.WriteLine("bert: check-kernels: this build has no CPU reference backend wired in (see docs/cuda.md)");
                return ExitCodes.Internal;
            }
            using var reference = referenceBackend();
            output.WriteLine($"reference: {reference.Name}");
            output.WriteLine($"candidate: {gpu!.Name}, {gpu.ComputeType}; {gpu.Description}");
            output.WriteLine();
            var results = KernelCheck.Run(reference, gpu, check, cancellationToken);
            output.Write(KernelCheck.Format(results));
            int failed = results.Count(x => !x.Passed);
            output.WriteLine();
            output.WriteLine(failed == 0
                ? $"all {results.Count} cases within tolerance"
                : $"{failed} of {results.Count} cases outside tolerance or failed");
            return failed == 0 ? ExitCodes.Ok : ExitCodes.Internal;
        }
    }
}
