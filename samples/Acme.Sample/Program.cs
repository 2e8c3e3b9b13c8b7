using System.Globalization;
using Bert.Dsl;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;
using Bert.Runtime.Training;

// A user's own BERT, declared with the attributes; the generator in the Bert.Runtime package writes the rest.
[BertModel]
[Embeddings(VocabSize = 64, MaxPositions = 32, TypeVocabSize = 2, Hidden = 64)]
[EncoderLayer(Heads = 4, Intermediate = 128)]
[Repeat(2)]
[Pooler]
[MlmHead]
[NspHead]
public partial class AcmeBert;

public static class Program
{
    public static int Main(string[] args)
    {
        int steps = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 60;

        // A tiny corpus: documents of sentences, a vocabulary of its words.
        string[] animals = ["cat", "dog", "bird", "fox"], places = ["mat", "rug", "tree", "den"];
        var documents = new List<string[]>();
        for (int d = 0; d < 40; d++)
            documents.Add(Enumerable.Range(0, 6).Select(i =>
                $"the {animals[(d + i) % 4]} sat on the {places[(d + i) % 4]} .").ToArray());
        var vocabulary = Vocabulary.FromTokens(Vocabulary.SpecialTokens.Concat(["the", "sat", "on", "."]).Concat(animals).Concat(places), "acme");
        var tokenizer = new BertTokenizer(vocabulary);

        // Pretraining data (MLM + NSP instances) as `bert prepare` makes it.
        string data = Path.Combine(Path.GetTempPath(), "acme-sample-" + Environment.ProcessId);
        var corpus = TokenizedCorpus.Tokenize(new TextCorpus(documents, "acme"), tokenizer);
        PretrainingDataBuilder.Build(corpus, "acme", vocabulary, new PretrainingDataOptions { SeqLength = 32, DupeFactor = 3 }, data);
        try
        {
            using var dataset = PretrainingDataset.Open(data, vocabulary);
            using var backend = new CpuBackend();
            using var model = new AcmeBert(backend, maxBatch: 16, maxSeq: 32, maxPredictions: dataset.MaxPredictions,
                AcmeBert.DefaultConfig with { VocabSize = vocabulary.Count });
            model.InitializeParameters(seed: 1);
            Console.WriteLine($"AcmeBert: {model.ParameterTotal:N0} parameters (declared sizes: {AcmeBert.TotalParameters:N0})");

            var phases = PhasePlan.Create(steps, 0, (32, dataset.MaxPredictions, 16, 16), (32, dataset.MaxPredictions, 16, 16));
            using var trainer = new Trainer(model, phases, new Dictionary<string, PretrainingDataset> { [phases[0].Name] = dataset },
                LearningRateSchedule.Create(2e-3, steps / 10, steps), new AdamWOptions(), seed: 1);
            StepReport first = default, last = default;
            while (!trainer.Finished)
            {
                last = trainer.RunStep();
                if (last.Step == 0) first = last;
            }
            Console.WriteLine(FormattableString.Invariant($"trained {steps} steps: loss {first.Loss:F3} -> {last.Loss:F3}"));

            foreach (var p in MaskFiller.Fill(model, tokenizer, "the cat sat on the [MASK] .", topK: 3).Single())
                Console.WriteLine(FormattableString.Invariant($"fill-mask: {p.Token,-6} {p.Score:F3}  {p.Sequence}"));
            return last.Loss < first.Loss ? 0 : 1;
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }
}
