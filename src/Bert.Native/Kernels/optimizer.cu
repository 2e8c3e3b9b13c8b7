// Global squared norm (deterministic two-stage fp64 reduction) and AdamW over ranges of the flat
// parameter buffers, with the gradient clip computed on the device. Launchers: CudaBackend.Optimizer.cs.
#include "common.cuh"

// partial[block] = Σ in[i]² over the block's grid-stride share of i < count, in fp64. blockDim.x = 256.
extern "C" __global__ void squared_norm_partial(double* partial, const void* in, int inType, long long count)
{
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = grid_index(); i < count; i += grid_stride())
    {
        double x = (double)load(in, i, inType);
        acc += x * x;
    }
    acc = block_sum_double(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// result[0] = Σ_block partial[block], in block order (overwrites). One block of 32.
extern "C" __global__ void squared_norm_finish(float* result, const double* partial, int blocks)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double s = 0.0;
    for (int k = 0; k < blocks; k++) s += partial[k];
    result[0] = (float)s;
}

// The AdamW update of element i with clip factor clip; shadow (null: none) receives bf16(param), the copy bf16
// GEMMs read. One function for both kernels, so the host-scalar and device-scalar steps round identically.
__device__ __forceinline__ void adamw_element(float* param, bf16_t* shadow, float* m, float* v, const float* grad,
    long long i, float clip, float lr, float beta1, float beta2, float eps, float weightDecay, float bc1, float bc2)
{
    float g = grad[i] * clip;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = param[i];
    p -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + weightDecay * p);
    param[i] = p;
    if (shadow != 0) shadow[i] = float_to_bf16(p);
}

// One AdamW step on i < count:
//   clip = min(1, maxNorm / (sqrt(normSquared[0]) + 1e-6)) (1 when normSquared is null; NaN propagates);
//   g = grad·clip; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
//   param −= lr·((m / bc1) / (sqrt(v / bc2) + eps) + weightDecay·param), bc1 = 1−β1ᵗ, bc2 = 1−β2ᵗ.
extern "C" __global__ void adamw_step(float* param, bf16_t* shadow, float* m, float* v, const float* grad,
    const float* normSquared, long long count, float lr, float beta1, float beta2, float eps, float weightDecay,
    float bc1, float bc2, float maxNorm)
{
    float clip = 1.0f;
    if (normSquared != 0)
    {
        float c = maxNorm / (sqrtf(normSquared[0]) + 1e-6f);
        clip = c != c ? c : fminf(1.0f, c);
    }
    for (long long i = grid_index(); i < count; i += grid_stride())
        adamw_element(param, shadow, m, v, grad, i, clip, lr, beta1, beta2, eps, weightDecay, bc1, bc2);
}

// adamw_step with the per-step scalars read from the device, so a captured step replays unchanged:
// scalars[0] = lr, scalars[1] = bc1, scalars[2] = bc2 (StepScalars). normSquared is required; a non-finite value
// skips the update (nothing written: the host path never launches AdamW then); maxNorm 0: no clipping.
extern "C" __global__ void adamw_device(float* param, bf16_t* shadow, float* m, float* v, const float* grad,
    const float* normSquared, const float* scalars, long long count, float beta1, float beta2, float eps,
    float weightDecay, float maxNorm)
{
    float n2 = normSquared[0];
    if ((__float_as_uint(n2) & 0x7f800000u) == 0x7f800000u) return;
    float clip = 1.0f;
    if (maxNorm > 0.0f) clip = fminf(1.0f, maxNorm / (sqrtf(n2) + 1e-6f));
    float lr = scalars[0], bc1 = scalars[1], bc2 = scalars[2];
    for (long long i = grid_index(); i < count; i += grid_stride())
        adamw_element(param, shadow, m, v, grad, i, clip, lr, beta1, beta2, eps, weightDecay, bc1, bc2);
}
