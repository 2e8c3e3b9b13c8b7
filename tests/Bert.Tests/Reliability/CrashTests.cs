using System.Globalization;
using NUnit.Framework;

namespace Bert.Tests.Reliability;

/// <summary>
/// `bert pretrain` killed with SIGKILL at random moments, then resumed (see <see cref="CrashTestHarness"/>).
/// CI runs 5 kills; scripts/crash-test.sh N runs N (BERT_CRASH_KILLS; BERT_CRASH_SEED picks the
/// moments; BERT_CRASH_REPORT is a file the summary is appended to).
/// </summary>
[NonParallelizable]
public class CrashTests
{
    [Test]
    public void PretrainKilledAtRandomMomentsResumesFromTheNewestCompleteCheckpoint()
    {
        Assert.That(File.Exists(CrashTestHarness.BertDll), Is.True, $"{CrashTestHarness.BertDll}: the built CLI should sit next to the tests");
        int kills = Env("BERT_CRASH_KILLS") ?? 5;
        int seed = Env("BERT_CRASH_SEED") ?? 1;
        string work = Path.Combine(Path.GetTempPath(), "bert-crash-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(work);
        try
        {
            var harness = new CrashTestHarness(work, seed, TestContext.Progress);
            var result = harness.Run(kills);
            string summary = result.Summary();
            TestContext.Out.WriteLine(summary);
            if (Environment.GetEnvironmentVariable("BERT_CRASH_REPORT") is { Length: > 0 } report)
                File.AppendAllText(report, summary + Environment.NewLine);

            Assert.That(result.Problems, Is.Empty, summary);
            Assert.That(result.Kills, Is.EqualTo(kills));
            Assert.That((result.CheckpointsLost, result.TornCheckpoints, result.StaleTempsLeft), Is.EqualTo((0, 0, 0)), summary);
            Assert.That(result.RunsCompleted, Is.GreaterThanOrEqualTo(1));
            Assert.That(result.RunsMatchingReference, Is.EqualTo(result.RunsCompleted), summary);
        }
        finally
        {
            try
            {
                Directory.Delete(work, recursive: true);
            }
            catch (IOException)
            {
                // A killed child may still be releasing a file; the temp folder cleaner gets the rest.
            }
        }
    }

    private static int? Env(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } text ? int.Parse(text, CultureInfo.InvariantCulture) : null;
}
