using System.CommandLine;
using System.Text;
using Bert.Cli;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Tests.Data;

namespace Bert.Tests.Reliability.Fuzz;

/// <summary>The CLI exited with the "internal error" code (an exception nobody mapped): a crash.</summary>
internal sealed class CliInternalErrorException(int exitCode, string[] args, string stderr)
    : Exception($"exit code {exitCode} for bert {string.Join(' ', args.Select(Quote))}: {stderr.Split('\n').FirstOrDefault(l => l.Length > 0)}\n{stderr}")
{
    /// <summary>The exception type and the frame that threw it inside bert, so distinct bugs stay distinct.</summary>
    public string Signature { get; } =
        (stderr.Split('\n').FirstOrDefault(l => l.Contains("Exception", StringComparison.Ordinal))?.Split(':').Skip(1).FirstOrDefault()?.Trim() ?? "")
        + " " + (stderr.Split('\n').FirstOrDefault(l => l.TrimStart().StartsWith("at Bert.", StringComparison.Ordinal))?.Trim() ?? $"exit {exitCode}");

    private static string Quote(string a) => a.Length == 0 || a.Any(c => c is ' ' or '"' or '\'') ? "'" + a + "'" : a;
}

/// <summary>
/// <c>bert</c> argument parsing and validation: <see cref="Program.Run"/> with mutated argv (tokens
/// dropped, repeated, swapped, replaced by edge-case values, option names of other commands, character
/// edits, seeds spliced). Every command runs in a sandbox directory holding small valid and broken
/// inputs; paths in the seeds are relative so mutations stay inside it, and the sandbox is restored
/// when a command changed it. A run must end with a documented exit code; <see cref="ExitCodes.Internal"/>
/// (an unmapped exception) or an exception escaping Program.Run is a crash. The pretrain seeds point at
/// a corrupt dataset so no mutation starts a long training run.
/// </summary>
internal sealed class CliTarget : FuzzTarget
{
    private readonly string _sandbox = NewScratchDirectory("cli");
    private readonly Dictionary<string, byte[]> _files = new(StringComparer.Ordinal);
    private readonly string[] _optionNames;
    private readonly string[] _commands;
    private Dictionary<string, (long, DateTime)> _snapshot = new();
    private readonly SortedDictionary<int, long> _exitCodes = new();

    private static readonly string[] Values =
    [
        "", " ", "-", "--", "-1", "0", "1", "2", "3", "7", "8", "9", "16", "17", "32", "100", "65535", "65536", "2147483647",
        "2147483648", "-2147483648", "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616",
        "1e308", "1e309", "-1e309", "NaN", "Infinity", "-Infinity", "-0", "0.5", "1.5", "1e-30", "0x10", "1,5", "abc", "true", "false",
        "tiny", "base", "large", "TINY", "cpu", "cuda", "auto", "f32", "bf16", "f16", "documents", "paragraphs", "Documents", "brown",
        "brown-heldout", "corpus.txt", "para.txt", "vocab.txt", "bad-vocab.txt", "bad-utf8.txt", "empty.txt", "ckpt",
        "ckpt/step-000003", "hf", "hf/config.json", "baddata", "empty", "missing", "missing.txt", "out", "out/x", "@corpus.txt",
        "@missing.rsp", "@empty", "é中😀", "a b", "-h", "--help", "-?", "--version",
    ];

    public CliTarget()
    {
        _optionNames = CollectOptions(Program.BuildRoot()).Distinct().Order(StringComparer.Ordinal).ToArray();
        // Commands whose defaults do minutes of real work (timing full training steps) are left out:
        // a mutation that reaches them would be a long run, not a parse, and would outlive its timeout.
        _commands = Program.BuildRoot().Subcommands.Select(c => c.Name).Where(c => !LongRunning.Contains(c)).ToArray();
        BuildSandboxFiles();
        Restore();
        Seeds =
        [
            Encode(["info", "--preset", "tiny"]),
            Encode(["info", "--preset", "base", "--vocab-size", "100", "--full"]),
            Encode(["vocab", "--corpus", "corpus.txt", "--size", "60", "--out", "out/v.txt"]),
            Encode(["vocab", "--corpus", "para.txt", "--format", "paragraphs", "--size", "40", "--out", "out/v.txt", "--cased", "--min-frequency", "1"]),
            Encode(["prepare", "--corpus", "corpus.txt", "--vocab", "vocab.txt", "--seq", "16", "--out", "out/p", "--dupe", "1", "--shard-size", "50"]),
            Encode(["prepare", "--corpus", "para.txt", "--vocab", "vocab.txt", "--seq", "32", "--out", "out/p", "--format", "paragraphs",
                "--whole-word", "--max-predictions", "3", "--short-seq-prob", "0.5", "--masked-lm-prob", "0.2", "--seed", "9"]),
            Encode(["export", "--checkpoint", "ckpt", "--out", "out/e", "--dtype", "bf16"]),
            Encode(["import", "--hf", "hf", "--out", "out/i", "--seed", "3", "--strict"]),
            Encode(["pretrain", "--data", "baddata", "--vocab", "vocab.txt", "--seq", "16", "--seq-long", "32", "--steps", "2",
                "--batch", "2", "--micro-batch", "1", "--batch-long", "2", "--threads", "1", "--device", "cpu", "--out", "out/r",
                "--checkpoint-every", "1", "--keep", "2", "--lr", "0.001", "--warmup", "1", "--long-fraction", "0.5"]),
            Encode(["pretrain", "--data", "baddata", "--vocab", "vocab.txt", "--heldout", "baddata", "--resume", "--out", "ckpt", "--seed", "1",
                "--eval-sequences", "4", "--preset", "mini", "--device", "auto", "--data-root", "missing", "--vocab-size", "100"]),
            Encode(["--help"]),
            Encode(["pretrain", "--help"]),
            Encode(["--version"]),
        ];
    }

    private static readonly HashSet<string> LongRunning = new(StringComparer.Ordinal) { "bench", "finetune" };

    public override string Name => "cli";
    public override IReadOnlyList<byte[]> Seeds { get; }
    public override MutationHints Hints { get; } = new();

    // Work fans out to thread-pool threads (prepare, vocab), so per-thread allocation says little here.
    public override bool CheckAllocation => false;

    public override byte[] Mutate(FuzzRng rng, byte[] seed, Mutator mutator)
    {
        var args = Decode(seed).ToList();
        int edits = rng.Skewed(5);
        for (int e = 0; e < edits; e++)
        {
            int n = args.Count;
            switch (rng.Below(10))
            {
                case 0 when n > 0:
                    args.RemoveAt(rng.Below(n));
                    break;
                case 1 when n > 0:
                    args.Insert(rng.Below(n + 1), args[rng.Below(n)]);
                    break;
                case 2 when n > 1:
                {
                    int i = rng.Below(n), j = rng.Below(n);
                    (args[i], args[j]) = (args[j], args[i]);
                    break;
                }
                case 3:
                    args.Insert(rng.Below(n + 1), rng.Pick(_optionNames));
                    break;
                case 4 when n > 0:
                    args[rng.Below(n)] = rng.Pick(Values);
                    break;
                case 5:
                    args.Insert(rng.Below(n + 1), rng.Pick(Values));
                    break;
                case 6 when n > 0:
                {
                    int i = rng.Below(n);
                    args[i] = EditChars(rng, args[i]);
                    break;
                }
                case 7 when n > 1:
                {
                    // "--opt value" → "--opt=value" (or with a colon), which System.CommandLine also accepts.
                    int i = rng.Below(n - 1);
                    if (args[i].StartsWith('-'))
                    {
                        args[i] = args[i] + (rng.OneIn(2) ? "=" : ":") + args[i + 1];
                        args.RemoveAt(i + 1);
                    }
                    break;
                }
                case 8:
                {
                    var other = Decode(rng.Pick(Seeds));
                    if (other.Length == 0) break;
                    int from = rng.Below(other.Length);
                    int len = Math.Min(rng.Skewed(4), other.Length - from);
                    args.InsertRange(rng.Below(n + 1), other.Skip(from).Take(len));
                    break;
                }
                default:
                    if (n > 0 && rng.OneIn(2)) args[0] = rng.Pick(_commands);
                    else args.Insert(rng.Below(n + 1), rng.Pick(new[] { "--", "-", "-x", "--no-such-option", "help" }));
                    break;
            }
        }
        return Encode(args);
    }

    /// <summary>Character edits that cannot form a path separator or "..", so paths stay in the sandbox.</summary>
    private static string EditChars(FuzzRng rng, string token)
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_=:+ ,eE#@é中";
        var sb = new StringBuilder(token);
        int edits = rng.Skewed(3);
        for (int i = 0; i < edits; i++)
        {
            int at = rng.Below(sb.Length + 1);
            switch (rng.Below(4))
            {
                case 0 when sb.Length > 0 && at < sb.Length:
                    sb.Remove(at, 1);
                    break;
                case 1 when sb.Length > 0 && at < sb.Length:
                    sb.Insert(at, sb[at]);
                    break;
                case 2 when sb.Length > 0 && at < sb.Length && char.IsLetter(sb[at]):
                    sb[at] = char.IsUpper(sb[at]) ? char.ToLowerInvariant(sb[at]) : char.ToUpperInvariant(sb[at]);
                    break;
                default:
                    sb.Insert(at, alphabet[rng.Below(alphabet.Length)]);
                    break;
            }
        }
        return sb.ToString().Replace("..", ".", StringComparison.Ordinal);
    }

    public override void Run(byte[] input)
    {
        var args = Decode(input);
        string cwd = Environment.CurrentDirectory;
        var stdout = Console.Out;
        var stderr = Console.Error;
        var errors = new StringWriter();
        int code;
        try
        {
            Environment.CurrentDirectory = _sandbox;
            Console.SetOut(TextWriter.Null);
            Console.SetError(errors);
            code = Program.Run(args);
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
            Environment.CurrentDirectory = cwd;
            if (Changed()) Restore();
        }
        lock (_exitCodes) _exitCodes[code] = _exitCodes.GetValueOrDefault(code) + 1;
        if (code is not (ExitCodes.Ok or ExitCodes.Usage or ExitCodes.BadInput or ExitCodes.Io or ExitCodes.NonFinite or ExitCodes.Device))
            throw new CliInternalErrorException(code, args, errors.ToString());
        if (code != ExitCodes.Ok && errors.ToString().Trim().Length == 0)
            throw new CliInternalErrorException(code, args, "(nothing on stderr: a failing command must say why)");
    }

    public override bool IsExpected(Exception e) => false;

    public override string Details
    {
        get
        {
            lock (_exitCodes) return "exit codes: " + string.Join(", ", _exitCodes.Select(kv => $"{kv.Key} ×{kv.Value:N0}"));
        }
    }

    public static byte[] Encode(IEnumerable<string> args) => Encoding.UTF8.GetBytes(string.Join('\0', args));

    public static string[] Decode(byte[] input) => input.Length == 0 ? [] : Encoding.UTF8.GetString(input).Split('\0');

    private static IEnumerable<string> CollectOptions(Command command)
    {
        foreach (var o in command.Options)
        {
            yield return o.Name;
            foreach (var a in o.Aliases) yield return a;
        }
        foreach (var c in command.Subcommands)
            foreach (var name in CollectOptions(c))
                yield return name;
    }

    private void BuildSandboxFiles()
    {
        string build = NewScratchDirectory("cli-build");
        try
        {
            void Add(string relative, byte[] bytes) => _files[relative] = bytes;
            var docs = SyntheticCorpus.Documents(4, 4, seed: 5);
            Add("corpus.txt", Encoding.UTF8.GetBytes(string.Join("\n\n", docs.Select(d => string.Join("\n", d))) + "\n"));
            Add("para.txt", Encoding.UTF8.GetBytes("Ka lo mi. Ne ru sa!\nTi vo pe? Da ge bi.\n\nFu ho ja. Ze qua stre. Pli mon tar.\n"));
            var vocab = new StringBuilder();
            foreach (var t in SyntheticCorpus.Vocabulary.Tokens) vocab.Append(t).Append('\n');
            Add("vocab.txt", Encoding.UTF8.GetBytes(vocab.ToString()));
            Add("bad-vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n"u8.ToArray());
            Add("bad-utf8.txt", [0x61, 0x0A, 0xFE, 0x0A]);
            Add("empty.txt", []);

            string ckpt = Path.Combine(build, "ckpt");
            FuzzSamples.WriteCheckpoint(ckpt, step: 3);
            string hf = Path.Combine(build, "hf");
            HfInterop.Export(PhysicalFileSystem.Instance, hf, FuzzSamples.TinyConfig, FuzzSamples.TinyTable,
                FuzzSamples.Values(ParameterLayout.Total(FuzzSamples.TinyTable), 7), SafetensorsDType.F32);

            // A dataset that fails its records checksum: pretrain stops before it builds a model.
            string data = Path.Combine(build, "baddata");
            foreach (int seq in new[] { 16, 32 })
            {
                string dir = PretrainingDataBuilder.DatasetDirectory(data, seq);
                PretrainingDataBuilder.Build(SyntheticCorpus.Tokenized(4, 4, seed: 1), "synthetic", SyntheticCorpus.Vocabulary,
                    new PretrainingDataOptions { SeqLength = seq, DupeFactor = 1, MaxDegreeOfParallelism = 1 }, dir);
                string shard = Path.Combine(dir, PretrainingDataBuilder.ShardFileName(0));
                var bytes = File.ReadAllBytes(shard);
                bytes[^3] ^= 0x5A;
                File.WriteAllBytes(shard, bytes);
            }
            foreach (var file in Directory.EnumerateFiles(build, "*", SearchOption.AllDirectories))
                Add(Path.GetRelativePath(build, file), File.ReadAllBytes(file));
        }
        finally
        {
            Directory.Delete(build, recursive: true);
        }
    }

    private void Restore()
    {
        if (Directory.Exists(_sandbox)) Directory.Delete(_sandbox, recursive: true);
        Directory.CreateDirectory(Path.Combine(_sandbox, "empty"));
        foreach (var (relative, bytes) in _files)
        {
            string path = Path.Combine(_sandbox, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(path, bytes);
        }
        _snapshot = Snapshot();
    }

    private bool Changed()
    {
        var now = Snapshot();
        return now.Count != _snapshot.Count || now.Any(kv => !_snapshot.TryGetValue(kv.Key, out var v) || v != kv.Value);
    }

    private Dictionary<string, (long, DateTime)> Snapshot()
    {
        var result = new Dictionary<string, (long, DateTime)>(StringComparer.Ordinal);
        foreach (var entry in new DirectoryInfo(_sandbox).EnumerateFileSystemInfos("*", SearchOption.AllDirectories))
            result[entry.FullName] = (entry is FileInfo f ? f.Length : -1, entry.LastWriteTimeUtc);
        return result;
    }

    public override void Dispose() => Directory.Delete(_sandbox, recursive: true);
}
