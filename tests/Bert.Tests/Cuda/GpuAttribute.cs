using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary><c>[Gpu]</c>: the "Gpu" test category (run these with <c>--filter "TestCategory=Gpu"</c>).
/// Without a GPU each such test skips in its set-up with the reason (Assert.Ignore).</summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Method, AllowMultiple = false, Inherited = true)]
public sealed class GpuAttribute : CategoryAttribute
{
    public const string CategoryName = "Gpu";

    public GpuAttribute() : base(CategoryName) { }
}
