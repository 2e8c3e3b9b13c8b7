// Deterministic column reductions (bias gradients, position and token-type embedding gradients, and
// stage 2 of the LayerNorm parameter gradients): stage 1 writes one partial sum per (row chunk, column),
// stage 2 adds the chunks in chunk order into the += target. No atomics, so every run gives the same
// bits. Launchers: CudaBackend.Reduce.cs.
#include "common.cuh"

// Stage 1 of out[c] += Σ_r in[r, c] over rows r whose filterIds[r] == filterValue (all rows when filterIds
// is null). in[rows, cols] row-major. blockDim = (32, 8): column c = blockIdx.x·32 + threadIdx.x, rows of
// chunk blockIdx.y strided by threadIdx.y. partial[chunk][c].
extern "C" __global__ void column_sum_partial(float* partial, const void* in, int inType, int rows, long long cols,
    int rowsPerChunk, const int* filterIds, int filterValue, long long ld)
{
    __shared__ float s[8][33];
    long long c = (long long)blockIdx.x * 32 + threadIdx.x;
    int chunk = blockIdx.y;
    int r0 = chunk * rowsPerChunk;
    int r1 = min(rows, r0 + rowsPerChunk);
    float acc = 0.0f;
    if (c < cols)
    {
        for (int r = r0 + threadIdx.y; r < r1; r += 8)
            if (filterIds == 0 || filterIds[r] == filterValue)
                acc += load(in, (long long)r * ld + c, inType);
    }
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols)
    {
        float t = 0.0f;
        for (int k = 0; k < 8; k++) t += s[k][threadIdx.x];
        partial[(long long)chunk * cols + c] = t;
    }
}

// Stage 2: out0[c] += Σ_k partial[k][0][c]; when outputs = 2 also out1[c] += Σ_k partial[k][1][c].
// partial[chunks][outputs][cols]; chunks added in order 0, 1, … A null target is skipped.
extern "C" __global__ void reduce_partials(float* out0, float* out1, const float* partial, int chunks, int outputs,
    long long cols)
{
    for (long long c = grid_index(); c < cols; c += grid_stride())
    {
        float s0 = 0.0f, s1 = 0.0f;
        for (int k = 0; k < chunks; k++)
        {
            s0 += partial[((long long)k * outputs + 0) * cols + c];
            if (outputs > 1) s1 += partial[((long long)k * outputs + 1) * cols + c];
        }
        if (out0 != 0) out0[c] += s0;
        if (outputs > 1 && out1 != 0) out1[c] += s1;
    }
}
