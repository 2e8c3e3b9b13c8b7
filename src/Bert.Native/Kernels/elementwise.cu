// Elementwise ops: dtype conversion, dropout, bias broadcast (the GEMM epilogue's C operand),
// activation forward and backward. 1-D grid-stride loops; any grid size covers any count.
// Launchers: CudaBackend.Elementwise.cs.
#include "common.cuh"

// out[i] = in[i] for i < count, converted between F32 and BF16 (bf16 shadows of weights, GEMM operands).
extern "C" __global__ void convert_dtype(void* out, int outType, const void* in, int inType, long long count)
{
    for (long long i = grid_index(); i < count; i += grid_stride())
        store(out, i, outType, load(in, i, inType));
}

// out[i] = dropout(in[i]) for i < count; the mask index is i. out may alias in (each element is read
// and written by one thread). Each thread takes a group of four consecutive elements: one Philox
// evaluation gives all four multipliers.
extern "C" __global__ void dropout_forward(void* out, int outType, const void* in, int inType, long long count,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream)
{
    long long groups = (count + 3) >> 2;
    for (long long g = grid_index(); g < groups; g += grid_stride())
    {
        float f[4];
        dropout_factor4(dropP, dropScale, seed, step, stream, (unsigned long long)g, f);
        long long i0 = g << 2;
        for (int r = 0; r < 4; r++)
            if (i0 + r < count) store(out, i0 + r, outType, load(in, i0 + r, inType) * f[r]);
    }
}

// out[r, c] = bias[c] for r < rows, c < cols: the C operand of a GEMM run with beta = 1, so the bias is
// added in fp32 inside the GEMM and a bf16 output is rounded once.
extern "C" __global__ void broadcast_bias(void* out, int outType, const float* bias, long long rows, int cols)
{
    long long count = rows * cols;
    for (long long i = grid_index(); i < count; i += grid_stride())
        store(out, i, outType, bias[i % cols]);
}

// out[i] = act(pre[i]) for i < count.
extern "C" __global__ void activation_forward(void* out, int outType, const void* pre, int preType, long long count,
    int activation)
{
    for (long long i = grid_index(); i < count; i += grid_stride())
        store(out, i, outType, activate(load(pre, i, preType), activation));
}

// dPre[i] = dOut[i]·act'(pre[i]) for i < count. dPre may alias dOut.
extern "C" __global__ void activation_backward(void* dPre, int dPreType, const void* dOut, int dOutType,
    const void* pre, int preType, long long count, int activation)
{
    for (long long i = grid_index(); i < count; i += grid_stride())
        store(dPre, i, dPreType, load(dOut, i, dOutType) * activate_grad(load(pre, i, preType), activation));
}
