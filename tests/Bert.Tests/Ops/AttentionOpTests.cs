using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>AttentionForward, AttentionBackward (padding mask, dropout on probs).</summary>
public abstract class AttentionOpTests : OpTestBase
{
    private TensorRef Workspace() => Alloc(Math.Max(1, Backend.PlanAttention(B, S, NH, HD).WorkspaceLength), Backend.ComputeType);

    [TestCase(0f)]
    [TestCase(0.1f)]
    public void AttentionForward_MatchesReference(float p)
    {
        var rng = new Random(40);
        var qkv = RandomFloats(rng, N * 3 * H);
        var mask = PaddedMask();
        var dropout = new DropoutSpec(p, 1234, 2, 5);
        var expected = Reference.Attention(D(qkv), mask, B, S, NH, HD, dropout, out var probs);

        var context = ActZeros(N * H);
        var probsT = ActZeros(B * NH * S * S);
        Backend.AttentionForward(context, probsT, Workspace(), Act(qkv), Ints(mask), B, S, NH, HD, dropout);

        AssertClose(Read(context), expected, Tolerance, "context");
        var actualProbs = Read(probsT);
        AssertClose(actualProbs, probs, Tolerance, "probs");
        for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
        for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++)
        {
            if (mask[b * S + j] != 0) continue;
            Assert.That(actualProbs[((b * NH + h) * S + i) * S + j], Is.EqualTo(0f), $"probs[{b},{h},{i},{j}] of a padding key");
        }
    }

    [TestCase(0f)]
    [TestCase(0.1f)]
    public void AttentionBackward_MatchesFiniteDifferences(float p)
    {
        var rng = new Random(41);
        var qkv = RandomFloats(rng, N * 3 * H);
        var mask = PaddedMask();
        var r = RandomFloats(rng, N * H);
        var dropout = new DropoutSpec(p, 4321, 3, 6);

        var qkvT = Act(qkv);
        var maskT = Ints(mask);
        var probsT = ActZeros(B * NH * S * S);
        var workspace = Workspace();
        var contextT = ActZeros(N * H);
        Backend.AttentionForward(contextT, probsT, workspace, qkvT, maskT, B, S, NH, HD, dropout);
        // dQkv is overwritten: start from garbage.
        var dQkv = Act(RandomFloats(rng, N * 3 * H));
        Backend.AttentionBackward(dQkv, workspace, Act(r), qkvT, contextT, probsT, maskT, B, S, NH, HD, dropout);

        var expected = Reference.Gradient(v => Reference.Attention(v, mask, B, S, NH, HD, dropout, out _), D(qkv), D(r));
        AssertClose(Read(dQkv), expected, GradientTolerance, "dQkv");
    }

    [Test]
    public void AttentionForward_FullyMaskedSequence_GivesZeroProbsAndContext()
    {
        var rng = new Random(42);
        var qkv = RandomFloats(rng, N * 3 * H);
        var mask = PaddedMask();
        for (int s = 0; s < S; s++) mask[S + s] = 0;
        var context = ActZeros(N * H);
        var probsT = ActZeros(B * NH * S * S);
        Backend.AttentionForward(context, probsT, Workspace(), Act(qkv), Ints(mask), B, S, NH, HD, DropoutSpec.None);
        var ctx = Read(context);
        var probs = Read(probsT);
        Assert.That(ctx.Skip(S * H).Take(S * H), Is.All.EqualTo(0f), "context of the fully masked sequence");
        Assert.That(probs.Skip(NH * S * S).Take(NH * S * S), Is.All.EqualTo(0f), "probs of the fully masked sequence");
        Assert.That(ctx.Take(S * H).Any(v => v != 0f), Is.True, "the other sequences still attend");
    }

    /// <summary>A padding mask for <paramref name="batch"/> sequences of <paramref name="seq"/>: sequence b has
    /// its last 3·b keys masked.</summary>
    private static int[] MaskFor(int batch, int seq)
    {
        var mask = new int[batch * seq];
        for (int b = 0; b < batch; b++)
            for (int s = 0; s < seq; s++)
                mask[b * seq + s] = s < seq - 3 * b ? 1 : 0;
        return mask;
    }

    // Sequence lengths that are multiples of 4 up to 512 take the register-resident softmax path of the
    // CUDA kernels (four keys per lane per 128, one Philox evaluation per four keys); S = 7 above takes the
    // general path. 132 covers a partly filled second group of 128 keys.
    [TestCase(132, 0f)]
    [TestCase(132, 0.1f)]
    [TestCase(20, 0.1f)]
    public void AttentionForward_KeyGroupsOfFour_MatchReference(int seq, float p)
    {
        const int batch = 2, heads = 2, headDim = 8, hidden = heads * headDim;
        var rng = new Random(43 + seq);
        var qkv = RandomFloats(rng, batch * seq * 3 * hidden);
        var mask = MaskFor(batch, seq);
        var dropout = new DropoutSpec(p, 99, 4, 7);
        var expected = Reference.Attention(D(qkv), mask, batch, seq, heads, headDim, dropout, out var probs);
        var context = ActZeros(batch * seq * hidden);
        var probsT = ActZeros(batch * heads * seq * seq);
        var workspace = Alloc(Math.Max(1, Backend.PlanAttention(batch, seq, heads, headDim).WorkspaceLength), Backend.ComputeType);
        Backend.AttentionForward(context, probsT, workspace, Act(qkv), Ints(mask), batch, seq, heads, headDim, dropout);
        AssertClose(Read(context), expected, Tolerance, "context");
        AssertClose(Read(probsT), probs, Tolerance, "probs");
    }

    [TestCase(20, 0f)]
    [TestCase(20, 0.1f)]
    public void AttentionBackward_KeyGroupsOfFour_MatchFiniteDifferences(int seq, float p)
    {
        const int batch = 2, heads = 2, headDim = 4, hidden = heads * headDim;
        var rng = new Random(44 + seq);
        var qkv = RandomFloats(rng, batch * seq * 3 * hidden);
        var mask = MaskFor(batch, seq);
        var r = RandomFloats(rng, batch * seq * hidden);
        var dropout = new DropoutSpec(p, 77, 5, 8);
        var qkvT = Act(qkv);
        var maskT = Ints(mask);
        var probsT = ActZeros(batch * heads * seq * seq);
        var workspace = Alloc(Math.Max(1, Backend.PlanAttention(batch, seq, heads, headDim).WorkspaceLength), Backend.ComputeType);
        var contextT = ActZeros(batch * seq * hidden);
        Backend.AttentionForward(contextT, probsT, workspace, qkvT, maskT, batch, seq, heads, headDim, dropout);
        var dQkv = Act(RandomFloats(rng, batch * seq * 3 * hidden));
        Backend.AttentionBackward(dQkv, workspace, Act(r), qkvT, contextT, probsT, maskT, batch, seq, heads, headDim, dropout);
        var expected = Reference.Gradient(v => Reference.Attention(v, mask, batch, seq, heads, headDim, dropout, out _), D(qkv), D(r));
        AssertClose(Read(dQkv), expected, GradientTolerance, "dQkv");
    }
}
