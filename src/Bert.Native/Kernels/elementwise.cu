// Elementwise ops: dtype conversion, dropout, bias broadcast (the GEMM epilogue's C operand),
// activation forward and backward. 1-D grid-stride loops; any grid size covers any count.
// Launchers: CudaBackend.Elementwise.cs.
#include "common.cuh"

// out[i] = in[i] for i < count, converted between F32 and BF16 (bf16 shadows of weights, GEMM operands).
extern "C" __global__ void convert_dtype(void* out, int outType, const void* in, int inType, long long count)
{
    long long groups = count >> 2;
    long long done = 0;
    if (aligned16(out, in))
    {
        for (long long g = grid_index(); g < groups; g += grid_stride())
        {
            float v[4];
            load4(in, g << 2, inType, v);
            store4(out, g << 2, outType, v);
        }
        done = groups << 2;
    }
    for (long long i = done + grid_index(); i < count; i += grid_stride())
        store(out, i, outType, load(in, i, inType));
}

// out[i] = dropout(in[i]) for i < count; the mask index is i. out may alias in (each element is read
// and written by one thread). Each thread takes a group of four consecutive elements: one Philox
// evaluation gives all four multipliers.
extern "C" __global__ void dropout_forward(void* out, int outType, const void* in, int inType, long long count,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    long long groups = (count + 3) >> 2;
    bool vector = aligned16(out, in);
    for (long long g = grid_index(); g < groups; g += grid_stride())
    {
        float f[4];
        dropout_factor4(dropP, dropScale, seed, step, stream, (unsigned long long)g, f);
        long long i0 = g << 2;
        if (vector && i0 + 3 < count)
        {
            float v[4];
            load4(in, i0, inType, v);
            for (int r = 0; r < 4; r++) v[r] *= f[r];
            store4(out, i0, outType, v);
            continue;
        }
        for (int r = 0; r < 4; r++)
            if (i0 + r < count) store(out, i0 + r, outType, load(in, i0 + r, inType) * f[r]);
    }
}

// out[r, c] = bias[c] for r < rows, c < cols: the C operand of a GEMM run with beta = 1, so the bias is
// added in fp32 inside the GEMM and a bf16 output is rounded once.
extern "C" __global__ void broadcast_bias(void* out, int outType, const float* bias, long long rows, int cols)
{
    long long count = rows * cols;
    long long done = 0;
    if (aligned16(out) && (cols & 3) == 0)
    {
        long long groups = count >> 2;
        for (long long g = grid_index(); g < groups; g += grid_stride())
        {
            long long i = g << 2;
            int c = (int)(i % cols);
            float v[4] = { bias[c], bias[c + 1], bias[c + 2], bias[c + 3] };
            store4(out, i, outType, v);
        }
        done = groups << 2;
    }
    for (long long i = done + grid_index(); i < count; i += grid_stride())
        store(out, i, outType, bias[i % cols]);
}

// out[i] = act(pre[i]) for i < count.
extern "C" __global__ void activation_forward(void* out, int outType, const void* pre, int preType, long long count,
    int activation)
{
    long long done = 0;
    if (aligned16(out, pre))
    {
        long long groups = count >> 2;
        for (long long g = grid_index(); g < groups; g += grid_stride())
        {
            float v[4];
            load4(pre, g << 2, preType, v);
            for (int r = 0; r < 4; r++) v[r] = activate(v[r], activation);
            store4(out, g << 2, outType, v);
        }
        done = groups << 2;
    }
    for (long long i = done + grid_index(); i < count; i += grid_stride())
        store(out, i, outType, activate(load(pre, i, preType), activation));
}

// dPre[i] = dOut[i]·act'(pre[i]) for i < count. dPre may alias dOut.
extern "C" __global__ void activation_backward(void* dPre, int dPreType, const void* dOut, int dOutType,
    const void* pre, int preType, long long count, int activation)
{
    long long done = 0;
    if (aligned16(dPre, dOut, pre))
    {
        long long groups = count >> 2;
        for (long long g = grid_index(); g < groups; g += grid_stride())
        {
            float d[4], x[4];
            load4(dOut, g << 2, dOutType, d);
            load4(pre, g << 2, preType, x);
            for (int r = 0; r < 4; r++) d[r] *= activate_grad(x[r], activation);
            store4(dPre, g << 2, dPreType, d);
        }
        done = groups << 2;
    }
    for (long long i = done + grid_index(); i < count; i += grid_stride())
        store(dPre, i, dPreType, load(dOut, i, dOutType) * activate_grad(load(pre, i, preType), activation));
}
