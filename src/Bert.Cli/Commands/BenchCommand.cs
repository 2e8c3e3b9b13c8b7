using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using Spectre.Console;

namespace Bert.Cli.Commands;

/// <summary>
/// `bert bench`: times full pretraining steps (forward, MLM + NSP loss, backward, clip, AdamW) of a
/// preset on synthetic batches, reports sequences/s, tokens/s, achieved TFLOP/s (and MFU on a GPU),
/// an optional per-op breakdown, and with --torch runs the PyTorch reference of the same step alongside
/// and prints the ratio.
/// </summary>
public static class BenchCommand
{
    /// <summary>bf16 dense peak of an H100 SXM (spec sheet), the MFU denominator.</summary>
    public const double H100PeakFlops = 989.4e12;

    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "model preset", DefaultValueFactory = _ => "mini" };
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
        var batch = new Option<int>("--batch") { Description = "sequences per step", DefaultValueFactory = _ => 32 };
        var seq = new Option<int>("--seq") { Description = "sequence length S", DefaultValueFactory = _ => 128 };
        var predictions = new Option<int?>("--predictions") { Description = "masked positions per sequence (default 20 at 128, 80 at 512)" };
        var vocab = new Option<int>("--vocab-size") { Description = "vocabulary size", DefaultValueFactory = _ => 30522 };
        var steps = new Option<int>("--steps") { Description = "timed steps", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps first", DefaultValueFactory = _ => 2 };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)", DefaultValueFactory = _ => 0 };
        var breakdown = new Option<bool>("--breakdown") { Description = "also time every op (one extra, synchronized step)" };
        var torch = new Option<bool>("--torch") { Description = "run the PyTorch CPU reference (bench/reference/torch_cpu_step.py) alongside" };
        var precision = Backends.PrecisionOption();
        var fusedAttention = Backends.FusedAttentionOption();
        var json = new Option<string?>("--json") { Description = "also write the results as JSON to this file" };
        var cudaGraphs = Backends.CudaGraphsOption();
        var cmd = new Command("bench", "time pretraining steps of a preset; compare with PyTorch")
        {
            preset, device, batch, seq, predictions, vocab, steps, warmup, threads, breakdown, torch, json, precision, fusedAttention,
            cudaGraphs,
        };
        cmd.SetAction((r, ct) => Task.FromResult(Run(r.GetValue(preset)!, r.GetValue(device)!, r.GetValue(batch), r.GetValue(seq),
            r.GetValue(predictions) ?? PretrainingDataOptions.DefaultMaxPredictions(r.GetValue(seq)), r.GetValue(vocab),
            r.GetValue(steps), r.GetValue(warmup), r.GetValue(threads), r.GetValue(breakdown), r.GetValue(torch), r.GetValue(json), r.GetValue(precision)!,
            r.GetValue(fusedAttention)!, r.GetValue(cudaGraphs)!)));
        return cmd;
    }

    public sealed record Result(string Preset, string Device, int Batch, int Seq, int Predictions, int Vocab, int Threads,
        double MedianStepSeconds, double SequencesPerSecond, double TokensPerSecond, double TeraFlops, double? Mfu,
        IReadOnlyList<(string Op, double Seconds, long Calls)> Breakdown, double? TorchStepSeconds)
    {
        /// <summary>bf16 or fp32: the backend's compute type.</summary>
        public string Precision { get; init; } = "f32";

        /// <summary>"fused" or "unfused": how the backend ran attention (--fused-attention as it applied).</summary>
        public string Attention { get; init; } = "unfused";

        /// <summary>The CUDA backend's GEMM options (issue 12: cuBLASLt epilogues, padded logits and the logits' row
        /// stride they gave); null on the CPU.</summary>
        public GemmOptions? Gemm { get; init; }

        /// <summary>Device memory in use after the timed steps (total − free as the driver reports it, so the
        /// CUDA context is included); every buffer is allocated before the first step, so this is the peak.</summary>
        public long? DeviceMemoryBytes { get; init; }

        /// <summary>"off", "on" (the timed steps replayed a CUDA graph) or "fallback" (--cuda-graphs auto could not capture).</summary>
        public string CudaGraph { get; init; } = "off";
    }

    /// <summary>What <see cref="Result.Gemm"/> reports: UseCublasLt, LogitsPadding (0 off) and the MLM logits' row stride.</summary>
    public sealed record GemmOptions(bool CublasLt, int LogitsPadding, int LogitsStride);

    public static int Run(string presetName, string deviceName, int batch, int seq, int predictions, int vocab, int steps, int warmup,
        int threads, bool breakdown, bool torch, string? jsonPath, string precision = "auto", string fusedAttention = "off",
        string cudaGraphs = "off")
    {
        var graphMode = Backends.ParseCudaGraphs(cudaGraphs, deviceName);
        if (!ModelPresets.TryGet(presetName, out var preset))
            throw new UserException($"--preset {presetName}: unknown preset; choose one of {string.Join(", ", ModelPresets.Names)}");
        if (batch < 1) throw new UserException($"--batch {batch}: must be positive");
        if (seq < 8 || seq > preset.Config.MaxPositions) throw new UserException($"--seq {seq}: must be in [8, {preset.Config.MaxPositions}]");
        if (predictions < 1 || predictions > seq - 2) throw new UserException($"--predictions {predictions}: must be in [1, {seq - 2}]");
        if (vocab < 8) throw new UserException($"--vocab-size {vocab}: must be at least 8");
        if (steps < 1) throw new UserException($"--steps {steps}: must be positive");

        using var backend = Backends.Create(deviceName, threads, precision, fusedAttention, preset.Config.HeadDim);
        using var model = preset.Create(backend, batch, seq, predictions, vocab);
        model.InitializeParameters(1);
        model.Seed = 1;
        using var optimizer = new AdamWOptimizer(model, new AdamWOptions());
        using var device = new DeviceBatch(backend, batch, seq, predictions);
        var host = SyntheticBatch(batch, seq, predictions, vocab, seed: 7);
        var bertBatch = device.Upload(host, 0, batch, batch * predictions, 1);
        var metrics = new float[MetricSlot.Length];
        using var stepper = BenchGraphs.Create(model, optimizer, graphMode);

        void Step(Bert.Native.GraphedTrainingStep s, int i) => BenchGraphs.Run(s, i, bertBatch);

        for (int i = 0; i < warmup; i++) Step(stepper, i);
        backend.Synchronize();
        var times = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            Step(stepper, warmup + i);
            backend.Synchronize();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        model.ReadMetrics(metrics);
        if (!float.IsFinite(metrics[MetricSlot.MlmLoss]))
            throw new UserException($"the benchmark's loss became {metrics[MetricSlot.MlmLoss]}: the backend is broken", ExitCodes.NonFinite);
        Array.Sort(times);
        double median = times[steps / 2];

        long? deviceMemory = null;
        if (backend is Bert.Native.CudaBackend cudaBackend)
        {
            var (free, total) = cudaBackend.MemoryInfo();
            deviceMemory = total - free;
        }
        IReadOnlyList<(string, double, long)> ops = [];
        if (breakdown)
        {
            using var profiler = new ProfilingBackend(backend);
            using var profiled = preset.Create(profiler, batch, seq, predictions, vocab);
            backend.Copy(profiled.Parameters, model.Parameters);
            profiled.Seed = 1;
            using var opt2 = new AdamWOptimizer(profiled, new AdamWOptions());
            using var eager = BenchGraphs.Create(profiled, opt2, CudaGraphMode.Off);
            Step(eager, 0);
            profiler.Reset();
            Step(eager, 1);
            ops = profiler.Breakdown;
        }

        double flopsPerSeq = FlopsPerSequence(preset.Config.Layers, preset.Config.Hidden, seq, predictions, vocab);
        double achieved = flopsPerSeq * batch / median;
        bool gpu = !backend.Name.StartsWith("cpu", StringComparison.Ordinal);
        double? torchStep = torch ? RunTorch(presetName, batch, seq, predictions, vocab, threads, steps) : null;
        var result = new Result(presetName, backend.Name, batch, seq, predictions, vocab, threads, median, batch / median,
            batch * seq / median, achieved / 1e12, gpu ? achieved / H100PeakFlops : null, ops, torchStep)
        {
            Precision = backend.ComputeType == DType.BF16 ? "bf16" : "f32",
            Attention = Backends.AttentionKind(backend, batch, seq, preset.Config),
            DeviceMemoryBytes = deviceMemory,
            Gemm = backend is Bert.Native.CudaBackend cudaGemm
                ? new GemmOptions(cudaGemm.Options.UseCublasLt, cudaGemm.Options.LogitsPadding, backend.LogitsStride(vocab))
                : null,
            CudaGraph = stepper.State,
        };
        Print(result);
        if (jsonPath is not null) WriteJson(result, jsonPath);
        return ExitCodes.Ok;
    }

    /// <summary>Training FLOPs of one sequence: S·[6·L·12·d² + 12·L·d·S] + 6·P·(d² + d·V) (the encoder's
    /// GEMMs and attention, then the MLM transform and tied decoder over the P gathered positions).</summary>
    public static double FlopsPerSequence(int layers, int hidden, int seq, int predictions, int vocab) =>
        seq * (6.0 * layers * 12 * hidden * (double)hidden + 12.0 * layers * hidden * (double)seq)
        + 6.0 * predictions * (hidden * (double)hidden + hidden * (double)vocab);

    /// <summary>A deterministic synthetic batch: random tokens, two segments, distinct masked positions.</summary>
    public static HostBatch SyntheticBatch(int batch, int seq, int predictions, int vocab, ulong seed)
    {
        var host = new HostBatch(batch, seq, predictions);
        var rng = new Random((int)seed);
        for (int b = 0; b < batch; b++)
        {
            for (int s = 0; s < seq; s++)
            {
                host.InputIds[b * seq + s] = s == 0 ? 2 : s == seq - 1 || s == seq / 2 ? 3 : rng.Next(5, vocab);
                host.TokenTypeIds[b * seq + s] = s > seq / 2 ? 1 : 0;
                host.AttentionMask[b * seq + s] = 1;
            }
            var positions = Enumerable.Range(1, seq - 2).OrderBy(_ => rng.Next()).Take(predictions).Order().ToArray();
            for (int p = 0; p < predictions; p++)
            {
                host.MlmPositions[b * predictions + p] = positions[p];
                host.MlmLabels[b * predictions + p] = rng.Next(5, vocab);
                host.MlmWeights[b * predictions + p] = 1f;
            }
            host.NspLabels[b] = rng.Next(2);
        }
        return host;
    }

    private static double? RunTorch(string preset, int batch, int seq, int predictions, int vocab, int threads, int steps)
    {
        string? script = FindRepoFile(Path.Combine("bench", "reference", "torch_cpu_step.py"));
        if (script is null || !File.Exists("/usr/bin/python3"))
        {
            Console.Error.WriteLine("bert bench: --torch needs /usr/bin/python3 with torch and bench/reference/torch_cpu_step.py (run from the repository)");
            return null;
        }
        int t = threads > 0 ? threads : Environment.ProcessorCount;
        var psi = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { script, "--preset", preset, "--batch", $"{batch}", "--seq", $"{seq}", "--predictions", $"{predictions}",
                     "--vocab", $"{vocab}", "--threads", $"{t}", "--steps", $"{steps}" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        var line = stdout.Split('\n').LastOrDefault(l => l.TrimStart().StartsWith('{'));
        if (p.ExitCode != 0 || line is null)
        {
            Console.Error.WriteLine($"bert bench: the PyTorch reference failed (exit {p.ExitCode}): {stderr.Trim().Split('\n').LastOrDefault()}");
            return null;
        }
        Console.WriteLine($"pytorch reference: {line.Trim()}");
        using var doc = JsonDocument.Parse(line);
        return doc.RootElement.GetProperty("median_step_s").GetDouble();
    }

    /// <summary>A path relative to the repository root, found by walking up from the working directory
    /// and from the program's directory.</summary>
    public static string? FindRepoFile(string relative)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                string candidate = Path.Combine(d.FullName, relative);
                if (File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }

    private static void Print(Result r)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumns("metric", "value");
        table.AddRow("model", Markup.Escape($"{r.Preset}, B={r.Batch}, S={r.Seq}, P={r.Predictions}, V={r.Vocab}"));
        table.AddRow("device", Markup.Escape(r.Device));
        table.AddRow("precision", r.Precision);
        table.AddRow("attention", r.Attention);
        if (r.Gemm is { } g)
            table.AddRow("gemm options", Markup.Escape($"cublaslt {(g.CublasLt ? "on" : "off")}, logits padding " +
                (g.LogitsPadding > 0 ? string.Create(inv, $"{g.LogitsPadding} (row stride {g.LogitsStride})") : "off")));
        table.AddRow("cuda graph", r.CudaGraph);
        table.AddRow("median step", string.Create(inv, $"{r.MedianStepSeconds * 1e3:F2} ms"));
        table.AddRow("sequences/s", string.Create(inv, $"{r.SequencesPerSecond:F1}"));
        table.AddRow("tokens/s", string.Create(inv, $"{r.TokensPerSecond:F0}"));
        table.AddRow("achieved", string.Create(inv, $"{r.TeraFlops * 1e3:F1} GFLOP/s"));
        if (r.Mfu is { } mfu) table.AddRow("MFU (vs 989.4 TFLOP/s)", string.Create(inv, $"{mfu:P1}"));
        if (r.DeviceMemoryBytes is { } mem) table.AddRow("GPU memory in use (peak)", string.Create(inv, $"{mem / (double)(1L << 30):F2} GiB"));
        if (r.TorchStepSeconds is { } ts)
        {
            table.AddRow("PyTorch step (same machine)", string.Create(inv, $"{ts * 1e3:F2} ms"));
            table.AddRow("speed-up vs PyTorch", string.Create(inv, $"{ts / r.MedianStepSeconds:F2}x"));
        }
        AnsiConsole.Write(table);
        if (r.Breakdown.Count > 0)
        {
            double total = r.Breakdown.Sum(b => b.Seconds);
            var t = new Table().AddColumns("op", "calls", "ms", "share");
            foreach (var (op, s, calls) in r.Breakdown)
                t.AddRow(Markup.Escape(op), calls.ToString(inv), string.Create(inv, $"{s * 1e3:F2}"), string.Create(inv, $"{s / total:P1}"));
            AnsiConsole.Write(t);
        }
    }

    private static void WriteJson(Result r, string path)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("preset", r.Preset);
            w.WriteString("device", r.Device);
            w.WriteString("precision", r.Precision);
            w.WriteString("attention", r.Attention);
            if (r.Gemm is { } g)
            {
                w.WriteStartObject("gemm_options");
                w.WriteBoolean("cublaslt", g.CublasLt);
                w.WriteNumber("logits_padding", g.LogitsPadding);
                w.WriteNumber("logits_stride", g.LogitsStride);
                w.WriteEndObject();
            }
            else w.WriteNull("gemm_options");
            w.WriteString("cuda_graph", r.CudaGraph);
            if (r.DeviceMemoryBytes is { } mem) w.WriteNumber("device_memory_bytes", mem);
            w.WriteNumber("batch", r.Batch);
            w.WriteNumber("seq", r.Seq);
            w.WriteNumber("predictions", r.Predictions);
            w.WriteNumber("vocab", r.Vocab);
            w.WriteNumber("threads", r.Threads);
            w.WriteNumber("median_step_s", r.MedianStepSeconds);
            w.WriteNumber("sequences_per_s", r.SequencesPerSecond);
            w.WriteNumber("tokens_per_s", r.TokensPerSecond);
            w.WriteNumber("tflops", r.TeraFlops);
            if (r.Mfu is { } mfu) w.WriteNumber("mfu", mfu);
            if (r.TorchStepSeconds is { } ts)
            {
                w.WriteNumber("torch_median_step_s", ts);
                w.WriteNumber("speedup_vs_torch", ts / r.MedianStepSeconds);
            }
            w.WriteStartArray("breakdown");
            foreach (var (op, s, calls) in r.Breakdown)
            {
                w.WriteStartObject();
                w.WriteString("op", op);
                w.WriteNumber("calls", calls);
                w.WriteNumber("seconds", s);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        string tmp = path + ".tmp-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        File.WriteAllBytes(tmp, ms.ToArray());
        File.Move(tmp, path, overwrite: true);
    }
}
