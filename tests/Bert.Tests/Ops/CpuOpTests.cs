using Bert.Runtime;
using Bert.Runtime.Cpu;
using NUnit.Framework;

namespace Bert.Tests.Ops;

// The CPU backend runs every op-family fixture. Two threads even on one core, so the parallel paths
// (chunks on the pool's thread) are always exercised.

[TestFixture]
public class CpuLinearOpTests : LinearOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuEmbeddingsOpTests : EmbeddingsOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuLayerNormOpTests : LayerNormOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuAttentionOpTests : AttentionOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuGatherScatterOpTests : GatherScatterOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuDropoutOpTests : DropoutOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuSoftmaxCrossEntropyOpTests : SoftmaxCrossEntropyOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuOptimizerOpTests : OptimizerOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

[TestFixture]
public class CpuMemoryOpTests : MemoryOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}

/// <summary>The Linear family again on the managed GEMM, so both GEMM paths pass the op tests.</summary>
[TestFixture]
public class CpuManagedGemmLinearOpTests : LinearOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2, CpuGemmKind.Managed);
}
