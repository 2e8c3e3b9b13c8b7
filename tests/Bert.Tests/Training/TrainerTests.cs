using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Training;

/// <summary>The pretraining loop on real data: gradient accumulation, the 90% phase switch,
/// overfitting a handful of instances.</summary>
public class TrainerTests
{
    internal static IReadOnlyList<Phase> Phases(long steps, double longFraction, int batch, int micro, int batchLong, int microLong) =>
        PhasePlan.Create(steps, longFraction,
            (TrainingData.ShortSeq, TrainingData.ShortPredictions, batch, micro),
            (TrainingData.LongSeq, TrainingData.LongPredictions, batchLong, microLong));

    /// <summary>Both datasets by phase name; dispose them with <see cref="Close"/>.</summary>
    internal static Dictionary<string, PretrainingDataset> Datasets() => new()
    {
        [$"seq{TrainingData.ShortSeq}"] = TrainingData.Open(TrainingData.ShortSeq),
        [$"seq{TrainingData.LongSeq}"] = TrainingData.Open(TrainingData.LongSeq),
    };

    internal static void Close(Dictionary<string, PretrainingDataset> datasets)
    {
        foreach (var d in datasets.Values) d.Dispose();
    }

    /// <summary>Runs <paramref name="steps"/> steps of one batch B, or of two micro-batches of B/2,
    /// and returns the reports, each step's accumulated gradient and the final weights.</summary>
    private static (List<StepReport> Reports, List<float[]> Gradients, float[] Weights) RunNoDropout(int micro, int steps)
    {
        const int batch = 8;
        var datasets = Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = new NoDropoutModel(backend, micro, TrainingData.ShortSeq, TrainingData.ShortPredictions, NoDropoutModel.DefaultConfig with { VocabSize = TrainingData.Vocab.Count });
            model.InitializeParameters(17);
            var phases = Phases(steps, 0, batch, micro, 2, 2);
            using var trainer = new Trainer(model, phases, datasets, LearningRateSchedule.Create(1e-3, 0, steps), new AdamWOptions(), seed: 4);
            var reports = new List<StepReport>();
            var gradients = new List<float[]>();
            for (int i = 0; i < steps; i++)
            {
                reports.Add(trainer.RunStep());
                gradients.Add(Download(backend, model.Gradients));
            }
            return (reports, gradients, Download(backend, model.Parameters));
        }
        finally
        {
            Close(datasets);
        }
    }

    [Test]
    public void TwoMicroBatchesOfHalfTheBatchGiveTheUpdateOfOneBatch()
    {
        const int steps = 3;
        var whole = RunNoDropout(micro: 8, steps);
        var halves = RunNoDropout(micro: 4, steps);
        for (int s = 0; s < steps; s++)
        {
            var (a, b) = (whole.Reports[s], halves.Reports[s]);
            Assert.Multiple(() =>
            {
                Assert.That(b.Loss, Is.EqualTo(a.Loss).Within(1e-5 * a.Loss), $"step {s} loss");
                Assert.That(b.MlmLoss, Is.EqualTo(a.MlmLoss).Within(1e-5 * a.MlmLoss), $"step {s} MLM loss");
                Assert.That(b.NspLoss, Is.EqualTo(a.NspLoss).Within(1e-5 * a.NspLoss), $"step {s} NSP loss");
                Assert.That(b.GradNorm, Is.EqualTo(a.GradNorm).Within(1e-5 * a.GradNorm), $"step {s} gradient norm");
                Assert.That(b.Sequences, Is.EqualTo(8));
            });
            var (ga, gb) = (whole.Gradients[s], halves.Gradients[s]);
            double max = ga.Max(Math.Abs);
            for (int i = 0; i < ga.Length; i++)
                if (Math.Abs(ga[i] - gb[i]) > 1e-5 * max)
                    Assert.Fail($"step {s}: gradient element {i} is {gb[i]:R} accumulated, {ga[i]:R} in one batch (largest |g| {max:R})");
        }
        for (int i = 0; i < whole.Weights.Length; i++)
            if (Math.Abs(whole.Weights[i] - halves.Weights[i]) > 1e-6)
                Assert.Fail($"weight {i} is {halves.Weights[i]:R} accumulated, {whole.Weights[i]:R} in one batch");
    }

    [Test]
    public void SwitchesToTheLongPhaseAtNinetyPercent()
    {
        const int steps = 10;
        var datasets = Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = new NoDropoutModel(backend, 2, TrainingData.LongSeq, TrainingData.LongPredictions, NoDropoutModel.DefaultConfig with { VocabSize = TrainingData.Vocab.Count });
            model.InitializeParameters(1);
            var schedule = LearningRateSchedule.Create(1e-3, 2, steps);
            using var trainer = new Trainer(model, Phases(steps, 0.1, 4, 2, 2, 1), datasets, schedule, new AdamWOptions(), seed: 2);
            var seen = new List<(long Step, int Seq, int Rows)>();
            trainer.BatchObserver = (step, batch) => seen.Add((step, batch.SeqLength, batch.Rows));
            var reports = new List<StepReport>();
            var phasesBefore = new List<string>();
            while (!trainer.Finished)
            {
                phasesBefore.Add(trainer.CurrentPhase.Name);
                reports.Add(trainer.RunStep());
            }
            var cursors = trainer.State.Cursors.ToDictionary(c => c.Phase, c => (c.Epoch, c.Position));
            long shortCount = datasets["seq32"].Count;

            Assert.Multiple(() =>
            {
                Assert.That(reports.Select(r => r.Phase), Is.EqualTo(Enumerable.Repeat("seq32", 9).Append("seq64")));
                Assert.That(reports.Select(r => r.SeqLength), Is.EqualTo(Enumerable.Repeat(32, 9).Append(64)));
                Assert.That(phasesBefore, Is.EqualTo(reports.Select(r => r.Phase)), "CurrentPhase names the step about to run");
                Assert.That(reports.Select(r => r.Sequences), Is.EqualTo(Enumerable.Repeat(4, 9).Append(2)));
                Assert.That(seen, Is.EqualTo(reports.Select(r => (r.Step, r.SeqLength, r.Sequences))), "the batches read");
                Assert.That(reports.All(r => r.Tokens > 0 && r.Tokens <= r.Sequences * r.SeqLength), "tokens are counted without padding");
                Assert.That(reports[9].Tokens, Is.GreaterThan(2 * 32), "the long phase reads S=64 instances");
                Assert.That(reports.Select(r => r.LearningRate), Is.EqualTo(Enumerable.Range(0, steps).Select(i => (double)(float)schedule.At(i))),
                    "one schedule spans both phases");
                Assert.That(cursors, Is.EqualTo(new Dictionary<string, (long, long)> { ["seq32"] = (36 / shortCount, 36 % shortCount), ["seq64"] = (0, 2) }),
                    "each phase reads its own dataset");
                Assert.That(reports.All(r => double.IsFinite(r.Loss) && r.MlmLoss > 0 && r.NspLoss > 0));
            });
        }
        finally
        {
            Close(datasets);
        }
    }

    [Test]
    public void TinyPresetOverfitsEightInstances()
    {
        const int limit = 300;
        using var backend = NewBackend();
        using var eight = TrainingData.OpenEight();
        Assert.That(eight.Count, Is.EqualTo(8));
        using var model = Tiny(backend, 8, TrainingData.ShortSeq, TrainingData.ShortPredictions);
        model.InitializeParameters(5);
        var phases = Phases(limit, 0, 8, 8, 8, 8);
        var datasets = new Dictionary<string, PretrainingDataset> { ["seq32"] = eight };
        using var trainer = new Trainer(model, phases, datasets, LearningRateSchedule.Create(2e-3, 10, limit), new AdamWOptions(), seed: 6);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        StepReport r;
        do r = trainer.RunStep();
        while (r.MlmLoss >= 0.1 && !trainer.Finished);
        TestContext.Out.WriteLine($"MLM loss {r.MlmLoss:F4} (accuracy {r.MlmAccuracy:P0}) after {trainer.Step} steps, {clock.Elapsed.TotalSeconds:F1} s");
        Assert.That(r.MlmLoss, Is.LessThan(0.1), $"MLM loss after {trainer.Step} steps");
    }

    /// <summary>A trainer state that cannot continue this run is a clear error (exit 3 in the CLI), not a stack trace:
    /// another seed, or a data cursor outside a dataset that was prepared again.</summary>
    [Test]
    public void AResumeStateOfAnotherSeedOrOutsideTheDatasetIsAClearError()
    {
        var datasets = Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = new NoDropoutModel(backend, 2, TrainingData.ShortSeq, TrainingData.ShortPredictions, NoDropoutModel.DefaultConfig with { VocabSize = TrainingData.Vocab.Count });
            var phases = Phases(4, 0, 2, 2, 2, 2);
            var schedule = LearningRateSchedule.Create(1e-3, 0, 4);
            var cursors = phases.Select(p => new CursorState(p.Name, 0, 1)).ToArray();
            var seed = Assert.Throws<ResumeStateException>(() => new Trainer(model, phases, datasets, schedule, new AdamWOptions(), 4, new TrainerState(2, 99, cursors)))!;
            Assert.That(seed.Message, Does.Contain("seed 99").And.Contain("this run has seed 4").And.Contain("--seed"));
            long count = datasets[phases[0].Name].Count;
            var past = phases.Select(p => new CursorState(p.Name, 1, count + 5)).ToArray();
            var cursor = Assert.Throws<ResumeStateException>(() => new Trainer(model, phases, datasets, schedule, new AdamWOptions(), 4, new TrainerState(2, 4, past)))!;
            Assert.That(cursor.Message, Does.Contain($"position {count + 5}").And.Contain($"{count} instances").And.Contain("prepared again"));
            Assert.That(Bert.Cli.CliErrors.Translate(cursor)!.ExitCode, Is.EqualTo(Bert.Cli.ExitCodes.BadInput));
            var unknown = cursors.Append(new CursorState("seq999", 0, 0)).ToArray();
            var phase = Assert.Throws<ResumeStateException>(() => new Trainer(model, phases, datasets, schedule, new AdamWOptions(), 4, new TrainerState(2, 4, unknown)))!;
            Assert.That(phase.Message, Does.Contain("phase seq999"));
        }
        finally
        {
            Close(datasets);
        }
    }

    [Test]
    public void TheNextBatchIsReadWhileTheStepRunsAndStateStillPointsAtIt()
    {
        // Step t + 1's batch is read after step t's work is queued and before its one wait for the device (here: the
        // read-back download), and State (what a checkpoint saves) does not count it, so a resume reads it again.
        var datasets = Datasets();
        try
        {
            var phases = Phases(4, 0.5, 2, 1, 2, 2);
            var schedule = LearningRateSchedule.Create(1e-3, 0, 4);
            using var cpu = new Bert.Runtime.Cpu.CpuBackend(1);
            Trainer? trainer = null;
            var readyAtDownload = new List<bool>();
            using var backend = new OnDownload(cpu, () => readyAtDownload.Add(trainer!.NextBatchReady));
            using var model = Tiny(backend, 2);
            model.InitializeParameters(3);
            trainer = new Trainer(model, phases, datasets, schedule, new AdamWOptions(), seed: 7);
            var batches = new List<int[]>();
            trainer.BatchObserver = (_, host) => batches.Add(host.InputIds.ToArray());
            var states = new List<TrainerState>();
            var ready = new List<bool>();
            while (!trainer.Finished)
            {
                trainer.RunStep();
                states.Add(trainer.State);
                ready.Add(trainer.NextBatchReady);
            }
            trainer.Dispose();

            // A trainer resumed from each state reads exactly the batch the first one used next.
            var resumedBatches = new List<int[]>();
            for (int s = 0; s < states.Count - 1; s++)
            {
                using var m2 = Tiny(cpu, 2);
                m2.InitializeParameters(3);
                using var resumed = new Trainer(m2, phases, datasets, schedule, new AdamWOptions(), seed: 7, resume: states[s]);
                resumed.BatchObserver = (_, host) => resumedBatches.Add(host.InputIds.ToArray());
                resumed.RunStep();
            }
            Assert.Multiple(() =>
            {
                Assert.That(ready, Is.EqualTo(new[] { true, true, true, false }), "read ahead after every step but the last");
                Assert.That(readyAtDownload, Is.EqualTo(new[] { true, true, true, false }), "read before the step's wait for the device");
                for (int s = 0; s < resumedBatches.Count; s++)
                    Assert.That(resumedBatches[s], Is.EqualTo(batches[s + 1]), $"the batch after step {s} (phase change after step 1)");
            });
        }
        finally
        {
            Close(datasets);
        }
    }

    /// <summary>Calls a hook at every download (the step's one read-back on the CPU backend).</summary>
    private sealed class OnDownload(IBackend inner, Action hook) : DelegatingBackend(inner)
    {
        public override void Download<T>(Span<T> destination, TensorRef source)
        {
            hook();
            base.Download(destination, source);
        }
    }
}
