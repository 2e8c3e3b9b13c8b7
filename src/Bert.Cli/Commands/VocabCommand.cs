using System.CommandLine;
using System.Diagnostics;
using Bert.Runtime.Data;
using Spectre.Console;

namespace Bert.Cli.Commands;

/// <summary>`bert vocab --corpus PATH… --size N --out vocab.txt`: learns a WordPiece vocabulary from streamed
/// corpus files (files, directories, globs, .gz) in bounded memory.</summary>
public static class VocabCommand
{
    public static Command Create()
    {
        var corpus = new Option<string[]>("--corpus")
        {
            Description = "corpus files, directories or globs (.gz read decompressed), or 'brown' for the Brown corpus training split",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var maxWords = new Option<int>("--max-words") { Description = "most distinct words counted at once (memory bound, ~100 bytes each); the rarest are forgotten when full", DefaultValueFactory = _ => 2 << 20 };
        var size = new Option<int>("--size") { Description = "vocabulary size, special tokens included", DefaultValueFactory = _ => 8000 };
        var output = new Option<string>("--out") { Description = "vocab.txt to write (atomically)", Required = true };
        var format = new Option<CorpusFormat>("--format") { Description = "documents: one sentence per line, blank line between documents; paragraphs: raw prose, split into sentences", DefaultValueFactory = _ => CorpusFormat.Documents };
        var cased = new Option<bool>("--cased") { Description = "keep case and accents (cased model)" };
        var minFrequency = new Option<int>("--min-frequency") { Description = "never merge a pair seen fewer times", DefaultValueFactory = _ => 2 };
        var dataRoot = new Option<string>("--data-root") { Description = "where setup.sh put the corpora", DefaultValueFactory = _ => "data" };
        var cmd = new Command("vocab", "learn a WordPiece vocabulary from a corpus")
        {
            corpus, size, output, format, cased, minFrequency, dataRoot, maxWords,
        };
        cmd.SetAction((r, ct) => Task.FromResult(DataCommands.Run(() =>
        {
            var options = new VocabularyTrainerOptions
            {
                VocabularySize = r.GetValue(size),
                LowerCase = !r.GetValue(cased),
                MinFrequency = r.GetValue(minFrequency),
                MaxWords = r.GetValue(maxWords),
            };
            if (options.MaxWords < 1000)
                throw new UserException($"--max-words {options.MaxWords}: must be at least 1000");
            if (options.VocabularySize < 5)
                throw new UserException($"--size {options.VocabularySize}: a vocabulary needs at least the 5 special tokens");
            if (options.MinFrequency < 1)
                throw new UserException($"--min-frequency {options.MinFrequency}: must be at least 1");
            var files = CorpusInputs.Expand(r.GetValue(corpus)!.Select(c => DataCommands.ResolveCorpus(c, r.GetValue(dataRoot)!, ct)));
            string corpusPath = files.Count == 1 ? files[0] : $"{files.Count} files ({files[0]} …)";
            OutputPaths.RefuseOverlap("--out", r.GetValue(output)!, [.. files.Select(f => ("--corpus", (string?)f))]);
            string outPath = r.GetValue(output)!;
            var clock = Stopwatch.StartNew();
            Vocabulary? vocab = null;
            DataCommands.WithProgress(["count", "merge"], report =>
            {
                var reader = new DocumentReader(files, r.GetValue(format));
                using var poll = new Timer(_ => report("count", reader.TotalBytes == 0 ? 1 : (double)reader.BytesRead / reader.TotalBytes), null, 500, 500);
                var counts = VocabularyTrainer.CountWords(reader, options, null, ct);
                poll.Dispose();
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
