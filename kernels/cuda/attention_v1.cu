// attention_v1.cu -- attention on the GPU, version 1 of 3: the plain port, one warp per query row.
//
// The NumPy reference, row by row, with the (Tq, Tk) matrix written out to global memory:
//   s_j = scale * q_i . k_j,   m = max_j s_j,   p_j = exp(s_j - m) / l,  l = sum_j exp(s_j - m)
//   out_i = sum_j p_j v_j,     lse_i = m + log l
// Version 2 (attention_v2.cu) keeps the softmax in registers with a running max; version 3
// (attention_forward.cu, attention_backward.cu) also shares K and V tiles in shared memory.
//
// Work split: the B * H * Tq query rows are flattened; warp w of block x owns row 4 x + w
// (grid ceil(rows / 4), block 128 threads = 4 warps). Inside the warp the 32 lanes first split
// the keys (lane L takes keys L, L + 32, ...) and then the output dimensions (lane L takes
// d = L, L + 32, ...). No shared memory, no block barrier: a warp never talks to another warp.
// The price: the row's scores go through a global scratch buffer `probs` (B, H, Tq, Tk) -- the
// very matrix FlashAttention avoids -- and every row reads all of K and V from global memory.
//
// Masks (attn_visible): causal means query i sees keys j <= i + (Tk - Tq); key_mask (B, Tk)
// bytes, 1 = a real key. A row that sees no key gets out = 0, lse = -inf and no gradient.
#include "attention_common.cuh"

// The keys row i may see are all below this bound (Tk unless causal).
__device__ __forceinline__ int attn_v1_key_end(int i, int Tq, int Tk, int causal) {
    return causal ? max(0, min(Tk, i + (Tk - Tq) + 1)) : Tk;
}

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
attention_v1_forward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                            const float* __restrict__ v, const unsigned char* __restrict__ key_mask,
                            float* __restrict__ probs, float* __restrict__ out,
                            float* __restrict__ lse, long long rows, int H, int Tq, int Tk, int D,
                            float scale, int causal, int has_mask) {
    const long long row = (long long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // the whole warp leaves together, before any shuffle
    const long long bh = row / Tq;
    const int i = (int)(row % Tq);
    const unsigned char* mask_row = has_mask ? key_mask + (bh / H) * Tk : nullptr;
    const float* qi = q + row * D;
    k += bh * Tk * D;
    v += bh * Tk * D;
    float* p = probs + row * Tk;  // this row of the (Tq, Tk) matrix
    const int n = attn_v1_key_end(i, Tq, Tk, causal);

    // (1) Scores and their max. -inf marks a key this row may not see.
    float m = MINILM_NEG_INF;
    for (int j = lane; j < n; j += 32) {
        float s = MINILM_NEG_INF;
        if (attn_visible(i, j, Tq, Tk, causal, mask_row)) {
            float dot = 0.0f;
            for (int d = 0; d < D; ++d) dot += qi[d] * k[(long long)j * D + d];
            s = dot * scale;
        }
        p[j] = s;
        m = fmaxf(m, s);
    }
    m = warp_max(m);

    // (2) Exponentials and their sum. Each lane rewrites only the entries it wrote in (1).
    float l = 0.0f;
    for (int j = lane; j < n; j += 32) {
        const float e = p[j] == MINILM_NEG_INF ? 0.0f : __expf(p[j] - m);
        p[j] = e;
        l += e;
    }
    l = warp_sum(l);
    // Below, every lane reads all n entries of p, written by the other lanes of this warp.
    __syncwarp();

    // (3) out_i[d] = sum_j p_j v_j[d] / l. l == 0: no visible key, out = 0 and lse = -inf.
    const float inv_l = l == 0.0f ? 0.0f : 1.0f / l;
    for (int d = lane; d < D; d += 32) {
        float acc = 0.0f;
        for (int j = 0; j < n; ++j) acc += p[j] * v[(long long)j * D + d];
        out[row * D + d] = acc * inv_l;
    }
    if (lane == 0) lse[row] = l == 0.0f ? MINILM_NEG_INF : m + logf(l);
}

// Backward, step 1 of 2: one warp per query row. From the saved lse it rebuilds this row of
//   P_ij = exp(s_ij - lse_i),  dP_ij = dO_i . v_j,  delta_i = sum_j P_ij dP_ij,
//   dS_ij = P_ij (dP_ij - delta_i)      (the softmax Jacobian applied to dP)
// writes P and dS to global scratch for step 2, and forms dQ_i = scale * sum_j dS_ij k_j.
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
attention_v1_backward_rows_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                  const float* __restrict__ v, const float* __restrict__ dout,
                                  const float* __restrict__ lse,
                                  const unsigned char* __restrict__ key_mask,
                                  float* __restrict__ probs, float* __restrict__ dscores,
                                  float* __restrict__ dq, long long rows, int H, int Tq, int Tk,
                                  int D, float scale, int causal, int has_mask) {
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
    float* p = probs + row * Tk;
    float* ds = dscores + row * Tk;
    const float row_lse = lse[row];
    const int n = attn_v1_key_end(i, Tq, Tk, causal);

    float delta = 0.0f;
    for (int j = lane; j < n; j += 32) {
        float pj = 0.0f, dpj = 0.0f;  // a masked key, or a row with no key (lse = -inf): 0
        if (row_lse != MINILM_NEG_INF && attn_visible(i, j, Tq, Tk, causal, mask_row)) {
            float dot = 0.0f;
            for (int d = 0; d < D; ++d) {
                dot += qi[d] * k[(long long)j * D + d];
                dpj += doi[d] * v[(long long)j * D + d];
            }
            pj = __expf(dot * scale - row_lse);
        }
        p[j] = pj;
        ds[j] = dpj;  // dP for now
        delta += pj * dpj;
    }
    delta = warp_sum(delta);
    for (int j = lane; j < n; j += 32) ds[j] = p[j] * (ds[j] - delta);
    __syncwarp();  // every lane reads all n entries of dS below

    for (int d = lane; d < D; d += 32) {
        float acc = 0.0f;
        for (int j = 0; j < n; ++j) acc += ds[j] * k[(long long)j * D + d];
        dq[row * D + d] = scale * acc;
    }
}

// Backward, step 2 of 2: one warp per key row j (the B * H * Tk key rows flattened), reading
// column j of P and dS from step 1:
//   dV_j = sum_i P_ij dO_i,    dK_j = scale * sum_i dS_ij q_i
// Each key row has exactly one owner, so no atomics are needed. (Under a causal mask only
// queries i >= j - (Tk - Tq) see key j; the entries above that were never written.)
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
attention_v1_backward_cols_kernel(const float* __restrict__ q, const float* __restrict__ dout,
                                  const float* __restrict__ probs,
                                  const float* __restrict__ dscores, float* __restrict__ dk,
                                  float* __restrict__ dv, long long key_rows, int Tq, int Tk,
                                  int D, float scale, int causal) {
    const long long key_row = (long long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (key_row >= key_rows) return;
    const long long bh = key_row / Tk;
    const int j = (int)(key_row % Tk);
    q += bh * Tq * D;
    dout += bh * Tq * D;
    probs += bh * Tq * Tk;
    dscores += bh * Tq * Tk;
    const int i_begin = causal ? max(0, j - (Tk - Tq)) : 0;
    for (int d = lane; d < D; d += 32) {
        float acc_k = 0.0f, acc_v = 0.0f;
        for (int i = i_begin; i < Tq; ++i) {
            const long long ij = (long long)i * Tk + j;  // P_ij, dS_ij: the same for every lane
            acc_v += probs[ij] * dout[(long long)i * D + d];
            acc_k += dscores[ij] * q[(long long)i * D + d];
        }
        dk[key_row * D + d] = scale * acc_k;
        dv[key_row * D + d] = acc_v;
    }
}
