using BenchmarkDotNet.Attributes;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;

namespace Bert.Bench;

/// <summary>
/// Forward + backward of a generated preset on the CPU backend (batch 32, sequence 128, 20
/// predictions, vocab 30522), and the same plus clipping and AdamW (a whole training step).
/// Run: dotnet run -c Release --project bench/Bert.Bench -- --filter '*ModelBenchmarks*'
/// </summary>
[MemoryDiagnoser]
public class ModelBenchmarks
{
    private CpuBackend _backend = null!;
    private BertModelBase _model = null!;
    private AdamWOptimizer _optimizer = null!;
    private DeviceBatch _device = null!;
    private BertBatch _batch;
    private int _step;

    [Params("tiny", "mini")]
    public string Preset { get; set; } = "mini";

    public const int Batch = 32, Seq = 128, Predictions = 20, Vocab = 30522;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        _model = ModelPresets.Create(Preset, _backend, Batch, Seq, Predictions, Vocab);
        _model.InitializeParameters(1);
        _model.Training = true;
        _optimizer = new AdamWOptimizer(_model, new AdamWOptions());
        _device = new DeviceBatch(_backend, Batch, Seq, Predictions);
        var host = Bert.Cli.Commands.BenchCommand.SyntheticBatch(Batch, Seq, Predictions, Vocab, 7);
        _batch = _device.Upload(host, 0, Batch, Batch * Predictions, 1);
    }

    [Benchmark(Description = "forward+backward")]
    public void ForwardBackward()
    {
        _model.DropoutStep = (uint)_step++;
        _model.ZeroGradients();
        _model.Forward(_batch);
        _model.Backward(_batch);
    }

    [Benchmark(Description = "training step")]
    public void TrainingStep()
    {
        ForwardBackward();
        _optimizer.Step(_step, 1e-4f);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device.Dispose();
        _optimizer.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}
