namespace Bert.Native;

/// <summary>Placeholder namespace anchor for the CUDA backend (bindings, kernels, backend).</summary>
internal static class CudaInfo;
