using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Bert.Runtime.Data;

namespace Bert.Bench;

/// <summary>
/// The data pipeline on the Brown corpus (475 training documents, ~1.35M WordPiece tokens with an
/// 8000-token vocabulary learned from it): tokenization throughput, instance creation to S = 128
/// shards with dupe factor 5, and batch assembly. Needs data/ from scripts/setup.sh.
/// Run: dotnet run -c Release --project bench/Bert.Bench -- --filter '*DataBenchmarks*'
/// The "Throughput" column divides each benchmark's unit count (bytes, instances, batches) by its mean time.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(ThroughputConfig))]
public class DataBenchmarks
{
    private TextCorpus _text = null!;
    private Vocabulary _vocab = null!;
    private BertTokenizer _tokenizer = null!;
    private TokenizedCorpus _tokens = null!;
    private readonly List<int> _ids = new(1 << 16);
    private string _outRoot = null!;
    private PretrainingDataset _dataset = null!;
    private BatchAssembler _assembler = null!;
    private HostBatch _batch = null!;

    private const int BatchSize = 32, BatchesPerOp = 100;

    [GlobalSetup]
    public void Setup()
    {
        var brown = BrownCorpus.Prepare(FindDataRoot());
        _text = TextCorpus.Read(brown.TrainPath);
        _vocab = VocabularyTrainer.Train(_text, new VocabularyTrainerOptions { VocabularySize = 8000 });
        _tokenizer = new BertTokenizer(_vocab);
        _tokens = TokenizedCorpus.Tokenize(_text, _tokenizer);
        _outRoot = Path.Combine(Path.GetTempPath(), "bert-bench-data-" + Environment.ProcessId);
        PretrainingDataBuilder.Build(_tokens, "brown", _vocab, Options(), Path.Combine(_outRoot, "batches"));
        _dataset = PretrainingDataset.Open(Path.Combine(_outRoot, "batches"), _vocab);
        _assembler = new BatchAssembler(_dataset, seed: 1);
        _batch = new HostBatch(BatchSize, _dataset.SeqLength, _dataset.MaxPredictions);

        long utf8 = _text.Documents.SelectMany(d => d).Sum(s => (long)System.Text.Encoding.UTF8.GetByteCount(s) + 1);
        ThroughputColumn.Units[nameof(TokenizeOneThread)] = (utf8 / 1e6, "MB/s");
        ThroughputColumn.Units[nameof(TokenizeParallel)] = (utf8 / 1e6, "MB/s");
        ThroughputColumn.Units[nameof(CreateInstancesAndWriteShards)] = (Build(Path.Combine(_outRoot, "probe")).Instances, "instances/s");
        ThroughputColumn.Units[nameof(AssembleBatches)] = (BatchesPerOp * BatchSize, "sequences/s");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _dataset.Dispose();
        Directory.Delete(_outRoot, recursive: true);
    }

    private static PretrainingDataOptions Options() => new() { SeqLength = 128, DupeFactor = 5, Seed = 12345 };

    private PretrainingStats Build(string dir) => PretrainingDataBuilder.Build(_tokens, "brown", _vocab, Options(), dir);

    /// <summary>BasicTokenizer + WordPiece over every sentence on one thread.</summary>
    [Benchmark]
    public int TokenizeOneThread()
    {
        int n = 0;
        foreach (var doc in _text.Documents)
            foreach (var s in doc)
            {
                _ids.Clear();
                _tokenizer.Encode(s, _ids);
                n += _ids.Count;
            }
        return n;
    }

    /// <summary>The corpus tokenization step of `bert prepare` (all cores).</summary>
    [Benchmark]
    public long TokenizeParallel() => TokenizedCorpus.Tokenize(_text, _tokenizer).TotalTokens;

    /// <summary>Instances for S = 128, dupe factor 5, shuffled and written to shards (all cores).</summary>
    [Benchmark]
    public long CreateInstancesAndWriteShards() => Build(Path.Combine(_outRoot, "instances")).Instances;

    /// <summary>The loader alone, one thread: 100 micro-batches of 32 × 128 from the memory-mapped shards into host arrays
    /// (reported in sequences/s).</summary>
    [Benchmark]
    public float AssembleBatches()
    {
        float sum = 0;
        for (int i = 0; i < BatchesPerOp; i++) sum += _assembler.Next(_batch);
        return sum;
    }

    private static string FindDataRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Bert.sln"))) return Path.Combine(dir.FullName, "data");
        return "data";
    }
}

/// <summary>Adds a throughput column: units per operation (registered by the benchmark) / mean time.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig() => AddColumn(new ThroughputColumn());
}

public sealed class ThroughputColumn : IColumn
{
    /// <summary>Per benchmark method: units processed by one operation and the unit's name.</summary>
    public static readonly Dictionary<string, (double Units, string Name)> Units = new();

    public string Id => nameof(ThroughputColumn);
    public string ColumnName => "Throughput";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => false;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "units per second (MB of UTF-8 text, instances or batches)";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        var stats = report?.ResultStatistics;
        // The benchmark runs in a child process, so the units are recomputed here from the method name.
        if (stats == null || !Known.TryGetValue(benchmarkCase.Descriptor.WorkloadMethod.Name, out var u)) return "-";
        return $"{u.Units / (stats.Mean / 1e9):N1} {u.Name}";
    }

    // Filled in the host process on first use: the same setup as the benchmark (cheap next to a run).
    private static Dictionary<string, (double Units, string Name)> Known
    {
        get
        {
            if (Units.Count == 0)
            {
                var b = new DataBenchmarks();
                b.Setup();
                b.Cleanup();
            }
            return Units;
        }
    }
}
