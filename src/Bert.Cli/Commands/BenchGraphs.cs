using System.CommandLine;
using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Training;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert bench --cuda-graphs off|on|auto`: the step bench times, run op by op or as one replayed CUDA graph
/// (<see cref="GraphedTrainingStep"/>). Off (the default, comparable with earlier results) queues every op of every step;
/// on captures the first step and replays it, failing with the reason when the step cannot be captured; auto does the
/// same on the CUDA backend and otherwise runs op by op after one line on stderr saying why. Both paths keep the step's
/// scalars (learning rate, bias corrections, dropout counter) in device memory, so they time the same work.
/// </summary>
internal static class BenchGraphs
{
    /// <summary>The stepper of <paramref name="model"/>; the fallback line of auto goes to stderr.</summary>
    public static GraphedTrainingStep Create(BertModelBase model, AdamWOptimizer optimizer, CudaGraphMode mode)
    {
        try
        {
            return new GraphedTrainingStep(model, optimizer, mode, line => Console.Error.WriteLine($"bert bench: {line}"));
        }
        catch (GraphCaptureException e)
        {
            throw new UserException(e.Message);
        }
    }

    /// <summary>Bench step <paramref name="step"/>: learning rate 1e-4, dropout counter = step.</summary>
    public static void Run(GraphedTrainingStep stepper, int step, in BertBatch batch)
    {
        try
        {
            stepper.Run(step, batch, 1e-4f, (uint)step);
        }
        catch (GraphCaptureException e)
        {
            throw new UserException(e.Message);
        }
    }
}
