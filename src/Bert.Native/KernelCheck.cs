using Bert.Runtime;

namespace Bert.Native;

/// <summary>Problem sizes of <see cref="KernelCheck"/>.</summary>
public enum KernelCheckSize
{
    /// <summary>Odd sizes that catch swapped axes: B 3, S 7, H 32, NH 4, I 37, V 99, P 5.</summary>
    Small,
    /// <summary>BERT-base: B 8, S 128, H 768, NH 12, I 3072, V 30522, P 20.</summary>
    Base,
}

/// <summary>Settings of <see cref="KernelCheck.Run"/>.</summary>
public sealed record KernelCheckOptions
{
    /// <summary>Seed of the random inputs. Default 1234.</summary>
    public int Seed { get; init; } = 1234;

    public KernelCheckSize Size { get; init; } = KernelCheckSize.Small;

    /// <summary>Extra runs of each op on the candidate for its GPU time (needs a profiling CudaBackend). Default 3.</summary>
    public int TimingRepeats { get; init; } = 3;

    /// <summary>Only cases whose "Op/case" name contains this (case-insensitive); null: all.</summary>
    public string? Filter { get; init; }

    /// <summary>Overrides <see cref="KernelCheck.DefaultTolerance"/>.</summary>
    public double? Tolerance { get; init; }
}

/// <summary>One op case compared between two backends. Errors are over every output of the case;
/// the relative error is normwise per output tensor, max |a − b| / max(1, max |b|) with b the reference.</summary>
public sealed record OpCheckResult(string Op, string Case, string Shape, double MaxAbsError, double MaxRelError,
    string WorstOutput, double Tolerance, double? GpuMilliseconds, string? Error)
{
    public bool Passed => Error is null && MaxRelError <= Tolerance;
}

/// <summary>
/// Runs every op of <see cref="IBackend"/> on two backends with the same random inputs and compares all
/// outputs: the CPU backend as reference against a CUDA backend (or, in tests, against an emulated one).
/// Cases cover every activation, dropout on and off (masks must agree bit for bit, so a wrong mask shows
/// as an O(1) error), padding masks, repeated gather positions and embedding ids, aliasing that the
/// interface allows, and += targets that start non-zero. Used by <c>bert check-kernels</c> and the GPU tests.
/// </summary>
public static class KernelCheck
{
    /// <summary>1e-5 for F32 compute; 5e-2 for BF16 (activations rounded to 8 mantissa bits at each op
    /// boundary, fp32 accumulation).</summary>
    public static double DefaultTolerance(DType computeType) => computeType == DType.BF16 ? 5e-2 : 1e-5;

    private sealed record Case(string Op, string Name, string Shape, Func<Rig, Dictionary<string, float[]>> Run);

    /// <summary>The first <paramref name="cols"/> columns of rows <paramref name="stride"/> apart.</summary>
    private static float[] Columns(float[] all, int rows, int cols, int stride)
    {
        var a = new float[(long)rows * cols];
        for (int i = 0; i < rows; i++) Array.Copy(all, (long)i * stride, a, (long)i * cols, cols);
        return a;
    }

    private readonly record struct Dims(int B, int S, int H, int NH, int I, int V, int P, int MaxPos, int Types)
    {
        public int HD => H / NH;
        public int N => B * S;
    }

    public static IReadOnlyList<OpCheckResult> Run(IBackend reference, IBackend candidate, KernelCheckOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        options ??= new KernelCheckOptions();
        double tolerance = options.Tolerance ?? DefaultTolerance(candidate.ComputeType);
        bool round = candidate.ComputeType == DType.BF16;
        var results = new List<OpCheckResult>();
        foreach (var c in Cases(options, round))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (options.Filter is { } f && !$"{c.Op}/{c.Name}".Contains(f, StringComparison.OrdinalIgnoreCase)) continue;
            try
            {
                Dictionary<string, float[]> expected, actual;
                using (var rig = new Rig(reference)) expected = c.Run(rig);
                using (var rig = new Rig(candidate)) actual = c.Run(rig);
                var (abs, rel, worst) = Compare(expected, actual);
                double? ms = Time(candidate, c, options.TimingRepeats);
                results.Add(new OpCheckResult(c.Op, c.Name, c.Shape, abs, rel, worst, tolerance, ms, null));
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                results.Add(new OpCheckResult(c.Op, c.Name, c.Shape, double.NaN, double.NaN, "", tolerance, null,
                    $"{e.GetType().Name}: {e.Message}"));
            }
        }
        return results;
    }

    /// <summary>"Op/case" names of every case for these options, in run order.</summary>
    public static IReadOnlyList<string> CaseNames(KernelCheckOptions? options = null, DType computeType = DType.F32) =>
        Cases(options ?? new KernelCheckOptions(), computeType == DType.BF16).Select(c => $"{c.Op}/{c.Name}").ToArray();

    private static double? Time(IBackend candidate, Case c, int repeats)
    {
        if (candidate is not CudaBackend { Options.Profile: true } cuda || repeats <= 0) return null;
        cuda.CollectOpTimings();
        for (int i = 0; i < repeats; i++)
        {
            using var rig = new Rig(candidate);
            c.Run(rig);
        }
        return cuda.CollectOpTimings().TryGetValue(c.Op, out var t) ? t.MeanMilliseconds : null;
    }

    /// <summary>Max |a − b| and the normwise relative error max |a − b| / max(1, max |b|), taken per output
    /// tensor (the infinity-norm error ‖a − b‖∞ / ‖b‖∞): two fp32 implementations that sum in different
    /// orders differ by about ε·√n relative to the tensor's scale, not to each element's own magnitude, which
    /// cancellation can make arbitrarily small. NaN where only one side is NaN counts as infinitely wrong.</summary>
    public static (double Abs, double Rel, string Worst) Compare(IReadOnlyDictionary<string, float[]> expected,
        IReadOnlyDictionary<string, float[]> actual)
    {
        double maxAbs = 0, maxRel = 0;
        string worst = "";
        foreach (var (name, e) in expected)
        {
            if (!actual.TryGetValue(name, out var a) || a.Length != e.Length)
                throw new InvalidOperationException($"output '{name}' is missing or has a different length");
            double scale = 1.0;
            foreach (var v in e)
                if (float.IsFinite(v)) scale = Math.Max(scale, Math.Abs((double)v));
            for (int i = 0; i < e.Length; i++)
            {
                double abs, rel;
                if (float.IsNaN(e[i]) || float.IsNaN(a[i]))
                {
                    abs = rel = float.IsNaN(e[i]) && float.IsNaN(a[i]) ? 0 : double.PositiveInfinity;
                }
                else
                {
                    abs = Math.Abs((double)a[i] - e[i]);
                    rel = abs / scale;
                }
                if (abs > maxAbs) maxAbs = abs;
                if (rel > maxRel || worst.Length == 0)
                {
                    maxRel = Math.Max(maxRel, rel);
                    worst = $"{name}[{i}]";
                }
            }
        }
        return (maxAbs, maxRel, worst);
    }

    /// <summary>Allocations of one case on one backend; disposed after the case.</summary>
    private sealed class Rig(IBackend backend) : IDisposable
    {
        private readonly List<DeviceBuffer> _buffers = [];

        public IBackend B => backend;

        private TensorRef Alloc(long n, DType type, string label)
        {
            var b = backend.Allocate(Math.Max(1, n), type, label);
            _buffers.Add(b);
            return b.View.Slice(0, n);
        }

        /// <summary>An activation in the backend's compute type.</summary>
        public TensorRef Act(float[] host)
        {
            var t = Alloc(host.Length, backend.ComputeType, "activations");
            backend.Upload<float>(t, host);
            return t;
        }

        public TensorRef ActZeros(long n) => Alloc(n, backend.ComputeType, "activations");

        /// <summary>A parameter (F32, in the shadowed "parameters" buffer of a BF16 CUDA backend).</summary>
        public TensorRef Param(float[] host)
        {
            var t = Alloc(host.Length, DType.F32, "parameters");
            backend.Upload<float>(t, host);
            return t;
        }

        public TensorRef F32(float[] host)
        {
            var t = Alloc(host.Length, DType.F32, "activations-f32");
            backend.Upload<float>(t, host);
            return t;
        }

        public TensorRef F32Zeros(long n) => Alloc(n, DType.F32, "activations-f32");

        public TensorRef I32(int[] host)
        {
            var t = Alloc(host.Length, DType.I32, "indices");
            backend.Upload<int>(t, host);
            return t;
        }

        public float[] Read(TensorRef t)
        {
            var a = new float[t.Length];
            backend.Download<float>(a, t);
            return a;
        }

        public void Dispose()
        {
            foreach (var b in _buffers) b.Dispose();
        }
    }

    private static IEnumerable<Case> Cases(KernelCheckOptions options, bool roundActivations)
    {
        var d = options.Size == KernelCheckSize.Base
            ? new Dims(8, 128, 768, 12, 3072, 30522, 20, 512, 2)
            : new Dims(3, 7, 32, 4, 37, 99, 5, 16, 2);
        var rng = new Random(options.Seed);
        float[] Rand(long n, float scale = 1f)
        {
            var a = new float[n];
            for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
            return a;
        }
        // Inputs a BF16 backend stores as bf16 are rounded up front, so both sides see the same values.
        float[] RandAct(long n, float scale = 1f)
        {
            var a = Rand(n, scale);
            if (roundActivations) for (long i = 0; i < n; i++) a[i] = BFloat16.Round(a[i]);
            return a;
        }
        float[] Around(long n, float center, float spread)
        {
            var a = Rand(n, spread);
            for (long i = 0; i < n; i++) a[i] += center;
            return a;
        }
        var dropout = new DropoutSpec(0.1f, 0x5EED_0000_0001UL, 3, 7);
        string Shape(params (string, long)[] dims) => string.Join(" ", dims.Select(x => $"{x.Item1}={x.Item2}"));

        // ---- Linear ----
        foreach (var act in Enum.GetValues<Activation>())
        {
            int n = d.N, k = d.H, o = d.I;
            var x = RandAct((long)n * k); var w = Rand((long)o * k, 0.3f); var bias = Rand(o);
            var a = act;
            yield return new Case(nameof(IBackend.Linear), act.ToString().ToLowerInvariant(), Shape(("N", n), ("K", k), ("O", o)), r =>
            {
                var output = r.ActZeros((long)n * o);
                var pre = a == Activation.None ? TensorRef.Null : r.ActZeros((long)n * o);
                r.B.Linear(output, pre, r.Act(x), r.Param(w), r.Param(bias), n, k, o, a);
                var result = new Dictionary<string, float[]> { ["output"] = r.Read(output) };
                if (!pre.IsNull) result["pre"] = r.Read(pre);
                return result;
            });
        }
        {
            int n = d.N, k = d.H, o = d.H;
            var x = RandAct((long)n * k); var w = Rand((long)o * k, 0.3f);
            yield return new Case(nameof(IBackend.Linear), "no-bias", Shape(("N", n), ("K", k), ("O", o)), r =>
            {
                var output = r.ActZeros((long)n * o);
                r.B.Linear(output, TensorRef.Null, r.Act(x), r.Param(w), TensorRef.Null, n, k, o, Activation.None);
                return new() { ["output"] = r.Read(output) };
            });
        }
        {
            int n = d.B * d.P, k = d.H, o = d.V;
            var x = RandAct((long)n * k); var w = Rand((long)o * k, 0.3f); var bias = Rand(o);
            yield return new Case(nameof(IBackend.Linear), "f32-logits", Shape(("N", n), ("K", k), ("O", o)), r =>
            {
                var output = r.F32Zeros((long)n * o);
                r.B.Linear(output, TensorRef.Null, r.Act(x), r.Param(w), r.Param(bias), n, k, o, Activation.None);
                return new() { ["output"] = r.Read(output) };
            });
        }

        // ---- LinearBackward ----
        foreach (bool accumulate in new[] { false, true })
        {
            int n = d.N, k = d.I, o = d.H;
            var dy = RandAct((long)n * o); var x = RandAct((long)n * k); var w = Rand((long)o * k, 0.3f);
            var dx0 = RandAct((long)n * k); var dw0 = Rand((long)o * k); var db0 = Rand(o);
            bool acc = accumulate;
            yield return new Case(nameof(IBackend.LinearBackward), accumulate ? "accumulate" : "overwrite", Shape(("N", n), ("K", k), ("O", o)), r =>
            {
                var dx = r.Act(dx0); var dw = r.F32(dw0); var db = r.F32(db0);
                r.B.LinearBackward(dx, dw, db, r.Act(dy), r.Act(x), r.Param(w), n, k, o, acc);
                return new() { ["dInput"] = r.Read(dx), ["dWeight"] = r.Read(dw), ["dBias"] = r.Read(db) };
            });
        }
        {
            int n = d.B * d.P, k = d.H, o = d.V;
            var dy = Rand((long)n * o, 0.05f); var x = RandAct((long)n * k); var w = Rand((long)o * k, 0.3f);
            var dw0 = Rand((long)o * k); var db0 = Rand(o);
            yield return new Case(nameof(IBackend.LinearBackward), "f32-logits", Shape(("N", n), ("K", k), ("O", o)), r =>
            {
                var dx = r.ActZeros((long)n * k); var dw = r.F32(dw0); var db = r.F32(db0);
                r.B.LinearBackward(dx, dw, db, r.F32(dy), r.Act(x), r.Param(w), n, k, o, false);
                return new() { ["dInput"] = r.Read(dx), ["dWeight"] = r.Read(dw), ["dBias"] = r.Read(db) };
            });
        }

        // ---- ActivationBackward ----
        foreach (var act in Enum.GetValues<Activation>().Where(a => a != Activation.None))
        {
            long count = (long)d.N * d.I;
            var dOut = RandAct(count); var pre = RandAct(count, 3f);
            var a = act;
            yield return new Case(nameof(IBackend.ActivationBackward), act.ToString().ToLowerInvariant(), Shape(("count", count)), r =>
            {
                var dPre = r.ActZeros(count);
                r.B.ActivationBackward(dPre, r.Act(dOut), r.Act(pre), count, a);
                return new() { ["dPre"] = r.Read(dPre) };
            });
        }
        {
            long count = (long)d.N * d.I;
            var dOut = RandAct(count); var pre = RandAct(count, 3f);
            yield return new Case(nameof(IBackend.ActivationBackward), "gelu-in-place", Shape(("count", count)), r =>
            {
                var g = r.Act(dOut);
                r.B.ActivationBackward(g, g, r.Act(pre), count, Activation.Gelu);
                return new() { ["dPre"] = r.Read(g) };
            });
        }

        // ---- embeddings ----
        int[] ids = new int[d.N], types = new int[d.N];
        for (int t = 0; t < d.N; t++)
        {
            ids[t] = t % 3 == 0 ? 1 : rng.Next(d.V);   // id 1 repeats, as [CLS] or frequent words do
            types[t] = t % d.S >= d.S / 2 ? 1 : 0;
        }
        var wordEmb = Rand((long)d.V * d.H, 0.5f); var posEmb = Rand((long)d.MaxPos * d.H, 0.5f);
        var typeEmb = Rand((long)d.Types * d.H, 0.5f);
        var embGamma = Around(d.H, 1f, 0.2f); var embBeta = Rand(d.H, 0.2f);
        foreach (var drop in new[] { DropoutSpec.None, dropout })
        {
            var spec = drop;
            string name = drop.Active ? "dropout" : "no-dropout";
            string shape = Shape(("B", d.B), ("S", d.S), ("H", d.H), ("V", d.V));
            yield return new Case(nameof(IBackend.EmbeddingsForward), name, shape, r =>
            {
                var (output, sum, mean, rstd) = EmbeddingsForward(r, d, ids, types, wordEmb, posEmb, typeEmb, embGamma, embBeta, spec);
                return new() { ["output"] = r.Read(output), ["sum"] = r.Read(sum), ["mean"] = r.Read(mean), ["rstd"] = r.Read(rstd) };
            });
            var dOut = RandAct((long)d.N * d.H);
            var g0 = new[] { Rand((long)d.V * d.H), Rand((long)d.MaxPos * d.H), Rand((long)d.Types * d.H), Rand(d.H), Rand(d.H) };
            yield return new Case(nameof(IBackend.EmbeddingsBackward), name, shape, r =>
            {
                var (_, sum, mean, rstd) = EmbeddingsForward(r, d, ids, types, wordEmb, posEmb, typeEmb, embGamma, embBeta, spec);
                var grads = g0.Select(r.F32).ToArray();
                var scratch = r.F32Zeros((long)d.N * d.H);
                r.B.EmbeddingsBackward(grads[0], grads[1], grads[2], grads[3], grads[4], scratch, r.Act(dOut), sum, mean, rstd,
                    r.I32(ids), r.I32(types), r.Param(embGamma), d.B, d.S, d.H, spec);
                return new()
                {
                    ["dWordEmb"] = r.Read(grads[0]), ["dPosEmb"] = r.Read(grads[1]), ["dTypeEmb"] = r.Read(grads[2]),
                    ["dGamma"] = r.Read(grads[3]), ["dBeta"] = r.Read(grads[4]),
                };
            });
        }

        // ---- LayerNorm ----
        {
            int n = d.N, h = d.H;
            var x = RandAct((long)n * h, 2f); var gamma = Around(h, 1f, 0.2f); var beta = Rand(h, 0.2f);
            var dy = RandAct((long)n * h); var dg0 = Rand(h); var db0 = Rand(h);
            string shape = Shape(("N", n), ("H", h));
            yield return new Case(nameof(IBackend.LayerNorm), "plain", shape, r =>
            {
                var y = r.ActZeros((long)n * h); var mean = r.F32Zeros(n); var rstd = r.F32Zeros(n);
                r.B.LayerNorm(y, mean, rstd, r.Act(x), r.Param(gamma), r.Param(beta), n, h, 1e-12f);
                return new() { ["output"] = r.Read(y), ["mean"] = r.Read(mean), ["rstd"] = r.Read(rstd) };
            });
            yield return new Case(nameof(IBackend.LayerNormBackward), "plain", shape, r =>
            {
                var xs = r.Act(x); var g = r.Param(gamma);
                var y = r.ActZeros((long)n * h); var mean = r.F32Zeros(n); var rstd = r.F32Zeros(n);
                r.B.LayerNorm(y, mean, rstd, xs, g, r.Param(beta), n, h, 1e-12f);
                var dx = r.ActZeros((long)n * h); var dg = r.F32(dg0); var db = r.F32(db0);
                r.B.LayerNormBackward(dx, dg, db, r.Act(dy), xs, mean, rstd, g, n, h);
                return new() { ["dInput"] = r.Read(dx), ["dGamma"] = r.Read(dg), ["dBeta"] = r.Read(db) };
            });
        }

        // ---- ResidualLayerNorm ----
        foreach (var drop in new[] { DropoutSpec.None, dropout })
        {
            int n = d.N, h = d.H;
            var res = RandAct((long)n * h); var branch = RandAct((long)n * h);
            var gamma = Around(h, 1f, 0.2f); var beta = Rand(h, 0.2f);
            var dy = RandAct((long)n * h); var dg0 = Rand(h); var db0 = Rand(h);
            var spec = drop;
            string name = drop.Active ? "dropout" : "no-dropout";
            string shape = Shape(("N", n), ("H", h));
            yield return new Case(nameof(IBackend.ResidualLayerNorm), name, shape, r =>
            {
                var y = r.ActZeros((long)n * h); var sum = r.ActZeros((long)n * h); var mean = r.F32Zeros(n); var rstd = r.F32Zeros(n);
                r.B.ResidualLayerNorm(y, sum, mean, rstd, r.Act(res), r.Act(branch), r.Param(gamma), r.Param(beta), n, h, 1e-12f, spec);
                return new() { ["output"] = r.Read(y), ["sum"] = r.Read(sum), ["mean"] = r.Read(mean), ["rstd"] = r.Read(rstd) };
            });
            foreach (bool alias in new[] { false, true })
            {
                bool aliased = alias;
                yield return new Case(nameof(IBackend.ResidualLayerNormBackward), name + (alias ? "-in-place" : ""), shape, r =>
                {
                    var g = r.Param(gamma);
                    var y = r.ActZeros((long)n * h); var sum = r.ActZeros((long)n * h); var mean = r.F32Zeros(n); var rstd = r.F32Zeros(n);
                    r.B.ResidualLayerNorm(y, sum, mean, rstd, r.Act(res), r.Act(branch), g, r.Param(beta), n, h, 1e-12f, spec);
                    var dOut = r.Act(dy);
                    var dRes = aliased ? dOut : r.ActZeros((long)n * h);
                    var dBranch = r.ActZeros((long)n * h); var dg = r.F32(dg0); var db = r.F32(db0);
                    r.B.ResidualLayerNormBackward(dRes, dBranch, dg, db, dOut, sum, mean, rstd, g, n, h, spec);
                    return new() { ["dResidual"] = r.Read(dRes), ["dBranch"] = r.Read(dBranch), ["dGamma"] = r.Read(dg), ["dBeta"] = r.Read(db) };
                });
            }
        }

        // ---- attention ----
        var mask = new int[d.N];
        for (int b = 0; b < d.B; b++)
            for (int s = 0; s < d.S; s++)
                mask[b * d.S + s] = s < d.S - b ? 1 : 0;   // sequence b has b padding tokens
        foreach (var drop in new[] { DropoutSpec.None, dropout })
        {
            var qkv = RandAct((long)d.N * 3 * d.H, 1.5f);
            var dCtx = RandAct((long)d.N * d.H);
            var spec = drop;
            string name = drop.Active ? "dropout" : "no-dropout";
            string shape = Shape(("B", d.B), ("S", d.S), ("NH", d.NH), ("HD", d.HD));
            yield return new Case(nameof(IBackend.AttentionForward), name, shape, r =>
            {
                var (ctx, probs, _) = AttentionForward(r, d, qkv, mask, spec);
                return new() { ["context"] = r.Read(ctx), ["probs"] = r.Read(probs) };
            });
            yield return new Case(nameof(IBackend.AttentionBackward), name, shape, r =>
            {
                var (ctx, probs, ws) = AttentionForward(r, d, qkv, mask, spec);
                var dQkv = r.ActZeros((long)d.N * 3 * d.H);
                r.B.AttentionBackward(dQkv, ws, r.Act(dCtx), r.Act(qkv), ctx, probs, r.I32(mask), d.B, d.S, d.NH, d.HD, spec);
                return new() { ["dQkv"] = r.Read(dQkv) };
            });
        }

        // ---- Dropout ----
        foreach (var (name, spec, inPlace) in new[] { ("dropout", dropout, false), ("in-place", dropout, true), ("inactive", DropoutSpec.None, false) })
        {
            long count = (long)d.N * d.H + 3;
            var x = RandAct(count);
            var s = spec;
            bool place = inPlace;
            yield return new Case(nameof(IBackend.Dropout), name, Shape(("count", count)), r =>
            {
                var input = r.Act(x);
                var output = place ? input : r.ActZeros(count);
                r.B.Dropout(output, input, count, s);
                return new() { ["output"] = r.Read(output) };
            });
        }

        // ---- gathers ----
        var positions = new int[d.B * d.P];
        for (int b = 0; b < d.B; b++)
        {
            var chosen = Enumerable.Range(1, d.S - 1).OrderBy(_ => rng.Next()).Take(Math.Max(1, d.P - 2)).ToArray();
            for (int p = 0; p < d.P; p++) positions[b * d.P + p] = p < chosen.Length ? chosen[p] : 0;   // padding → 0, repeated
        }
        {
            var x = RandAct((long)d.N * d.H); var dOut = RandAct((long)d.B * d.P * d.H); var dIn0 = RandAct((long)d.N * d.H);
            string shape = Shape(("B", d.B), ("S", d.S), ("P", d.P), ("H", d.H));
            yield return new Case(nameof(IBackend.GatherRows), "repeated-padding", shape, r =>
            {
                var output = r.ActZeros((long)d.B * d.P * d.H);
                r.B.GatherRows(output, r.Act(x), r.I32(positions), d.B, d.S, d.P, d.H);
                return new() { ["output"] = r.Read(output) };
            });
            yield return new Case(nameof(IBackend.ScatterAddRows), "repeated-padding", shape, r =>
            {
                var dIn = r.Act(dIn0);
                r.B.ScatterAddRows(dIn, r.Act(dOut), r.I32(positions), d.B, d.S, d.P, d.H);
                return new() { ["dInput"] = r.Read(dIn) };
            });
        }

        // ---- SoftmaxCrossEntropy ----
        {
            int rows = d.B * d.P, classes = d.V;
            var logits = Rand((long)rows * classes, 4f);
            var labels = new int[rows]; var weights = new float[rows];
            for (int i = 0; i < rows; i++)
            {
                labels[i] = rng.Next(classes);
                weights[i] = i % d.P < d.P - 2 ? 1f : 0f;
            }
            float scale = 1f / (weights.Sum() + 1e-5f);
            string shape = Shape(("N", rows), ("C", classes));
            foreach (var (name, weighted, inPlace) in new[] { ("weighted", true, false), ("in-place", true, true), ("unweighted", false, false) })
            {
                bool w = weighted, place = inPlace;
                float gs = weighted ? scale : 1f / rows;
                yield return new Case(nameof(IBackend.SoftmaxCrossEntropy), name, shape, r =>
                {
                    var lg = r.F32(logits);
                    var dLogits = place ? lg : r.F32Zeros((long)rows * classes);
                    var stats = r.F32(new float[] { 9, 9, 9 });
                    r.B.SoftmaxCrossEntropy(dLogits, stats, lg, r.I32(labels), w ? r.F32(weights) : TensorRef.Null, rows, classes, gs);
                    return new() { ["dLogits"] = r.Read(dLogits), ["stats"] = r.Read(stats) };
                });
            }
            // The MLM head's path: logits in the compute type (bf16 on a bf16 GPU) become their gradient in place.
            var actLogits = RandAct((long)rows * classes, 4f);
            yield return new Case(nameof(IBackend.SoftmaxCrossEntropy), "activations-in-place", shape, r =>
            {
                var lg = r.Act(actLogits);
                var stats = r.F32(new float[] { 9, 9, 9 });
                r.B.SoftmaxCrossEntropy(lg, stats, lg, r.I32(labels), r.F32(weights), rows, classes, scale);
                return new() { ["dLogits"] = r.Read(lg), ["stats"] = r.Read(stats) };
            });
        }

        // ---- the MLM head on padded rows (IBackend.LogitsStride; issue 12) ----
        {
            // Rows a padded stride apart, the padding holding large garbage that no op may read as a value.
            int rows = d.B * d.P, k = d.H, classes = d.V, stride = (classes / 64 + 1) * 64;
            string shape = Shape(("N", rows), ("K", k), ("C", classes), ("stride", stride));
            float[] Padded(float[] dense)
            {
                var a = new float[(long)rows * stride];
                Array.Fill(a, 4096f);   // exact in bf16 too
                for (int i = 0; i < rows; i++) Array.Copy(dense, (long)i * classes, a, (long)i * stride, classes);
                return a;
            }
            var x = RandAct((long)rows * k); var w = Rand((long)classes * k, 0.3f); var bias = Rand(classes);
            yield return new Case(nameof(IBackend.Linear), "padded-rows", shape, r =>
            {
                var output = r.ActZeros((long)rows * stride);
                r.B.Linear(output, TensorRef.Null, r.Act(x), r.Param(w), r.Param(bias), rows, k, classes, Activation.None, stride);
                // The padding is not specified (the CUDA backend writes zeros): only the real columns count.
                return new() { ["output"] = Columns(r.Read(output), rows, classes, stride) };
            });
            var logits = Padded(RandAct((long)rows * classes, 4f));
            var labels = new int[rows];
            for (int i = 0; i < rows; i++) labels[i] = rng.Next(classes);
            yield return new Case(nameof(IBackend.SoftmaxCrossEntropy), "padded-rows-in-place", shape, r =>
            {
                var lg = r.Act(logits);
                var stats = r.F32(new float[] { 9, 9, 9 });
                r.B.SoftmaxCrossEntropy(lg, stats, lg, r.I32(labels), TensorRef.Null, rows, classes, 1f / rows, stride);
                return new() { ["dLogits"] = r.Read(lg), ["stats"] = r.Read(stats) };   // the padding must come out 0
            });
            var dy = Padded(RandAct((long)rows * classes, 0.05f));
            var dw0 = Rand((long)classes * k); var db0 = Rand(classes);
            yield return new Case(nameof(IBackend.LinearBackward), "padded-rows", shape, r =>
            {
                var dx = r.ActZeros((long)rows * k); var dw = r.F32(dw0); var db = r.F32(db0);
                r.B.LinearBackward(dx, dw, db, r.Act(dy), r.Act(x), r.Param(w), rows, k, classes, false, stride);
                return new() { ["dInput"] = r.Read(dx), ["dWeight"] = r.Read(dw), ["dBias"] = r.Read(db) };
            });
        }

        // ---- optimizer ----
        foreach (long count in new long[] { 1007, 100_003 })
        {
            var x = Rand(count);
            yield return new Case(nameof(IBackend.SquaredNorm), count < 2000 ? "small" : "many-blocks", Shape(("count", count)), r =>
            {
                var result = r.F32(new float[] { 7 });
                r.B.SquaredNorm(result, r.F32(x), count);
                return new() { ["result"] = r.Read(result) };
            });
        }
        foreach (var (name, norm) in new[] { ("clipped", 9f), ("unclipped", 0.25f), ("no-norm", float.NaN) })
        {
            const long count = 1007;
            var p0 = Rand(count); var g = Rand(count); var m0 = Rand(count, 0.1f); var v0 = Rand(count, 0.01f);
            for (int i = 0; i < count; i++) v0[i] = Math.Abs(v0[i]);
            var step = new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 3, 1f);
            float normSquared = norm;
            yield return new Case(nameof(IBackend.AdamW), name, Shape(("count", count)), r =>
            {
                var p = r.Param(p0); var m = r.F32(m0); var v = r.F32(v0);
                var ns = float.IsNaN(normSquared) ? TensorRef.Null : r.F32(new[] { normSquared });
                r.B.AdamW(p, r.F32(g), m, v, ns, count, step);
                return new() { ["param"] = r.Read(p), ["m"] = r.Read(m), ["v"] = r.Read(v) };
            });
        }
        // The device-scalar step: clipped, unclipped, clipping off (max norm 0) and a non-finite norm (nothing updated).
        foreach (var (name, norm, maxNorm) in new[] { ("clipped", 9f, 1f), ("unclipped", 0.25f, 1f), ("no-clip", 9f, 0f), ("non-finite", float.PositiveInfinity, 1f) })
        {
            const long count = 1007;
            var p0 = Rand(count); var g = Rand(count); var m0 = Rand(count, 0.1f); var v0 = Rand(count, 0.01f);
            for (int i = 0; i < count; i++) v0[i] = Math.Abs(v0[i]);
            var constants = new AdamWConstants(0.9f, 0.999f, 1e-6f, 0.01f, maxNorm);
            var scalars = new float[StepScalars.Length];
            StepScalars.For(1e-3f, constants.Beta1, constants.Beta2, 3, 7).WriteTo(scalars);
            float normSquared = norm;
            yield return new Case(nameof(IBackend.AdamWDevice), name, Shape(("count", count)), r =>
            {
                var p = r.Param(p0); var m = r.F32(m0); var v = r.F32(v0);
                r.B.AdamWDevice(p, r.F32(g), m, v, r.F32(new[] { normSquared }), r.F32(scalars), count, constants);
                return new() { ["param"] = r.Read(p), ["m"] = r.Read(m), ["v"] = r.Read(v) };
            });
        }
    }

    private static (TensorRef Output, TensorRef Sum, TensorRef Mean, TensorRef Rstd) EmbeddingsForward(Rig r, Dims d,
        int[] ids, int[] types, float[] word, float[] pos, float[] type, float[] gamma, float[] beta, DropoutSpec spec)
    {
        long nh = (long)d.N * d.H;
        var output = r.ActZeros(nh); var sum = r.ActZeros(nh); var mean = r.F32Zeros(d.N); var rstd = r.F32Zeros(d.N);
        r.B.EmbeddingsForward(output, sum, mean, rstd, r.I32(ids), r.I32(types), r.Param(word), r.Param(pos), r.Param(type),
            r.Param(gamma), r.Param(beta), d.B, d.S, d.H, 1e-12f, spec);
        return (output, sum, mean, rstd);
    }

    private static (TensorRef Context, TensorRef Probs, TensorRef Workspace) AttentionForward(Rig r, Dims d, float[] qkv, int[] mask, DropoutSpec spec)
    {
        var ctx = r.ActZeros((long)d.N * d.H);
        var probs = r.ActZeros((long)d.B * d.NH * d.S * d.S);
        var ws = r.ActZeros(r.B.PlanAttention(d.B, d.S, d.NH, d.HD).WorkspaceLength);
        r.B.AttentionForward(ctx, probs, ws, r.Act(qkv), r.I32(mask), d.B, d.S, d.NH, d.HD, spec);
        return (ctx, probs, ws);
    }

    /// <summary>The results as a fixed-width table (op, case, shape, errors, GPU time, verdict).</summary>
    public static string Format(IReadOnlyList<OpCheckResult> results)
    {
        var rows = new List<string[]> { new[] { "op", "case", "shape", "max abs err", "max rel err", "GPU ms", "result" } };
        foreach (var r in results)
        {
            rows.Add(
            [
                r.Op, r.Case, r.Shape,
                r.Error is null ? r.MaxAbsError.ToString("0.00e+00", System.Globalization.CultureInfo.InvariantCulture) : "-",
                r.Error is null ? r.MaxRelError.ToString("0.00e+00", System.Globalization.CultureInfo.InvariantCulture) : "-",
                r.GpuMilliseconds is { } ms ? ms.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture) : "-",
                r.Passed ? "ok" : r.Error is not null ? "ERROR: " + r.Error : $"FAIL (> {r.Tolerance:0.0e+00} at {r.WorstOutput})",
            ]);
        }
        var widths = Enumerable.Range(0, rows[0].Length - 1).Select(c => rows.Max(row => row[c].Length)).ToArray();
        var sb = new System.Text.StringBuilder();
        foreach (var row in rows)
        {
            for (int c = 0; c < row.Length; c++)
            {
                if (c < widths.Length) sb.Append(row[c].PadRight(widths[c] + 2));
                else sb.Append(row[c]);
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
