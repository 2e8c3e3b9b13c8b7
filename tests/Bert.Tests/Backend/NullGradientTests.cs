using Bert.Runtime;
using Bert.Runtime.Cpu;
using NUnit.Framework;

namespace Bert.Tests.Backend;

/// <summary>
/// The parameter gradients OpChecks lets be Null (LinearBackward's dWeight, the LayerNorm backwards'
/// dGamma/dBeta, EmbeddingsBackward's five) are skipped on the CPU backend, and the gradients still asked
/// for come out bit for bit as in a call that computes everything.
/// </summary>
[TestFixture]
public class NullGradientTests
{
    private const int N = 7, K = 5, O = 37, H = 8, B = 2, S = 3, V = 11;

    private CpuBackend _cpu = null!;
    private readonly List<DeviceBuffer> _buffers = [];

    [SetUp]
    public void SetUp() => _cpu = new CpuBackend(2);

    [TearDown]
    public void TearDown()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        _cpu.Dispose();
    }

    private TensorRef F(int n, int seed = -1)
    {
        var b = _cpu.Allocate(n, DType.F32, "f");
        _buffers.Add(b);
        if (seed >= 0)
        {
            var r = new Random(seed);
            _cpu.Upload<float>(b, Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray());
        }
        return b;
    }

    private TensorRef I(int[] values)
    {
        var b = _cpu.Allocate(values.Length, DType.I32, "i");
        _buffers.Add(b);
        _cpu.Upload<int>(b, values);
        return b;
    }

    private float[] Read(TensorRef t)
    {
        var a = new float[t.Length];
        _cpu.Download<float>(a, t);
        return a;
    }

    [Test]
    public void LinearBackwardSkipsANullWeightGradient()
    {
        var dOut = F(N * O, 1);
        var x = F(N * K, 2);
        var w = F(O * K, 3);
        TensorRef dx1 = F(N * K), dw1 = F(O * K), db1 = F(O), dx2 = F(N * K), db2 = F(O), dw3 = F(O * K), db3 = F(O);
        _cpu.LinearBackward(dx1, dw1, db1, dOut, x, w, N, K, O, false);
        _cpu.LinearBackward(dx2, TensorRef.Null, db2, dOut, TensorRef.Null, w, N, K, O, false);
        _cpu.LinearBackward(TensorRef.Null, dw3, db3, dOut, x, TensorRef.Null, N, K, O, false);
        Assert.Multiple(() =>
        {
            Assert.That(Read(dx2), Is.EqualTo(Read(dx1)));
            Assert.That(Read(db2), Is.EqualTo(Read(db1)));
            Assert.That(Read(dw3), Is.EqualTo(Read(dw1)));
            Assert.That(Read(db3), Is.EqualTo(Read(db1)));
            Assert.That(Read(dw1), Has.Some.Not.EqualTo(0f));
        });
    }

    [Test]
    public void LayerNormBackwardSkipsNullGammaAndBetaGradients()
    {
        var x = F(N * H, 4);
        var gamma = F(H, 5);
        var beta = F(H, 6);
        TensorRef y = F(N * H), mean = F(N), rstd = F(N);
        _cpu.LayerNorm(y, mean, rstd, x, gamma, beta, N, H, 1e-5f);
        var dOut = F(N * H, 7);
        TensorRef dx1 = F(N * H), dg1 = F(H), db1 = F(H), dx2 = F(N * H), db2 = F(H);
        _cpu.LayerNormBackward(dx1, dg1, db1, dOut, x, mean, rstd, gamma, N, H);
        _cpu.LayerNormBackward(dx2, TensorRef.Null, db2, dOut, x, mean, rstd, gamma, N, H);
        TensorRef dr1 = F(N * H), dbr1 = F(N * H), g1 = F(H), b1 = F(H), dr2 = F(N * H), dbr2 = F(N * H), g2 = F(H);
        var drop = new DropoutSpec(0.25f, 9, 1, 2);
        _cpu.ResidualLayerNormBackward(dr1, dbr1, g1, b1, dOut, x, mean, rstd, gamma, N, H, drop);
        _cpu.ResidualLayerNormBackward(dr2, dbr2, g2, TensorRef.Null, dOut, x, mean, rstd, gamma, N, H, drop);
        Assert.Multiple(() =>
        {
            Assert.That(Read(dx2), Is.EqualTo(Read(dx1)));
            Assert.That(Read(db2), Is.EqualTo(Read(db1)));
            Assert.That(Read(dr2), Is.EqualTo(Read(dr1)));
            Assert.That(Read(dbr2), Is.EqualTo(Read(dbr1)));
            Assert.That(Read(g2), Is.EqualTo(Read(g1)));
        });
    }

    [Test]
    public void EmbeddingsBackwardSkipsNullTableGradientsAndDoesNotReadTheirIds()
    {
        var ids = I([1, 4, 10, 0, 3, 3]);
        var types = I([0, 1, 1, 0, 0, 1]);
        var gamma = F(H, 8);
        var beta = F(H, 9);
        TensorRef output = F(B * S * H), sum = F(B * S * H), mean = F(B * S), rstd = F(B * S);
        _cpu.EmbeddingsForward(output, sum, mean, rstd, ids, types, F(V * H, 10), F(S * H, 11), F(2 * H, 12), gamma, beta,
            B, S, H, 1e-12f, default);
        var dOut = F(B * S * H, 13);
        TensorRef dWord = F(V * H), dPos1 = F(S * H), dType = F(2 * H), dG1 = F(H), dB1 = F(H), scratch1 = F(B * S * H);
        _cpu.EmbeddingsBackward(dWord, dPos1, dType, dG1, dB1, scratch1, dOut, sum, mean, rstd, ids, types, gamma, B, S, H, default);
        // Without the word and type tables the ids are never read: out-of-range ones are accepted.
        var badIds = I([99, -1, 99, 99, 99, 99]);
        TensorRef dPos2 = F(S * H), dG2 = F(H), scratch2 = F(B * S * H);
        _cpu.EmbeddingsBackward(TensorRef.Null, dPos2, TensorRef.Null, dG2, TensorRef.Null, scratch2, dOut, sum, mean, rstd,
            badIds, I([7, 7, 7, 7, 7, 7]), gamma, B, S, H, default);
        Assert.Multiple(() =>
        {
            Assert.That(Read(dPos2), Is.EqualTo(Read(dPos1)));
            Assert.That(Read(dG2), Is.EqualTo(Read(dG1)));
            Assert.That(Read(dPos1), Has.Some.Not.EqualTo(0f));
        });
        // With the word table they are read and checked.
        var e = Assert.Throws<ArgumentException>(() => _cpu.EmbeddingsBackward(dWord, TensorRef.Null, TensorRef.Null, TensorRef.Null, TensorRef.Null,
            scratch2, dOut, sum, mean, rstd, badIds, types, gamma, B, S, H, default));
        Assert.That(e!.Message, Does.StartWith("EmbeddingsBackward: inputIds[0] = 99"));
    }
}
