// LayerNorm forward and backward, the post-LN residual variant, and the first stage of the
// deterministic gamma/beta gradient reduction (the second stage is reduce_partials in reduce.cu).
//
// Row kernels: one warp per row, blockDim.x = 256 (8 rows per block), grid.x = ceil(rows / 8).
// Lane l owns columns h = l, l+32, …: every pass reads back only what the same lane wrote, so in-place
// use and aliasing (dInput = dOutput) need no barrier. Statistics: mean = Σx/H, var = Σ(x−mean)²/H
// (two passes, biased), rstd = 1/sqrt(var + eps). Launchers: CudaBackend.Norm.cs.
#include "common.cuh"

#define ROWS_PER_BLOCK 8

// out[N,H] = (in − mean)·rstd·gamma + beta; mean, rstd[N] saved.
extern "C" __global__ void layernorm_forward(void* out, int outType, float* mean, float* rstd,
    const void* in, int inType, const float* gamma, const float* beta, int rows, int hidden, float eps)
{
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long base = (long long)row * hidden;

    float s = 0.0f;
    for (int h = lane; h < hidden; h += 32) s += load(in, base + h, inType);
    float mu = warp_sum(s) / hidden;
    float q = 0.0f;
    for (int h = lane; h < hidden; h += 32)
    {
        float d = load(in, base + h, inType) - mu;
        q += d * d;
    }
    float rs = 1.0f / sqrtf(warp_sum(q) / hidden + eps);
    for (int h = lane; h < hidden; h += 32)
        store(out, base + h, outType, (load(in, base + h, inType) - mu) * rs * gamma[h] + beta[h]);
    if (lane == 0)
    {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// Post-LN residual: sum[N,H] = residual + dropout(branch) (mask index n·H + h); out = LN(sum)·gamma + beta.
// Statistics are taken over sum as stored (bf16-rounded when sum is bf16), which the backward reads.
// With H a multiple of 8 and at most 1024 and every row tensor 16-byte aligned, lane l holds columns
// 8l..8l+7 of each 256 in registers, read and written as 16-byte vectors; else, with H a multiple of 4 and
// at most 1024, columns 4l..4l+3 of each 128 one element at a time. Either way sum is written once and
// never re-read and one Philox evaluation serves four columns; other sizes re-read memory.
extern "C" __global__ void residual_layernorm_forward(void* out, int outType, void* sum, int sumType,
    float* mean, float* rstd, const void* residual, int residualType, const void* branch, int branchType,
    const float* gamma, const float* beta, int rows, int hidden, float eps,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long base = (long long)row * hidden;

    if ((hidden & 7) == 0 && hidden <= 1024 && aligned16(out, sum, residual) && aligned16(branch))
    {
        // Lane l holds columns 8l..8l+7 of each 256: 16-byte accesses (two for fp32), two Philox
        // evaluations per eight columns.
        float v[4][8];
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < 4; t++)
        {
            int h0 = t * 256 + lane * 8;
#pragma unroll
            for (int k = 0; k < 8; k++) v[t][k] = 0.0f;
            if (h0 >= hidden) continue;
            float a[8], f[8];
            load8(residual, base + h0, residualType, a);
            load8(branch, base + h0, branchType, v[t]);
            unsigned long long block = (unsigned long long)(base + h0) >> 2;
            dropout_factor4(dropP, dropScale, seed, step, stream, block, f);
            dropout_factor4(dropP, dropScale, seed, step, stream, block + 1, f + 4);
#pragma unroll
            for (int k = 0; k < 8; k++)
            {
                v[t][k] = stored(a[k] + v[t][k] * f[k], sumType);
                s += v[t][k];
            }
            store8(sum, base + h0, sumType, v[t]);
        }
        float mu = warp_sum(s) / hidden;
        float q = 0.0f;
#pragma unroll
        for (int t = 0; t < 4; t++)
        {
            if (t * 256 + lane * 8 >= hidden) continue;
#pragma unroll
            for (int k = 0; k < 8; k++)
            {
                float d = v[t][k] - mu;
                q += d * d;
            }
        }
        float rs = 1.0f / sqrtf(warp_sum(q) / hidden + eps);
#pragma unroll
        for (int t = 0; t < 4; t++)
        {
            int h0 = t * 256 + lane * 8;
            if (h0 >= hidden) continue;
#pragma unroll
            for (int k = 0; k < 8; k++) v[t][k] = (v[t][k] - mu) * rs * gamma[h0 + k] + beta[h0 + k];
            store8(out, base + h0, outType, v[t]);
        }
        if (lane == 0)
        {
            mean[row] = mu;
            rstd[row] = rs;
        }
        return;
    }

    if ((hidden & 3) == 0 && hidden <= 1024)
    {
        float v[8][4];
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < 8; t++)
        {
            int h0 = t * 128 + lane * 4;
            float f[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (h0 < hidden)
                dropout_factor4(dropP, dropScale, seed, step, stream, (unsigned long long)(base + h0) >> 2, f);
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                long long i = base + h0 + r;
                v[t][r] = 0.0f;
                if (h0 < hidden)
                {
                    v[t][r] = stored(load(residual, i, residualType) + load(branch, i, branchType) * f[r], sumType);
                    store(sum, i, sumType, v[t][r]);
                }
                s += v[t][r];
            }
        }
        float mu = warp_sum(s) / hidden;
        float q = 0.0f;
#pragma unroll
        for (int t = 0; t < 8; t++)
        {
            int h0 = t * 128 + lane * 4;
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                float d = h0 < hidden ? v[t][r] - mu : 0.0f;
                q += d * d;
            }
        }
        float rs = 1.0f / sqrtf(warp_sum(q) / hidden + eps);
#pragma unroll
        for (int t = 0; t < 8; t++)
        {
            int h0 = t * 128 + lane * 4;
            if (h0 >= hidden) continue;
#pragma unroll
            for (int r = 0; r < 4; r++)
                store(out, base + h0 + r, outType, (v[t][r] - mu) * rs * gamma[h0 + r] + beta[h0 + r]);
        }
        if (lane == 0)
        {
            mean[row] = mu;
            rstd[row] = rs;
        }
        return;
    }

    float s = 0.0f;
    for (int h = lane; h < hidden; h += 32)
    {
        long long i = base + h;
        float v = load(residual, i, residualType)
                + load(branch, i, branchType) * dropout_factor(dropP, dropScale, seed, step, stream, i);
        v = stored(v, sumType);
        store(sum, i, sumType, v);
        s += v;
    }
    float mu = warp_sum(s) / hidden;
    float q = 0.0f;
    for (int h = lane; h < hidden; h += 32)
    {
        float d = load(sum, base + h, sumType) - mu;
        q += d * d;
    }
    float rs = 1.0f / sqrtf(warp_sum(q) / hidden + eps);
    for (int h = lane; h < hidden; h += 32)
        store(out, base + h, outType, (load(sum, base + h, sumType) - mu) * rs * gamma[h] + beta[h]);
    if (lane == 0)
    {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// dIn[N,H] = LayerNorm backward of dy = dropout(dOut) (mask index n·H + h; inactive when dropP = 0):
//   g = dy·gamma, xhat = (in − mean)·rstd, dIn = rstd·(g − mean_h(g) − xhat·mean_h(g·xhat)).
// dIn may alias dOut. With H a multiple of 4 and at most 1024, lane l holds columns 4l..4l+3 of each 128 in
// registers and one Philox evaluation serves four columns; other sizes re-read memory.
extern "C" __global__ void layernorm_backward(void* dIn, int dInType, const void* dOut, int dOutType,
    const void* in, int inType, const float* mean, const float* rstd, const float* gamma, int rows, int hidden,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long base = (long long)row * hidden;
    float mu = mean[row], rs = rstd[row];

    if ((hidden & 3) == 0 && hidden <= 1024)
    {
        float g[8][4], xh[8][4];
        float a = 0.0f, b = 0.0f;
#pragma unroll
        for (int t = 0; t < 8; t++)
        {
            int h0 = t * 128 + lane * 4;
            float f[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (h0 < hidden)
                dropout_factor4(dropP, dropScale, seed, step, stream, (unsigned long long)(base + h0) >> 2, f);
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                bool on = h0 < hidden;
                long long i = base + h0 + r;
                g[t][r] = on ? load(dOut, i, dOutType) * f[r] * gamma[h0 + r] : 0.0f;
                xh[t][r] = on ? (load(in, i, inType) - mu) * rs : 0.0f;
                a += g[t][r];
                b += g[t][r] * xh[t][r];
            }
        }
        a = warp_sum(a) / hidden;
        b = warp_sum(b) / hidden;
#pragma unroll
        for (int t = 0; t < 8; t++)
        {
            int h0 = t * 128 + lane * 4;
            if (h0 >= hidden) continue;
#pragma unroll
            for (int r = 0; r < 4; r++)
                store(dIn, base + h0 + r, dInType, rs * (g[t][r] - a - xh[t][r] * b));
        }
        return;
    }

    float a = 0.0f, b = 0.0f;
    for (int h = lane; h < hidden; h += 32)
    {
        long long i = base + h;
        float g = load(dOut, i, dOutType) * dropout_factor(dropP, dropScale, seed, step, stream, i) * gamma[h];
        float xhat = (load(in, i, inType) - mu) * rs;
        a += g;
        b += g * xhat;
    }
    a = warp_sum(a) / hidden;
    b = warp_sum(b) / hidden;
    for (int h = lane; h < hidden; h += 32)
    {
        long long i = base + h;
        float g = load(dOut, i, dOutType) * dropout_factor(dropP, dropScale, seed, step, stream, i) * gamma[h];
        float xhat = (load(in, i, inType) - mu) * rs;
        store(dIn, i, dInType, rs * (g - a - xhat * b));
    }
}

// Backward of out = LayerNorm(residual + dropout(branch)) for the rows: dResidual[N,H] = LayerNorm
// backward of dOut (as layernorm_backward without dropout) and, in the same pass,
// dBranch = dropout(dResidual as stored) with mask index n·H + h. One warp per row, blockDim.x = 256.
// With H a multiple of 4 and at most 1024, lane l holds columns 4l..4l+3 of each 128 in registers and
// one Philox evaluation serves four columns; other sizes re-read memory. dResidual may alias dOut.
extern "C" __global__ void residual_layernorm_backward(void* dResidual, int dResidualType, void* dBranch, int dBranchType,
    const void* dOut, int dOutType, const void* in, int inType, const float* mean, const float* rstd, const float* gamma,
    int rows, int hidden, float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long base = (long long)row * hidden;
    float mu = mean[row], rs = rstd[row];

    if ((hidden & 3) == 0 && hidden <= 1024)
    {
        float g[8][4], xh[8][4];
        float a = 0.0f, b = 0.0f;
#pragma unroll
        for (int t = 0; t < 8; t++)
        {
            int h0 = t * 128 + lane * 4;
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                bool on = h0 < hidden;
                long long i = base + h0 + r;
                g[t][r] = on ? load(dOut, i, dOutType) * gamma[h0 + r] : 0.0f;
                xh[t][r] = on ? (load(in, i, inType) - mu) * rs : 0.0f;
                a += g[t][r];
                b += g[t][r] * xh[t][r];
            }
        }
        a = warp_sum(a) / hidden;
        b = warp_sum(b) / hidden;
#pragma unroll
        for (int t = 0; t < 8; t++)
        {
            int h0 = t * 128 + lane * 4;
            if (h0 >= hidden) continue;
            float f[4];
            dropout_factor4(dropP, dropScale, seed, step, stream, (unsigned long long)(base + h0) >> 2, f);
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                long long i = base + h0 + r;
                float d = rs * (g[t][r] - a - xh[t][r] * b);
                store(dResidual, i, dResidualType, d);
                store(dBranch, i, dBranchType, stored(d, dResidualType) * f[r]);
            }
        }
        return;
    }

    float a = 0.0f, b = 0.0f;
    for (int h = lane; h < hidden; h += 32)
    {
        long long i = base + h;
        float g = load(dOut, i, dOutType) * gamma[h];
        float xhat = (load(in, i, inType) - mu) * rs;
        a += g;
        b += g * xhat;
    }
    a = warp_sum(a) / hidden;
    b = warp_sum(b) / hidden;
    for (int h = lane; h < hidden; h += 32)
    {
        long long i = base + h;
        float g = load(dOut, i, dOutType) * gamma[h];
        float xhat = (load(in, i, inType) - mu) * rs;
        float d = rs * (g - a - xhat * b);
        store(dResidual, i, dResidualType, d);
        store(dBranch, i, dBranchType, stored(d, dResidualType) * dropout_factor(dropP, dropScale, seed, step, stream, i));
    }
}

// Stage 1 of dGamma[H] += Σ_n dy·xhat and dBeta[H] += Σ_n dy (dy = dropout(dOut) as above).
// blockDim = (32, 8): threadIdx.x picks the column c = blockIdx.x·32 + x, threadIdx.y strides the rows
// of chunk blockIdx.y = [chunk·rowsPerChunk, +rowsPerChunk). Writes partial[chunk][0][c] (gamma) and
// partial[chunk][1][c] (beta); the 8 row lanes are added in a fixed order.
extern "C" __global__ void layernorm_param_grad_partial(float* partial, const void* dOut, int dOutType,
    const void* in, int inType, const float* mean, const float* rstd, int rows, int hidden, int rowsPerChunk,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    __shared__ float sg[8][33];
    __shared__ float sb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int chunk = blockIdx.y;
    int r0 = chunk * rowsPerChunk;
    int r1 = min(rows, r0 + rowsPerChunk);
    float g = 0.0f, b = 0.0f;
    if (c < hidden)
    {
        for (int r = r0 + threadIdx.y; r < r1; r += 8)
        {
            long long i = (long long)r * hidden + c;
            float dy = load(dOut, i, dOutType) * dropout_factor(dropP, dropScale, seed, step, stream, i);
            float xhat = (load(in, i, inType) - mean[r]) * rstd[r];
            g += dy * xhat;
            b += dy;
        }
    }
    sg[threadIdx.y][threadIdx.x] = g;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < hidden)
    {
        float tg = 0.0f, tb = 0.0f;
        for (int k = 0; k < 8; k++)
        {
            tg += sg[k][threadIdx.x];
            tb += sb[k][threadIdx.x];
        }
        partial[((long long)chunk * 2 + 0) * hidden + c] = tg;
        partial[((long long)chunk * 2 + 1) * hidden + c] = tb;
    }
}

// ---- LayerNorm backward with the gamma/beta partial sums in the row pass ---------------------------
// One kernel for the three LayerNorm backwards (plain, embeddings, post-LN residual) where H is a multiple
// of 8, at most 1024, and dIn, dBranch, dOut and in are 16-byte aligned: lane l of a warp holds columns
// 8l..8l+7 of each 256 of one row in registers, read and written as 16-byte vectors (two for fp32).
//   dy = dOut, or dropout(dOut) when dBranch is null (the embeddings' output dropout; mask index n·H + h)
//   dIn[N,H] = rstd·(g − mean_h(g) − xhat·mean_h(g·xhat)),  g = dy·gamma, xhat = (in − mean)·rstd
//   dBranch[N,H] = dropout(dIn as stored) when dBranch is given (residual: branch dropout, index n·H + h)
//   partial[chunk][0][h] = Σ dy·xhat, partial[chunk][1][h] = Σ dy over the chunk's rows (stage 1 of
//   dGamma/dBeta; reduce_partials adds the chunks in order). Null partial: no parameter gradients.
// Block k (blockDim.x = 256, 8 warps) takes the rows [k·rowsPerChunk, (k+1)·rowsPerChunk), warp w the rows
// w, w + 8, … of them; each lane keeps its columns' sums over its rows in registers, and the eight warps'
// sums are added in warp order through shared memory. No atomics: the same shape gives the same bits.
// dIn may alias dOut (a row is read into registers before its lane writes the same columns).
template <int T>
__device__ __forceinline__ void layernorm_backward_rows8(void* dIn, int dInType, void* dBranch, int dBranchType,
    const void* dOut, int dOutType, const void* in, int inType, const float* mean, const float* rstd,
    const float* gamma, float* partial, int rows, int hidden, int rowsPerChunk,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream, float* red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int r0 = blockIdx.x * rowsPerChunk;
    int r1 = min(rows, r0 + rowsPerChunk);
    bool dropIn = dBranch == 0;
    float accG[T][8], accB[T][8];
#pragma unroll
    for (int t = 0; t < T; t++)
#pragma unroll
        for (int k = 0; k < 8; k++) accG[t][k] = accB[t][k] = 0.0f;

    for (int row = r0 + warp; row < r1; row += ROWS_PER_BLOCK)
    {
        long long base = (long long)row * hidden;
        float mu = mean[row], rs = rstd[row];
        // dy stays in registers; in is read again in the second loop (from L1: the warp read the row just
        // before), which keeps the kernel near 128 registers.
        float dy[T][8];
        float a = 0.0f, b = 0.0f;
#pragma unroll
        for (int t = 0; t < T; t++)
        {
            int h0 = t * 256 + lane * 8;
#pragma unroll
            for (int k = 0; k < 8; k++) dy[t][k] = 0.0f;
            if (h0 >= hidden) continue;
            float xh[8];
            load8(dOut, base + h0, dOutType, dy[t]);
            load8(in, base + h0, inType, xh);
            if (dropIn)
            {
                float f[8];
                unsigned long long block = (unsigned long long)(base + h0) >> 2;
                dropout_factor4(dropP, dropScale, seed, step, stream, block, f);
                dropout_factor4(dropP, dropScale, seed, step, stream, block + 1, f + 4);
#pragma unroll
                for (int k = 0; k < 8; k++) dy[t][k] *= f[k];
            }
#pragma unroll
            for (int k = 0; k < 8; k++)
            {
                xh[k] = (xh[k] - mu) * rs;
                float g = dy[t][k] * gamma[h0 + k];
                a += g;
                b += g * xh[k];
                accG[t][k] += dy[t][k] * xh[k];
                accB[t][k] += dy[t][k];
            }
        }
        a = warp_sum(a) / hidden;
        b = warp_sum(b) / hidden;
#pragma unroll
        for (int t = 0; t < T; t++)
        {
            int h0 = t * 256 + lane * 8;
            if (h0 >= hidden) continue;
            float d[8];
            load8(in, base + h0, inType, d);
#pragma unroll
            for (int k = 0; k < 8; k++) d[k] = rs * (dy[t][k] * gamma[h0 + k] - a - (d[k] - mu) * rs * b);
            store8(dIn, base + h0, dInType, d);
            if (!dropIn)
            {
                float f[8];
                unsigned long long block = (unsigned long long)(base + h0) >> 2;
                dropout_factor4(dropP, dropScale, seed, step, stream, block, f);
                dropout_factor4(dropP, dropScale, seed, step, stream, block + 1, f + 4);
#pragma unroll
                for (int k = 0; k < 8; k++) d[k] = stored(d[k], dInType) * f[k];
                store8(dBranch, base + h0, dBranchType, d);
            }
        }
    }

    if (partial == 0) return;  // block-uniform
    for (int w = 0; w < ROWS_PER_BLOCK; w++)
    {
        if (warp == w)
        {
#pragma unroll
            for (int t = 0; t < T; t++)
            {
                int h0 = t * 256 + lane * 8;
                if (h0 >= hidden) continue;
#pragma unroll
                for (int k = 0; k < 8; k++)
                {
                    red[h0 + k] = w == 0 ? accG[t][k] : red[h0 + k] + accG[t][k];
                    red[1024 + h0 + k] = w == 0 ? accB[t][k] : red[1024 + h0 + k] + accB[t][k];
                }
            }
        }
        __syncthreads();
    }
    long long chunk = blockIdx.x;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x)
    {
        partial[(chunk * 2 + 0) * hidden + c] = red[c];
        partial[(chunk * 2 + 1) * hidden + c] = red[1024 + c];
    }
}

// H ≤ 768 (BERT-base and smaller): at most 128 registers, so two blocks (16 warps) fit on an SM.
extern "C" __global__ void __launch_bounds__(256, 2) layernorm_backward_fused(void* dIn, int dInType, void* dBranch, int dBranchType,
    const void* dOut, int dOutType, const void* in, int inType, const float* mean, const float* rstd,
    const float* gamma, float* partial, int rows, int hidden, int rowsPerChunk,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    __shared__ float red[2 * 1024];
    switch ((hidden + 255) >> 8)
    {
        case 1:
            layernorm_backward_rows8<1>(dIn, dInType, dBranch, dBranchType, dOut, dOutType, in, inType, mean, rstd, gamma,
                partial, rows, hidden, rowsPerChunk, dropP, dropScale, seed, step, stream, red);
            break;
        case 2:
            layernorm_backward_rows8<2>(dIn, dInType, dBranch, dBranchType, dOut, dOutType, in, inType, mean, rstd, gamma,
                partial, rows, hidden, rowsPerChunk, dropP, dropScale, seed, step, stream, red);
            break;
        default:
            layernorm_backward_rows8<3>(dIn, dInType, dBranch, dBranchType, dOut, dOutType, in, inType, mean, rstd, gamma,
                partial, rows, hidden, rowsPerChunk, dropP, dropScale, seed, step, stream, red);
            break;
    }
}

// 768 < H ≤ 1024 (BERT-large): the same with four column tiles (about 170 registers: one block per SM).
extern "C" __global__ void layernorm_backward_fused_wide(void* dIn, int dInType, void* dBranch, int dBranchType,
    const void* dOut, int dOutType, const void* in, int inType, const float* mean, const float* rstd,
    const float* gamma, float* partial, int rows, int hidden, int rowsPerChunk,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    __shared__ float red[2 * 1024];
    layernorm_backward_rows8<4>(dIn, dInType, dBranch, dBranchType, dOut, dOutType, in, inType, mean, rstd, gamma,
        partial, rows, hidden, rowsPerChunk, dropP, dropScale, seed, step, stream, red);
}
