namespace Bert.Runtime;

/// <summary>
/// What one attention call needs at its sizes (<see cref="IBackend.PlanAttention"/>), in elements of the
/// backend's compute type. A model allocates probs with <see cref="SavedLength"/> elements per layer and one
/// workspace of <see cref="WorkspaceLength"/>; both depend only on the backend's settings and the sizes, and
/// never grow when batch or sequence shrink, so a plan for the largest micro-batch holds any smaller one.
/// </summary>
/// <param name="SavedLength">Elements of probs, the state AttentionForward saves for AttentionBackward:
/// <see cref="ProbabilitiesLength"/> (the probabilities [B,NH,S,S]) unless <paramref name="Fused"/>.</param>
/// <param name="WorkspaceLength">Elements of the workspace both ops share (not kept between them).</param>
/// <param name="Fused">A fused kernel runs: probs then holds its row statistics, not probabilities.</param>
public readonly record struct AttentionPlan(long SavedLength, long WorkspaceLength, bool Fused)
{
    /// <summary>B·NH·S·S: the probabilities an unfused attention saves.</summary>
    public static long ProbabilitiesLength(int batch, int seq, int heads) => (long)batch * heads * seq * seq;
}
