// attention_v2.cu -- attention on the GPU, version 2 of 3: one warp per query row, online softmax.
//
// Version 1 (attention_v1.cu) writes each row's scores to global memory because the softmax
// needs the row's max and sum before any weight is known. The online softmax (Milakov &
// Gimelshein 2018) needs neither: the warp walks the keys 32 at a time (lane L takes key
// k0 + L) and keeps, for its row, a running max m, a running sum l = sum_j exp(s_j - m) and the
// unnormalised output acc = sum_j exp(s_j - m) v_j. A chunk that raises the max to m' rescales
// the old l and acc by alpha = exp(m - m') -- exp(s - m) = exp(s - m') exp(m' - m) -- and at the
// end out = acc / l, lse = m + log l. Nothing of size Tk is stored anywhere.
// Lane L owns output dimensions d = L + 32 c (c < 4, so D <= 128); the probability of key
// k0 + jj reaches every lane with a register shuffle, __shfl_sync(p, jj).
// What version 3 (attention_forward.cu) adds: 16 query rows per block share each K/V tile
// through shared memory; here every row reads all of K and V from global memory (through the
// caches), and lane L reads row k0 + L of K, so the lanes' loads are D floats apart (uncoalesced).
//
// Backward, atomics-free, two kernels, each output row with one owner:
//   dq kernel   (one warp per query row)  delta_i = dO_i . O_i   (= sum_j P_ij dP_ij, FlashAttention-2),
//               then over key chunks: P_ij = exp(s_ij - lse_i), dS_ij = P_ij (dO_i . v_j - delta_i),
//               dQ_i = scale sum_j dS_ij k_j. It also stores delta for the second kernel.
//   dkdv kernel (one warp per key row)    over query chunks, the same P_ij and dS_ij recomputed:
//               dV_j = sum_i P_ij dO_i,  dK_j = scale sum_i dS_ij q_i.
// S and P are computed twice (once per kernel) instead of stored (version 1) or summed across
// blocks with atomicAdd.
#include "attention_common.cuh"

#define ATTN_V2_DPL 4  // output dimensions per lane: D <= 4 * 32 = 128

__device__ __forceinline__ int attn_v2_key_end(int i, int Tq, int Tk, int causal) {
    return causal ? max(0, min(Tk, i + (Tk - Tq) + 1)) : Tk;
}

// Grid ceil(rows / 4), block 128: warp w of block x owns query row 4 x + w of the B * H * Tq.
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
attention_v2_forward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                            const float* __restrict__ v, const unsigned char* __restrict__ key_mask,
                            float* __restrict__ out, float* __restrict__ lse, long long rows,
                            int H, int Tq, int Tk, int D, float scale, int causal, int has_mask) {
    const long long row = (long long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // the whole warp leaves together, before any shuffle
    const long long bh = row / Tq;
    const int i = (int)(row % Tq);
    const unsigned char* mask_row = has_mask ? key_mask + (bh / H) * Tk : nullptr;
    const float* qi = q + row * D;
    k += bh * Tk * D;
    v += bh * Tk * D;
    const int n = attn_v2_key_end(i, Tq, Tk, causal);

    float m = MINILM_NEG_INF, l = 0.0f, acc[ATTN_V2_DPL];
#pragma unroll
    for (int c = 0; c < ATTN_V2_DPL; ++c) acc[c] = 0.0f;

    for (int k0 = 0; k0 < n; k0 += 32) {  // the same trip count for every lane of the warp
        const int j = k0 + lane;
        const bool visible = j < n && attn_visible(i, j, Tq, Tk, causal, mask_row);
        float s = MINILM_NEG_INF;
        if (visible) {
            float dot = 0.0f;
            for (int d = 0; d < D; ++d) dot += qi[d] * k[(long long)j * D + d];
            s = dot * scale;
        }
        const float m_new = fmaxf(m, warp_max(s));
        // While the row has seen no visible key m_new is -inf, and -inf - -inf would be NaN:
        // measure from 0 instead (p = 0 and alpha = exp(-inf) = 0 then, harmless).
        const float m_ref = m_new == MINILM_NEG_INF ? 0.0f : m_new;
        const float p = visible ? __expf(s - m_ref) : 0.0f;
        const float alpha = __expf(m - m_ref);
        l = l * alpha + warp_sum(p);
        m = m_new;
#pragma unroll
        for (int c = 0; c < ATTN_V2_DPL; ++c) acc[c] *= alpha;
        const int keys_here = min(32, n - k0);
        for (int jj = 0; jj < keys_here; ++jj) {
            const float pj = __shfl_sync(MINILM_FULL_MASK, p, jj);  // key k0 + jj's weight
            const float* vj = v + (long long)(k0 + jj) * D;
#pragma unroll
            for (int c = 0; c < ATTN_V2_DPL; ++c) {
                const int d = lane + 32 * c;
                if (d < D) acc[c] += pj * vj[d];
            }
        }
    }

    const float inv_l = l == 0.0f ? 0.0f : 1.0f / l;  // l == 0: no visible key, out = 0
#pragma unroll
    for (int c = 0; c < ATTN_V2_DPL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) out[row * D + d] = acc[c] * inv_l;
    }
    if (lane == 0) lse[row] = l == 0.0f ? MINILM_NEG_INF : m + logf(l);
}

// Backward, kernel 1 of 2 (run first): dQ, and delta for kernel 2. Grid and warps as forward.
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
attention_v2_backward_dq_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                const float* __restrict__ v, const float* __restrict__ out,
                                const float* __restrict__ dout, const float* __restrict__ lse,
                                const unsigned char* __restrict__ key_mask,
                                float* __restrict__ delta, float* __restrict__ dq, long long rows,
                                int H, int Tq, int Tk, int D, float scale, int causal,
                                int has_mask) {
    const long long row = (long long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const long long bh = row / Tq;
    const int i = (int)(row % Tq);
    const unsigned char* mask_row = has_mask ? key_mask + (bh / H) * Tk : nullptr;
    const float* qi = q + row * D;
    const float* doi = dout + row * D;
    k += bh * Tk * D;
    v += bh * Tk * D;

    float row_delta = 0.0f;  // dO_i . O_i, lanes split the dimensions
    for (int d = lane; d < D; d += 32) row_delta += doi[d] * out[row * D + d];
    row_delta = warp_sum(row_delta);
    if (lane == 0) delta[row] = row_delta;
    const float row_lse = lse[row];
    // A row with no visible key (lse = -inf) has no gradient: skip its keys altogether.
    const int n = row_lse == MINILM_NEG_INF ? 0 : attn_v2_key_end(i, Tq, Tk, causal);

    float acc[ATTN_V2_DPL];
#pragma unroll
    for (int c = 0; c < ATTN_V2_DPL; ++c) acc[c] = 0.0f;
    for (int k0 = 0; k0 < n; k0 += 32) {
        const int j = k0 + lane;
        float ds = 0.0f;
        if (j < n && attn_visible(i, j, Tq, Tk, causal, mask_row)) {
            float dot = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; ++d) {
                dot += qi[d] * k[(long long)j * D + d];
                dp += doi[d] * v[(long long)j * D + d];
            }
            ds = __expf(dot * scale - row_lse) * (dp - row_delta);  // P_ij (dP_ij - delta_i)
        }
        const int keys_here = min(32, n - k0);
        for (int jj = 0; jj < keys_here; ++jj) {
            const float dsj = __shfl_sync(MINILM_FULL_MASK, ds, jj);
            const float* kj = k + (long long)(k0 + jj) * D;
#pragma unroll
            for (int c = 0; c < ATTN_V2_DPL; ++c) {
                const int d = lane + 32 * c;
                if (d < D) acc[c] += dsj * kj[d];
            }
        }
    }
#pragma unroll
    for (int c = 0; c < ATTN_V2_DPL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) dq[row * D + d] = scale * acc[c];
    }
}

// Backward, kernel 2 of 2: dK and dV. Grid ceil(key_rows / 4): warp w of block x owns key
// row 4 x + w of the B * H * Tk; lane L takes query q0 + L of each chunk of 32 queries.
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
attention_v2_backward_dkdv_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                  const float* __restrict__ v, const float* __restrict__ dout,
                                  const float* __restrict__ lse, const float* __restrict__ delta,
                                  const unsigned char* __restrict__ key_mask,
                                  float* __restrict__ dk, float* __restrict__ dv,
                                  long long key_rows, int H, int Tq, int Tk, int D, float scale,
                                  int causal, int has_mask) {
    const long long key_row = (long long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (key_row >= key_rows) return;
    const long long bh = key_row / Tk;
    const int j = (int)(key_row % Tk);
    const unsigned char* mask_row = has_mask ? key_mask + (bh / H) * Tk : nullptr;
    const float* kj = k + key_row * D;
    const float* vj = v + key_row * D;
    q += bh * Tq * D;
    dout += bh * Tq * D;
    lse += bh * Tq;
    delta += bh * Tq;
    // Causal: query i sees key j only when i >= j - (Tk - Tq); start at the first such query.
    const int i_begin = causal ? max(0, j - (Tk - Tq)) : 0;

    float dk_acc[ATTN_V2_DPL], dv_acc[ATTN_V2_DPL];
#pragma unroll
    for (int c = 0; c < ATTN_V2_DPL; ++c) dk_acc[c] = dv_acc[c] = 0.0f;
    for (int q0 = i_begin; q0 < Tq; q0 += 32) {
        const int i = q0 + lane;
        float p = 0.0f, ds = 0.0f;
        if (attn_visible(i, j, Tq, Tk, causal, mask_row) && lse[i] != MINILM_NEG_INF) {
            float dot = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; ++d) {
                dot += q[(long long)i * D + d] * kj[d];
                dp += dout[(long long)i * D + d] * vj[d];
            }
            p = __expf(dot * scale - lse[i]);
            ds = p * (dp - delta[i]);
        }
        const int queries_here = min(32, Tq - q0);
        for (int ii = 0; ii < queries_here; ++ii) {
            const float pi = __shfl_sync(MINILM_FULL_MASK, p, ii);
            const float dsi = __shfl_sync(MINILM_FULL_MASK, ds, ii);
            const long long base = (long long)(q0 + ii) * D;
#pragma unroll
            for (int c = 0; c < ATTN_V2_DPL; ++c) {
                const int d = lane + 32 * c;
                if (d < D) {
                    dv_acc[c] += pi * dout[base + d];
                    dk_acc[c] += dsi * q[base + d];
                }
            }
        }
    }
#pragma unroll
    for (int c = 0; c < ATTN_V2_DPL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) {
            dk[key_row * D + d] = scale * dk_acc[c];
            dv[key_row * D + d] = dv_acc[c];
        }
    }
}
