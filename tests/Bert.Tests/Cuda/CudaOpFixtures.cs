using Bert.Runtime;
using Bert.Tests.Cuda.Emulator;
using Bert.Tests.Ops;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

// The op-family fixtures of tests/Bert.Tests/Ops run again on the CUDA backend: on a real GPU
// (Category "Gpu", ignored without a device; fp32 with TF32 off, same tolerances as the CPU), and
// through the CPU emulator of the CUDA kernels (runs in CI, no GPU needed) so every kernel's numerics
// are checked against the fp64 reference on every commit.

[TestFixture, Gpu]
public class GpuLinearOpTests : LinearOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedLinearOpTests : LinearOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuEmbeddingsOpTests : EmbeddingsOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedEmbeddingsOpTests : EmbeddingsOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuLayerNormOpTests : LayerNormOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedLayerNormOpTests : LayerNormOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuAttentionOpTests : AttentionOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedAttentionOpTests : AttentionOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuGatherScatterOpTests : GatherScatterOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedGatherScatterOpTests : GatherScatterOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuDropoutOpTests : DropoutOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedDropoutOpTests : DropoutOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuSoftmaxCrossEntropyOpTests : SoftmaxCrossEntropyOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedSoftmaxCrossEntropyOpTests : SoftmaxCrossEntropyOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuOptimizerOpTests : OptimizerOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedOptimizerOpTests : OptimizerOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}

[TestFixture, Gpu]
public class GpuMemoryOpTests : MemoryOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateGpuBackend();
}

[TestFixture, Category("CudaEmulated")]
public class EmulatedMemoryOpTests : MemoryOpTests
{
    protected override IBackend CreateBackend() => EmulatedCuda.CreateBackend();
}
