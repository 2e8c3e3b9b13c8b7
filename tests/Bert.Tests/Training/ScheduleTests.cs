using Bert.Runtime.Training;
using NUnit.Framework;

namespace Bert.Tests.Training;

public class ScheduleTests
{
    [Test]
    public void LearningRateWarmsUpLinearlyThenDecaysToZero()
    {
        var s = LearningRateSchedule.Create(1e-4, warmup: 10_000, total: 100_000);
        Assert.Multiple(() =>
        {
            Assert.That(s.At(0), Is.EqualTo(0.0));
            Assert.That(s.At(5_000), Is.EqualTo(0.5e-4).Within(1e-15));
            Assert.That(s.At(10_000), Is.EqualTo(1e-4).Within(1e-15), "end of warmup is the peak");
            Assert.That(s.At(55_000), Is.EqualTo(0.5e-4).Within(1e-15), "halfway through the decay");
            Assert.That(s.At(99_999), Is.EqualTo(1e-4 / 90_000).Within(1e-15), "last step");
        });
    }

    [Test]
    public void ScheduleRejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Create(0, 1, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Create(1e-4, 11, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Create(1e-4, 1, 0));
        var s = LearningRateSchedule.Create(1e-4, 1, 10);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.At(10));
    }

    [Test]
    public void NinetyPercentOfStepsRunAtSequence128()
    {
        var phases = PhasePlan.Create(1000, 0.1, (128, 20, 256, 32), (512, 80, 256, 8));
        Assert.That(phases, Has.Count.EqualTo(2));
        Assert.Multiple(() =>
        {
            Assert.That(phases[0].SeqLength, Is.EqualTo(128));
            Assert.That(phases[0].MaxPredictions, Is.EqualTo(20));
            Assert.That(phases[0].Steps, Is.EqualTo(900));
            Assert.That(phases[0].Accumulation, Is.EqualTo(8));
            Assert.That(phases[1].SeqLength, Is.EqualTo(512));
            Assert.That(phases[1].MaxPredictions, Is.EqualTo(80));
            Assert.That(phases[1].FirstStep, Is.EqualTo(900));
            Assert.That(phases[1].Accumulation, Is.EqualTo(32));
            Assert.That(PhasePlan.At(phases, 899).Name, Is.EqualTo("seq128"));
            Assert.That(PhasePlan.At(phases, 900).Name, Is.EqualTo("seq512"), "the switch happens at 90%");
        });
    }

    [Test]
    public void MicroBatchMustDivideBatch()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => PhasePlan.Create(10, 0.1, (128, 20, 10, 3), (512, 80, 8, 8)));
        Assert.That(e!.Message, Does.Contain("micro-batch 3").And.Contain("10"));
    }
}
