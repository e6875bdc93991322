// attention_backward.cu -- fused scaled dot-product attention, backward (FlashAttention-2 style).
// Version 3 of the attention ladder (see attention_v1.cu and attention_v2.cu for versions 1 and 2).
//
// Forward (attention_forward.cu): S = scale * Q K^T, P = softmax(S) over visible keys, O = P V,
// and lse_i = log sum_j exp(S_ij). Given dO, the chain rule gives
//   dV = P^T dO
//   dP = dO V^T
//   dS_ij = P_ij * (dP_ij - delta_i),   delta_i = sum_j P_ij dP_ij = dO_i . O_i
//   dQ = scale * dS K,    dK = scale * dS^T Q
// (Dao 2023, "FlashAttention-2", Algorithm 2.) P is not stored by the forward pass; it is
// rebuilt tile by tile as P_ij = exp(S_ij - lse_i), which needs no running max because lse_i
// already is the log of the final normaliser. The identity delta_i = dO_i . O_i turns the sum
// over all keys into a dot product of two rows we already have.
//
// Three kernels, run in this order:
//   attention_backward_delta_kernel  delta_i = dO_i . O_i, one warp per query row
//   attention_backward_dkdv_kernel   one block per tile of keys; loops over query tiles and
//                                    accumulates dK and dV for its keys in registers
//   attention_backward_dq_kernel     one block per tile of queries; loops over key tiles and
//                                    accumulates dQ for its queries in registers
// Why two passes instead of atomics: dK_j and dV_j sum over queries and dQ_i sums over keys.
// A single pass over (query tile, key tile) pairs must add one of the two into global memory
// from many blocks at once, with atomicAdd (FlashAttention-2 does this for dQ). Here each block
// owns its outputs outright: no atomics, no zero-initialised buffers, and the same bits on
// every run. The price is computing S and P twice, once per pass.
//
// Blocks are 128 threads = 4 warps, as in the forward kernel. In a block, each warp owns R
// rows (keys in dkdv, queries in dq) and its 32 lanes walk a tile of 32 rows of the other kind,
// one per lane; for the accumulation step lane L owns dimensions L, L + 32, L + 64, L + 96.
#include "attention_common.cuh"

// Grid ceil(B * H * Tq / 4), block 128: warp w of block b handles row 4 b + w of the
// flattened (B * H * Tq, D) arrays; lanes stride over the D dimensions.
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
attention_backward_delta_kernel(const float* __restrict__ out, const float* __restrict__ dout,
                                float* __restrict__ delta, long long rows, int D) {
    const long long row = (long long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // the whole warp leaves together, before its shuffles
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += out[row * D + d] * dout[row * D + d];
    s = warp_sum(s);
    if (lane == 0) delta[row] = s;
}

// Grid (B * H, ceil(Tk / (4 R))): block (bh, t) owns keys [4 R t, 4 R t + 4 R) of slice bh,
// R = attn_rows_per_warp(DMAX) keys per warp.
template <int DMAX>
__global__ void __launch_bounds__(ATTN_THREADS)
attention_backward_dkdv_kernel(const float* __restrict__ q, const float* __restrict__ k,
                               const float* __restrict__ v, const float* __restrict__ dout,
                               const float* __restrict__ lse, const float* __restrict__ delta,
                               const unsigned char* __restrict__ key_mask, float* __restrict__ dk,
                               float* __restrict__ dv, int H, int Tq, int Tk, int D, float scale,
                               int causal, int has_mask) {
    constexpr int R = attn_rows_per_warp(DMAX);  // keys per warp
    constexpr int BK = ATTN_WARPS * R;           // keys per block
    constexpr int DPL = DMAX / 32;               // dimensions per lane

    __shared__ float k_tile[BK][DMAX];  // read as broadcasts (one row for all lanes): no pad
    __shared__ float v_tile[BK][DMAX];
    __shared__ float q_tile[ATTN_TILE][DMAX + 1];   // times scale; +1 pad as in the forward
    __shared__ float do_tile[ATTN_TILE][DMAX + 1];
    __shared__ float lse_tile[ATTN_TILE];
    __shared__ float delta_tile[ATTN_TILE];
    __shared__ float p_tile[ATTN_WARPS][R][ATTN_TILE];
    __shared__ float ds_tile[ATTN_WARPS][R][ATTN_TILE];

    const int bh = blockIdx.x;
    const int b = bh / H;
    const int k_start = blockIdx.y * BK;
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    q += (long long)bh * Tq * D;
    dout += (long long)bh * Tq * D;
    k += (long long)bh * Tk * D;
    v += (long long)bh * Tk * D;
    dk += (long long)bh * Tk * D;
    dv += (long long)bh * Tk * D;
    lse += (long long)bh * Tq;
    delta += (long long)bh * Tq;
    const unsigned char* mask_row = has_mask ? key_mask + (long long)b * Tk : nullptr;

    // Stage this block's keys and values (published by barrier (A) on the first trip).
    for (int idx = threadIdx.x; idx < BK * DMAX; idx += ATTN_THREADS) {
        const int r = idx / DMAX, d = idx % DMAX;
        const int j = k_start + r;
        const bool inside = j < Tk && d < D;
        k_tile[r][d] = inside ? k[(long long)j * D + d] : 0.0f;
        v_tile[r][d] = inside ? v[(long long)j * D + d] : 0.0f;
    }

    float dk_acc[R][DPL], dv_acc[R][DPL];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < DPL; ++c) dk_acc[r][c] = dv_acc[r][c] = 0.0f;

    // Causal: query i sees key j only when i >= j - (Tk - Tq), so queries before
    // k_start - (Tk - Tq) see none of this block's keys. Start at the tile holding that query.
    int q_begin = 0;
    if (causal) q_begin = max(0, k_start - (Tk - Tq)) / ATTN_TILE * ATTN_TILE;

    for (int q_start = q_begin; q_start < Tq; q_start += ATTN_TILE) {
        for (int idx = threadIdx.x; idx < ATTN_TILE * DMAX; idx += ATTN_THREADS) {
            const int r = idx / DMAX, d = idx % DMAX;
            const int i = q_start + r;
            const bool inside = i < Tq && d < D;
            q_tile[r][d] = inside ? q[(long long)i * D + d] * scale : 0.0f;
            do_tile[r][d] = inside ? dout[(long long)i * D + d] : 0.0f;
        }
        if (threadIdx.x < ATTN_TILE) {
            const int i = q_start + threadIdx.x;
            lse_tile[threadIdx.x] = i < Tq ? lse[i] : MINILM_NEG_INF;
            delta_tile[threadIdx.x] = i < Tq ? delta[i] : 0.0f;
        }
        // (A) Every warp reads all 32 staged queries (and, on the first trip, the keys staged
        // above by all warps): the staging must be complete first.
        __syncthreads();

        // Lane L takes query i = q_start + L and forms, for its warp's R keys,
        // s = scale * q_i . k_j and dp = dO_i . v_j. q_tile[lane][d]: padded column read;
        // k_tile[row][d]: broadcast.
        float s[R], dp[R];
#pragma unroll
        for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.0f;
        for (int d = 0; d < D; ++d) {
            const float qd = q_tile[lane][d];
            const float dod = do_tile[lane][d];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                s[r] += qd * k_tile[warp * R + r][d];
                dp[r] += dod * v_tile[warp * R + r][d];
            }
        }
        const int i = q_start + lane;
        const float row_lse = lse_tile[lane];
        const float row_delta = delta_tile[lane];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int j = k_start + warp * R + r;
            // A query with no visible key has lse = -inf and contributes nothing.
            const bool visible =
                attn_visible(i, j, Tq, Tk, causal, mask_row) && row_lse != MINILM_NEG_INF;
            const float p = visible ? __expf(s[r] - row_lse) : 0.0f;
            p_tile[warp][r][lane] = p;
            ds_tile[warp][r][lane] = p * (dp[r] - row_delta);
        }
        // (B) Below every lane reads the p and dS of all 32 queries, written by the other
        // lanes of this warp (and only this warp): a warp barrier suffices.
        __syncwarp();

        // dV_j[d] += sum_i P_ij dO_i[d],  dK_j[d] += sum_i dS_ij (scale q_i)[d].
        const int queries_here = min(ATTN_TILE, Tq - q_start);
        for (int ii = 0; ii < queries_here; ++ii) {
#pragma unroll
            for (int c = 0; c < DPL; ++c) {
                const int d = lane + 32 * c;
                const float qd = q_tile[ii][d];
                const float dod = do_tile[ii][d];
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    dv_acc[r][c] += p_tile[warp][r][ii] * dod;
                    dk_acc[r][c] += ds_tile[warp][r][ii] * qd;
                }
            }
        }
        // (C) All warps must be done with this query tile (and with p_tile/ds_tile) before the
        // next trip overwrites them.
        __syncthreads();
    }

    // q_tile held scale * q, so dk_acc already is scale * dS^T Q.
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int j = k_start + warp * R + r;
        if (j >= Tk) continue;  // the same for the whole warp; no barrier follows
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < D) {
                dk[(long long)j * D + d] = dk_acc[r][c];
                dv[(long long)j * D + d] = dv_acc[r][c];
            }
        }
    }
}

// Grid (B * H, ceil(Tq / (4 R))): block (bh, t) owns queries [4 R t, 4 R t + 4 R) of slice bh.
// The same walk as the forward kernel: lane L takes key (tile start + L).
template <int DMAX>
__global__ void __launch_bounds__(ATTN_THREADS)
attention_backward_dq_kernel(const float* __restrict__ q, const float* __restrict__ k,
                             const float* __restrict__ v, const float* __restrict__ dout,
                             const float* __restrict__ lse, const float* __restrict__ delta,
                             const unsigned char* __restrict__ key_mask, float* __restrict__ dq,
                             int H, int Tq, int Tk, int D, float scale, int causal,
                             int has_mask) {
    constexpr int R = attn_rows_per_warp(DMAX);  // queries per warp
    constexpr int BQ = ATTN_WARPS * R;           // queries per block
    constexpr int DPL = DMAX / 32;

    __shared__ float q_tile[BQ][DMAX];   // times scale; read as broadcasts
    __shared__ float do_tile[BQ][DMAX];
    __shared__ float k_tile[ATTN_TILE][DMAX + 1];  // read down columns in the score step
    __shared__ float v_tile[ATTN_TILE][DMAX + 1];
    __shared__ float ds_tile[ATTN_WARPS][R][ATTN_TILE];

    const int bh = blockIdx.x;
    const int b = bh / H;
    const int q_start = blockIdx.y * BQ;
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    q += (long long)bh * Tq * D;
    dout += (long long)bh * Tq * D;
    dq += (long long)bh * Tq * D;
    k += (long long)bh * Tk * D;
    v += (long long)bh * Tk * D;
    lse += (long long)bh * Tq;
    delta += (long long)bh * Tq;
    const unsigned char* mask_row = has_mask ? key_mask + (long long)b * Tk : nullptr;

    for (int idx = threadIdx.x; idx < BQ * DMAX; idx += ATTN_THREADS) {
        const int r = idx / DMAX, d = idx % DMAX;
        const int i = q_start + r;
        const bool inside = i < Tq && d < D;
        q_tile[r][d] = inside ? q[(long long)i * D + d] * scale : 0.0f;
        do_tile[r][d] = inside ? dout[(long long)i * D + d] : 0.0f;
    }
    // lse and delta of the warp's own rows: the same value in every lane, kept in registers.
    float row_lse[R], row_delta[R], dq_acc[R][DPL];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = q_start + warp * R + r;
        row_lse[r] = i < Tq ? lse[i] : MINILM_NEG_INF;
        row_delta[r] = i < Tq ? delta[i] : 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) dq_acc[r][c] = 0.0f;
    }

    int k_end = Tk;  // as in the forward kernel
    if (causal) k_end = min(Tk, min(q_start + BQ, Tq) + (Tk - Tq));

    for (int k_start = 0; k_start < k_end; k_start += ATTN_TILE) {
        for (int idx = threadIdx.x; idx < ATTN_TILE * DMAX; idx += ATTN_THREADS) {
            const int j = idx / DMAX, d = idx % DMAX;
            const bool inside = k_start + j < Tk && d < D;
            const long long g = (long long)(k_start + j) * D + d;
            k_tile[j][d] = inside ? k[g] : 0.0f;
            v_tile[j][d] = inside ? v[g] : 0.0f;
        }
        // (A) The key/value tile (and, on the first trip, q_tile and do_tile) must be complete
        // before any warp reads rows that other warps staged.
        __syncthreads();

        // Lane L takes key j = k_start + L: s = scale * q_i . k_j and dp = dO_i . v_j for the
        // warp's R queries.
        float s[R], dp[R];
#pragma unroll
        for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.0f;
        for (int d = 0; d < D; ++d) {
            const float kd = k_tile[lane][d];
            const float vd = v_tile[lane][d];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                s[r] += q_tile[warp * R + r][d] * kd;
                dp[r] += do_tile[warp * R + r][d] * vd;
            }
        }
        const int j = k_start + lane;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int i = q_start + warp * R + r;
            const bool visible =
                attn_visible(i, j, Tq, Tk, causal, mask_row) && row_lse[r] != MINILM_NEG_INF;
            const float p = visible ? __expf(s[r] - row_lse[r]) : 0.0f;
            ds_tile[warp][r][lane] = p * (dp[r] - row_delta[r]);
        }
        // (B) Every lane reads the dS of all 32 keys, written by the other lanes of its warp.
        __syncwarp();

        // dQ_i[d] += sum_j dS_ij k_j[d] (times scale at the end).
        const int keys_here = min(ATTN_TILE, Tk - k_start);
        for (int jj = 0; jj < keys_here; ++jj) {
#pragma unroll
            for (int c = 0; c < DPL; ++c) {
                const float kd = k_tile[jj][lane + 32 * c];
#pragma unroll
                for (int r = 0; r < R; ++r) dq_acc[r][c] += ds_tile[warp][r][jj] * kd;
            }
        }
        // (C) All warps must be done with this tile before the next trip overwrites it.
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = q_start + warp * R + r;
        if (i >= Tq) continue;
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < D) dq[(long long)i * D + d] = scale * dq_acc[r][c];
        }
    }
}
