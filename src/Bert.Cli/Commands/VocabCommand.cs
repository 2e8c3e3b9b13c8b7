using System.CommandLine;
using System.Diagnostics;
using Bert.Runtime.Data;
using Spectre.Console;

namespace Bert.Cli.Commands;

/// <summary>`bert vocab --corpus PATH --size N --out vocab.txt`: learns a WordPiece vocabulary.</summary>
public static class VocabCommand
{
    public static Command Create()
    {
        var corpus = new Option<string>("--corpus") { Description = "corpus file, or 'brown' for the Brown corpus training split", Required = true };
        var size = new Option<int>("--size") { Description = "vocabulary size, special tokens included", DefaultValueFactory = _ => 8000 };
        var output = new Option<string>("--out") { Description = "vocab.txt to write (atomically)", Required = true };
        var format = new Option<CorpusFormat>("--format") { Description = "documents: one sentence per line, blank line between documents; paragraphs: raw prose, split into sentences", DefaultValueFactory = _ => CorpusFormat.Documents };
        var cased = new Option<bool>("--cased") { Description = "keep case and accents (cased model)" };
        var minFrequency = new Option<int>("--min-frequency") { Description = "never merge a pair seen fewer times", DefaultValueFactory = _ => 2 };
        var dataRoot = new Option<string>("--data-root") { Description = "where setup.sh put the corpora", DefaultValueFactory = _ => "data" };
        var cmd = new Command("vocab", "learn a WordPiece vocabulary from a corpus")
        {
            corpus, size, output, format, cased, minFrequency, dataRoot,
        };
        cmd.SetAction((r, ct) => Task.FromResult(DataCommands.Run(() =>
        {
            var options = new VocabularyTrainerOptions
            {
                VocabularySize = r.GetValue(size),
                LowerCase = !r.GetValue(cased),
                MinFrequency = r.GetValue(minFrequency),
            };
            if (options.VocabularySize < 5)
                throw new UserException($"--size {options.VocabularySize}: a vocabulary needs at least the 5 special tokens");
            if (options.MinFrequency < 1)
                throw new UserException($"--min-frequency {options.MinFrequency}: must be at least 1");
            string corpusPath = DataCommands.ResolveCorpus(r.GetValue(corpus)!, r.GetValue(dataRoot)!, ct);
            OutputPaths.RefuseOverlap("--out", r.GetValue(output)!, ("--corpus", corpusPath));
            string outPath = r.GetValue(output)!;
            var clock = Stopwatch.StartNew();
            Vocabulary? vocab = null;
            DataCommands.WithProgress(["read", "count", "merge"], report =>
            {
                var text = TextCorpus.Read(corpusPath, r.GetValue(format), new SyncProgress<double>(f => report("read", f)), ct);
                report("count", 0);
                var counts = VocabularyTrainer.CountWords(text, options, ct);
                report("count", 1);
                try
                {
                    vocab = VocabularyTrainer.Train(counts, options, corpusPath, new SyncProgress<double>(f => report("merge", f)), ct);
                }
                catch (ArgumentOutOfRangeException e)
                {
                    throw new UserException($"--size {options.VocabularySize}: {DataCommands.Reason(e)}");
                }
                report("merge", 1);
            });
            vocab!.Save(outPath);
            Console.WriteLine($"wrote {outPath}: {vocab.Count} tokens (hash {vocab.Hash:x16}) from {corpusPath} in {clock.Elapsed.TotalSeconds:0.0} s");
            if (vocab.Count < options.VocabularySize)
                Console.WriteLine($"note: stopped at {vocab.Count} < {options.VocabularySize}: no pair occurs {options.MinFrequency} times or more");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
