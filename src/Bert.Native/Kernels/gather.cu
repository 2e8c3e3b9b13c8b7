// Gather of the masked-LM rows and its deterministic scatter-add backward.
// Launchers: CudaBackend.Gather.cs.
#include "common.cuh"

// out[B·P, H] = in[b·S + positions[b·P + p], :]; a position outside [0, S) gives a NaN row, so the
// loss shows it. 1-D grid-stride over the output.
extern "C" __global__ void gather_rows(void* out, int outType, const void* in, int inType, const int* positions,
    int batch, int seq, int count, int hidden)
{
    long long total = (long long)batch * count * hidden;
    for (long long i = grid_index(); i < total; i += grid_stride())
    {
        long long row = i / hidden, h = i % hidden;
        long long b = row / count;
        int pos = positions[row];
        float v = pos >= 0 && pos < seq ? load(in, (b * seq + pos) * hidden + h, inType) : quiet_nan();
        store(out, i, outType, v);
    }
}

// dIn[b·S + positions[b·P + p], :] += dOut[b·P + p, :]. grid.x = B·P, blockDim.x = 128. Block (b, p)
// works only if p is the first prediction of sequence b with its position; it then adds, in p order,
// every row of b with that position, so each dIn row has one writer (no atomics) and repeated positions
// (padding predictions all point at 0) are summed, not raced. Positions outside [0, S) are skipped.
extern "C" __global__ void scatter_add_rows(void* dIn, int dInType, const void* dOut, int dOutType,
    const int* positions, int batch, int seq, int count, int hidden)
{
    int row = blockIdx.x;
    int b = row / count, p = row % count;
    const int* pos = positions + (long long)b * count;
    int target = pos[p];
    if (target < 0 || target >= seq) return;  // block-uniform
    for (int e = 0; e < p; e++)
        if (pos[e] == target) return;           // block-uniform: every thread scans the same entries
    long long dst = ((long long)b * seq + target) * hidden;
    for (int h = threadIdx.x; h < hidden; h += blockDim.x)
    {
        float acc = load(dIn, dst + h, dInType);
        for (int e = p; e < count; e++)
            if (pos[e] == target) acc += load(dOut, ((long long)b * count + e) * hidden + h, dOutType);
        store(dIn, dst + h, dInType, acc);
    }
}
