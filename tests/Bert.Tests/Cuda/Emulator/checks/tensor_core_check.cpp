// Standalone check of the emulator's tensor-core models (cuda_emulator.h), run by TensorCoreModelTests:
// fragments are packed from random bf16 tiles in the PTX ISA's documented layouts, and the MMA result is
// compared with an fp64 matmul; ldmatrix x4 (.trans) is compared with direct reads of the 8x8 matrices.
// Warp exchanges are stubbed with a table of what each lane publishes (here: the row addresses).
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
std::uint64_t warp_exchange(std::uint64_t, int src, unsigned int) { return g_published[src]; }
unsigned int warp_ballot(int, unsigned int) { return 0; }
int lane_id() { return g_lane; }
}  // namespace emu
const emu::KernelEntry kEmuKernels[] = {{"none", nullptr}};
const int kEmuKernelCount = 0;

static unsigned short bf16(float f) { unsigned int u; std::memcpy(&u, &f, 4); return (unsigned short)(u >> 16); }

int main()
{
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> U(-2, 2);
    unsigned short A[16][16], B[16][8];
    float C[16][8];
    for (auto& r : A) for (auto& x : r) x = bf16(U(rng));
    for (auto& r : B) for (auto& x : r) x = bf16(U(rng));
    for (auto& r : C) for (auto& x : r) x = U(rng);
    unsigned int a[32][4], b[32][2];
    float c[32][4], d[32][4];
    for (int l = 0; l < 32; l++)
    {
        int g = l >> 2, t = l & 3;
        a[l][0] = A[g][2 * t] | (A[g][2 * t + 1] << 16);
        a[l][1] = A[g + 8][2 * t] | (A[g + 8][2 * t + 1] << 16);
        a[l][2] = A[g][2 * t + 8] | (A[g][2 * t + 9] << 16);
        a[l][3] = A[g + 8][2 * t + 8] | (A[g + 8][2 * t + 9] << 16);
        b[l][0] = B[2 * t][g] | (B[2 * t + 1][g] << 16);
        b[l][1] = B[2 * t + 8][g] | (B[2 * t + 9][g] << 16);
        c[l][0] = C[g][2 * t], c[l][1] = C[g][2 * t + 1], c[l][2] = C[g + 8][2 * t], c[l][3] = C[g + 8][2 * t + 1];
    }
    emu::mma_m16n8k16_bf16_warp(d, a, b, c);
    double worst = 0;
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 4; i++)
        {
            int row = (l >> 2) + (i >> 1) * 8, col = 2 * (l & 3) + (i & 1);
            double ref = C[row][col];
            for (int k = 0; k < 16; k++) ref += (double)emu::bf16_bits_to_float(A[row][k]) * emu::bf16_bits_to_float(B[k][col]);
            worst = std::max(worst, std::fabs(ref - d[l][i]));
        }
    std::printf("mma worst %g\n", worst);
    if (!(worst < 1e-4)) return 1;

    // ldmatrix: four 8x8 matrices stored with a row pitch of 24 elements.
    static unsigned short M[4][8][24];
    for (int j = 0; j < 4; j++) for (int r = 0; r < 8; r++) for (int k = 0; k < 24; k++) M[j][r][k] = (unsigned short)rng();
    for (int l = 0; l < 32; l++) g_published[l] = (std::uint64_t)(std::uintptr_t)&M[l >> 3][l & 7][0];
    for (int trans = 0; trans < 2; trans++)
        for (int l = 0; l < 32; l++)
        {
            g_lane = l;
            unsigned int r[4];
            emu::ldmatrix_x4(r, (const void*)g_published[l], trans != 0);
            for (int j = 0; j < 4; j++)
                for (int h = 0; h < 2; h++)
                {
                    int row = l >> 2, col = 2 * (l & 3) + h;
                    unsigned int want = trans ? M[j][col][row] : M[j][row][col];
                    if (((r[j] >> (16 * h)) & 0xffffu) != want) { std::printf("ldmatrix trans=%d lane %d reg %d wrong\n", trans, l, j); return 1; }
                }
        }
    std::printf("ldmatrix ok\n");
    return 0;
}
