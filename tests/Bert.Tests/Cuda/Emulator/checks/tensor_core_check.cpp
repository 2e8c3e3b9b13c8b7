// Standalone check of the emulator's tensor-core models (cuda_emulator.h), run by TensorCoreModelTests.
// Fragments are packed here, independently of the models, from random bf16 tiles in the layouts the PTX
// ISA documents for mma.sync.aligned.m16n8k16.row.col bf16 and ldmatrix .x4 (.trans); the MMA result is
// compared with an fp64 matmul and ldmatrix with direct reads. Negative controls: the same comparisons
// with deliberately permuted packings must fail, so the check can tell a wrong layout from a right one.
// Exit code 0 and "tensor-core models ok" when everything holds.
#include "cuda_emulator.h"
#include <algorithm>
#include <cstdio>
#include <random>

dim3 threadIdx, blockIdx, blockDim, gridDim;
static std::uint64_t g_published[32];
static int g_lane = 0;
namespace emu
{
void syncthreads() {}
int syncthreads_or(int p) { return p; }
const std::uint64_t* warp_publish(std::uint64_t, unsigned int) { return g_published; }
std::uint64_t warp_exchange(std::uint64_t, int src, unsigned int) { return g_published[src & 31]; }
unsigned int warp_ballot(int, unsigned int) { return 0; }
int lane_id() { return g_lane; }
}  // namespace emu
const emu::KernelEntry kEmuKernels[] = {{"none", nullptr}};
const int kEmuKernelCount = 0;

static unsigned short bf16(float f) { unsigned int u; std::memcpy(&u, &f, 4); return (unsigned short)(u >> 16); }
static unsigned int pair(unsigned short lo, unsigned short hi) { return lo | ((unsigned int)hi << 16); }

static unsigned short A[16][16], B[16][8];
static float C[16][8];

// Packing variants: 0 = the PTX layout; 1 = a1/a2 swapped; 2 = b0/b1 swapped; 3 = A's halves swapped
// within a register; 4 = C rows g and g+8 swapped.
static double mma_worst(int variant, std::mt19937& rng)
{
    std::uniform_real_distribution<float> U(-2, 2);
    for (auto& r : A) for (auto& x : r) x = bf16(U(rng));
    for (auto& r : B) for (auto& x : r) x = bf16(U(rng));
    for (auto& r : C) for (auto& x : r) x = U(rng);
    emu::MmaFragments frag[32];
    float c[32][4];
    for (int l = 0; l < 32; l++)
    {
        int g = l >> 2, t = l & 3;
        unsigned int a0 = pair(A[g][2 * t], A[g][2 * t + 1]);
        unsigned int a1 = pair(A[g + 8][2 * t], A[g + 8][2 * t + 1]);
        unsigned int a2 = pair(A[g][2 * t + 8], A[g][2 * t + 9]);
        unsigned int a3 = pair(A[g + 8][2 * t + 8], A[g + 8][2 * t + 9]);
        unsigned int b0 = pair(B[2 * t][g], B[2 * t + 1][g]);
        unsigned int b1 = pair(B[2 * t + 8][g], B[2 * t + 9][g]);
        if (variant == 1) std::swap(a1, a2);
        if (variant == 2) std::swap(b0, b1);
        if (variant == 3) a0 = pair(A[g][2 * t + 1], A[g][2 * t]);
        frag[l] = {{a0, a1, a2, a3}, {b0, b1}};
        int r0 = variant == 4 ? g + 8 : g, r1 = variant == 4 ? g : g + 8;
        c[l][0] = C[r0][2 * t], c[l][1] = C[r0][2 * t + 1], c[l][2] = C[r1][2 * t], c[l][3] = C[r1][2 * t + 1];
    }
    double worst = 0;
    for (int l = 0; l < 32; l++)
    {
        float d[4];
        emu::mma_m16n8k16_bf16_lane(d, frag, l, c[l]);
        for (int i = 0; i < 4; i++)
        {
            int row = (l >> 2) + (i >> 1) * 8, col = 2 * (l & 3) + (i & 1);
            double ref = C[row][col];
            for (int k = 0; k < 16; k++) ref += (double)emu::bf16_bits_to_float(A[row][k]) * emu::bf16_bits_to_float(B[k][col]);
            worst = std::max(worst, std::fabs(ref - d[i]));
        }
    }
    return worst;
}

// Mismatching (lane, register) pairs of ldmatrix x4 against the documented result; `expectTrans` picks
// which layout to expect, `trans` which form to run.
static int ldmatrix_mismatches(bool trans, bool expectTrans, std::mt19937& rng)
{
    // Four 8x8 matrices stored with a row pitch of 24 elements; lanes 8j..8j+7 address the rows of matrix j.
    static unsigned short M[4][8][24];
    for (int j = 0; j < 4; j++) for (int r = 0; r < 8; r++) for (int k = 0; k < 24; k++) M[j][r][k] = (unsigned short)rng();
    std::uint64_t rows[32];
    for (int l = 0; l < 32; l++) rows[l] = (std::uint64_t)(std::uintptr_t)&M[l >> 3][l & 7][0];
    int bad = 0;
    for (int l = 0; l < 32; l++)
    {
        unsigned int r[4];
        emu::ldmatrix_x4_lane(r, rows, l, trans);
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++)
            {
                int q = l >> 2, p = 2 * (l & 3) + h;
                unsigned int want = expectTrans ? M[j][p][q] : M[j][q][p];
                bad += ((r[j] >> (16 * h)) & 0xffffu) != want;
            }
    }
    return bad;
}

int main()
{
    std::mt19937 rng(12);
    for (int trial = 0; trial < 20; trial++)
    {
        double worst = mma_worst(0, rng);
        if (!(worst < 1e-4)) { std::printf("mma: worst error %g in trial %d\n", worst, trial); return 1; }
    }
    for (int variant = 1; variant <= 4; variant++)
    {
        double worst = mma_worst(variant, rng);
        if (!(worst > 1e-2)) { std::printf("mma: permuted packing %d not detected (worst %g)\n", variant, worst); return 1; }
    }
    std::printf("mma ok\n");
    for (int trans = 0; trans < 2; trans++)
    {
        int bad = ldmatrix_mismatches(trans != 0, trans != 0, rng);
        if (bad != 0) { std::printf("ldmatrix trans=%d: %d mismatches\n", trans, bad); return 1; }
        int swapped = ldmatrix_mismatches(trans != 0, trans == 0, rng);
        if (swapped < 100) { std::printf("ldmatrix trans=%d: the other layout not detected (%d mismatches)\n", trans, swapped); return 1; }
    }
    // The warp-collective wrapper gathers addresses through warp_publish (here the table) and picks this lane's part.
    static unsigned short M[4][8][8];
    for (int j = 0; j < 4; j++) for (int r = 0; r < 8; r++) for (int k = 0; k < 8; k++) M[j][r][k] = (unsigned short)(j * 64 + r * 8 + k);
    for (int l = 0; l < 32; l++) g_published[l] = (std::uint64_t)(std::uintptr_t)&M[l >> 3][l & 7][0];
    for (int l = 0; l < 32; l++)
    {
        g_lane = l;
        unsigned int r[4];
        emu::ldmatrix_x4(r, &M[l >> 3][l & 7][0], false);
        for (int j = 0; j < 4; j++)
            if (r[j] != pair(M[j][l >> 2][2 * (l & 3)], M[j][l >> 2][2 * (l & 3) + 1])) { std::printf("ldmatrix_x4 lane %d wrong\n", l); return 1; }
    }
    std::printf("ldmatrix ok\ntensor-core models ok\n");
    return 0;
}
