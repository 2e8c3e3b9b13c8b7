using Bert.Runtime;
using Bert.Runtime.IO;
using Bert.Runtime.Training;
using Bert.Tests.IO;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Training;

/// <summary>
/// Checkpoints and exact resume through <see cref="TrainingCheckpoints"/> (the code path of `bert
/// pretrain`): a resumed run in a new model and trainer repeats the straight run bit for bit; a kill
/// part-way through a step or through a save loses nothing but the work since the last checkpoint;
/// divergence stops before any weight changes.
/// </summary>
public class ResumeTests
{
    private const long Steps = 6;
    private const ulong Seed = 5;
    private static readonly IReadOnlyDictionary<string, string> Settings = new Dictionary<string, string> { ["run"] = "resume-test" };

    /// <summary>4 steps at S=32 (batch 4 in two micro-batches of 2), then 2 at S=64 (batch 2, micro 1):
    /// accumulation, both phases and dropout (the tiny preset's 0.1) all take part.</summary>
    private static IReadOnlyList<Phase> Phases() => TrainerTests.Phases(Steps, 1 / 3.0, 4, 2, 2, 1);

    private static LearningRateSchedule Schedule() => LearningRateSchedule.Create(1e-3, 2, Steps);

    private static StepReport Untimed(StepReport r) => r with { Seconds = 0 };

    /// <summary>What a run leaves: per-step reports and batches (row identities), final weights and moments.</summary>
    private sealed class RunRecord
    {
        public SortedDictionary<long, StepReport> Reports { get; } = new();
        public SortedDictionary<long, ulong[]> Batches { get; } = new();
        public float[] Weights = [], M = [], V = [];
    }

    /// <summary>Trains from step <paramref name="resumeFrom"/> (a checkpoint in <paramref name="checkpoints"/>) or
    /// from scratch, until <paramref name="stopAt"/> steps are done (saving a checkpoint every
    /// <paramref name="checkpointEvery"/> steps) or the backend's kill switch fires.</summary>
    private static void Train(RunRecord record, IBackend backend, TrainingCheckpoints? checkpoints, bool resume,
        long stopAt = Steps, long checkpointEvery = 0)
    {
        var datasets = TrainerTests.Datasets();
        try
        {
            using var model = Tiny(backend, 2);
            // A resumed model starts from other weights: the checkpoint must overwrite all of them.
            model.InitializeParameters(resume ? 999UL : 11UL);
            ResumePoint? point = resume ? checkpoints!.Load(model, Settings) : null;
            using var trainer = new Trainer(model, Phases(), datasets, Schedule(), new AdamWOptions(), Seed, point?.State);
            point?.RestoreOptimizer(trainer.Optimizer);
            trainer.BatchObserver = (step, batch) => record.Batches[step] = RowIds(batch);
            while (!trainer.Finished && trainer.Step < stopAt)
            {
                var r = trainer.RunStep();
                record.Reports[r.Step] = Untimed(r);
                if (checkpointEvery > 0 && trainer.Step % checkpointEvery == 0) checkpoints!.Save(trainer, TrainingData.Vocab, Settings);
            }
            if (checkpoints is not null && checkpointEvery == 0 && !trainer.Finished) checkpoints.Save(trainer, TrainingData.Vocab, Settings);
            record.Weights = Download(model.Backend, model.Parameters);
            record.M = Download(model.Backend, trainer.Optimizer.M);
            record.V = Download(model.Backend, trainer.Optimizer.V);
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }

    private static readonly Lazy<RunRecord> StraightRun = new(() =>
    {
        var record = new RunRecord();
        using var backend = NewBackend();
        Train(record, backend, null, resume: false);
        return record;
    });

    private static void AssertSameRun(RunRecord expected, RunRecord actual)
    {
        Assert.That(actual.Reports.Keys, Is.EqualTo(Enumerable.Range(0, (int)Steps).Select(i => (long)i)), "every step ran");
        foreach (var (step, r) in expected.Reports)
            Assert.That(actual.Reports[step], Is.EqualTo(r), $"step {step}: loss, accuracies, learning rate and gradient norm bitwise equal");
        Assert.That(actual.Batches, Is.EqualTo(expected.Batches), "the same instances in the same steps");
        Assert.That(actual.Batches.Values.SelectMany(b => b).Order(), Is.EqualTo(expected.Batches.Values.SelectMany(b => b).Order()),
            "the same multiset of instances");
        using var backend = NewBackend();
        using var model = Tiny(backend, 1);
        AssertBitwiseEqual(expected.Weights, actual.Weights, model, "final weights");
        AssertBitwiseEqual(expected.M, actual.M, model, "final first moments");
        AssertBitwiseEqual(expected.V, actual.V, model, "final second moments");
    }

    [Test]
    public void ResumingInANewTrainerRepeatsTheStraightRunBitForBit()
    {
        var straight = StraightRun.Value;
        Assert.That(straight.Reports.Values.Select(r => r.Phase).Distinct(), Is.EqualTo(new[] { "seq32", "seq64" }));
        var checkpoints = new TrainingCheckpoints(Path.Combine(TrainingData.NewDirectory("resume"), "checkpoints"));
        var resumed = new RunRecord();
        using (var backend = NewBackend())
            Train(resumed, backend, checkpoints, resume: false, stopAt: 3);
        Assert.That(checkpoints.Complete.Select(c => c.Step), Is.EqualTo(new[] { 3L }));
        using (var backend = NewBackend())
            Train(resumed, backend, checkpoints, resume: true);
        AssertSameRun(straight, resumed);
    }

    [Test]
    public void AStepKilledBetweenItsMicroBatchesIsRedoneFromTheLastCheckpoint()
    {
        var straight = StraightRun.Value;
        var checkpoints = new TrainingCheckpoints(Path.Combine(TrainingData.NewDirectory("kill"), "checkpoints"));
        var run = new RunRecord();
        ulong[] abandoned;
        using (var cpu = NewBackend())
        {
            // Steps 0–2 take two micro-batches each, two loss ops (MLM, NSP) per micro-batch: call 15
            // is step 3's second micro-batch, after its first one ran forward and backward.
            var backend = new KillSwitchBackend(cpu) { KillAtLossCall = 3 * 2 * 2 + 3 };
            var kill = Assert.Throws<SimulatedKillException>(() => Train(run, backend, checkpoints, resume: false, checkpointEvery: 2));
            Assert.That(kill!.Call, Is.EqualTo(15));
            Assert.That(run.Reports.Keys, Is.EqualTo(new long[] { 0, 1, 2 }), "step 3 never finished");
            abandoned = run.Batches[3];
        }
        Assert.That(checkpoints.Complete.Select(c => c.Step), Is.EqualTo(new[] { 2L }), "the last checkpoint is step 2's");
        using (var backend = NewBackend())
            Train(run, backend, checkpoints, resume: true);
        Assert.That(run.Batches[3], Is.EqualTo(abandoned), "the abandoned step's batch is read again, not skipped");
        AssertSameRun(straight, run);
    }

    [Test]
    public void ASaveKilledAtAnyPointLeavesTheLastCheckpointLoadable()
    {
        string dir = TrainingData.NewDirectory("crash");
        string root = Path.Combine(dir, "checkpoints");
        var datasets = TrainerTests.Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = new NoDropoutModel(backend, 2, TrainingData.ShortSeq, TrainingData.ShortPredictions, NoDropoutModel.DefaultConfig with { VocabSize = TrainingData.Vocab.Count });
            using var loaded = new NoDropoutModel(backend, 2, TrainingData.ShortSeq, TrainingData.ShortPredictions, NoDropoutModel.DefaultConfig with { VocabSize = TrainingData.Vocab.Count });
            model.InitializeParameters(2);
            using var trainer = new Trainer(model, TrainerTests.Phases(4, 0, 2, 2, 2, 2), datasets,
                LearningRateSchedule.Create(1e-3, 0, 4), new AdamWOptions(), Seed);
            var saved = new Dictionary<long, float[]>();
            trainer.RunStep();
            trainer.RunStep();
            new TrainingCheckpoints(root).Save(trainer, TrainingData.Vocab, Settings);
            saved[2] = Download(backend, model.Parameters);
            trainer.RunStep();
            trainer.RunStep();
            saved[4] = Download(backend, model.Parameters);

            var counting = new FaultInjectingFileSystem();
            new TrainingCheckpoints(Path.Combine(dir, "count"), fileSystem: counting).Save(trainer, TrainingData.Vocab, Settings);
            int operations = counting.Operations;
            Assert.That(operations, Is.GreaterThan(10));

            int survivedAsStep4 = 0;
            for (int k = 0; k < operations; k++)
            {
                var fs = new FaultInjectingFileSystem { CrashAtOperation = k };
                Assert.Throws<SimulatedCrashException>(() => new TrainingCheckpoints(root, fileSystem: fs).Save(trainer, TrainingData.Vocab, Settings),
                    $"crash at operation {k}");
                backend.Zero(loaded.Parameters);
                var point = new TrainingCheckpoints(root).Load(loaded, Settings);
                Assert.That(point.Step, Is.AnyOf(2L, 4L), $"crash at {fs.Log[^1]}");
                AssertBitwiseEqual(saved[point.Step], Download(backend, loaded.Parameters), loaded, $"weights after a crash at {fs.Log[^1]}");
                if (point.Step == 4)
                {
                    // The crash came after the rename: the new checkpoint is complete. Start over from step 2.
                    survivedAsStep4++;
                    Directory.Delete(point.Directory, recursive: true);
                }
            }
            Assert.That(survivedAsStep4, Is.LessThan(operations / 2), "most crash points fall before the checkpoint is complete");

            string last = new TrainingCheckpoints(root).Save(trainer, TrainingData.Vocab, Settings)!;
            Assert.That(Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
                .Where(e => Path.GetFileName(e).Contains(AtomicFile.TempMarker, StringComparison.Ordinal)), Is.Empty, "no temp files after a good save");
            Assert.That(new TrainingCheckpoints(root).Complete.Select(c => c.Step), Is.EqualTo(new[] { 4L, 2L }));
            Assert.That(Path.GetFileName(last), Is.EqualTo("step-000004"));
            backend.Zero(loaded.Parameters);
            Assert.That(new TrainingCheckpoints(root).Load(loaded, Settings).Step, Is.EqualTo(4));
            AssertBitwiseEqual(saved[4], Download(backend, loaded.Parameters), loaded, "weights of the good save");
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }

    [Test]
    public void ANaNWeightStopsTheStepBeforeAnyUpdateAndNamesTheTensor()
    {
        const string tensor = "bert.encoder.layer.1.output.dense.weight";
        string root = Path.Combine(TrainingData.NewDirectory("nan"), "checkpoints");
        var datasets = TrainerTests.Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = Tiny(backend, 2);
            model.InitializeParameters(3);
            using var trainer = new Trainer(model, Phases(), datasets, Schedule(), new AdamWOptions(), Seed);
            var checkpoints = new TrainingCheckpoints(root);
            trainer.RunStep();
            trainer.RunStep();
            string saved = checkpoints.Save(trainer, TrainingData.Vocab, Settings)!;
            var files = Directory.GetFiles(saved).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

            var weight = model.Parameter(tensor);
            backend.Upload<float>(weight.Slice(5, 1), [float.NaN]);
            var before = Download(backend, model.Parameters);
            var mBefore = Download(backend, trainer.Optimizer.M);
            var e = Assert.Throws<NonFiniteException>(() => trainer.RunStep());
            Assert.Multiple(() =>
            {
                Assert.That(e!.Step, Is.EqualTo(2));
                Assert.That(e.Message, Does.StartWith("step 2: loss is NaN"));
                Assert.That(e.Message, Does.Contain($"weight {tensor} [128, 512] is NaN at element 5"));
                Assert.That(e.Message, Does.Contain("the last checkpoint is intact"));
            });
            AssertBitwiseEqual(before, Download(backend, model.Parameters), model, "weights after the failed step");
            AssertBitwiseEqual(mBefore, Download(backend, trainer.Optimizer.M), model, "moments after the failed step");

            Assert.That(Directory.GetFiles(saved).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes), Is.EqualTo(files), "the checkpoint is untouched");
            using var fresh = Tiny(backend, 2);
            var point = checkpoints.Load(fresh, Settings);
            Assert.That(point.Step, Is.EqualTo(2));
            Assert.That(Download(backend, fresh.Parameters).All(float.IsFinite), "the checkpoint's weights are finite");
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }
}
