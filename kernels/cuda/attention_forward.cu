// attention_forward.cu -- fused scaled dot-product attention, forward (FlashAttention-style).
// Version 3 of the attention ladder (attention_v1.cu: full softmax per row; attention_v2.cu:
// online softmax per row); this one adds shared-memory tiles of K and V used by 16 query rows.
//
//   S = scale * Q K^T          (Tq, Tk) per (batch, head)
//   P = softmax(S) over keys, with masked keys removed
//   O = P V                    (Tq, D)
//   lse_i = log(sum_j exp(S_ij))   over the visible keys j of query i
//
// Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness";
// online softmax from Milakov & Gimelshein 2018. The (Tq, Tk) matrices S and P are never
// written to memory: keys and values stream through shared memory one tile of 32 at a time,
// and each query keeps a running maximum m, a running sum l = sum_j exp(S_ij - m) and a running
// output acc = sum_j exp(S_ij - m) v_j. When a new tile raises the maximum from m to m', the
// old l and acc are rescaled by alpha = exp(m - m'); at the end O = acc / l and lse = m + log l.
// The backward pass (attention_backward.cu) rebuilds P from lse instead of storing it.
//
// Grid and block:
//   grid  (B * H, ceil(Tq / 16)): block (bh, t) owns queries [16 t, 16 t + 16) of slice bh
//   block 128 threads = 4 warps; warp w owns 4 of those 16 query rows
// Inside a warp, the lanes split the work two ways:
//   scores    lane L computes S for key (tile start + L) against the warp's 4 queries
//   output    lane L owns output dimensions L, L + 32, L + 64, L + 96 of those 4 queries
// DMAX (32, 64 or 128) is the head dimension D rounded up; it sizes the shared tiles and the
// per-lane registers at compile time, while loops over dimensions stop at the real D.
//
// Masks (see attn_visible): causal means query i sees keys j <= i + (Tk - Tq); key_mask
// (B, Tk) bytes, 1 = a real key. A query with no visible key gets out = 0 and lse = -inf.
#include "attention_common.cuh"

template <int DMAX>
__global__ void __launch_bounds__(ATTN_THREADS)
attention_forward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                         const float* __restrict__ v, const unsigned char* __restrict__ key_mask,
                         float* __restrict__ out, float* __restrict__ lse, int H, int Tq, int Tk,
                         int D, float scale, int causal, int has_mask) {
    constexpr int R = 4;                  // query rows per warp
    constexpr int BQ = ATTN_WARPS * R;    // query rows per block
    constexpr int DPL = DMAX / 32;        // output dimensions per lane

    __shared__ float q_tile[BQ][DMAX];              // this block's queries, already times scale
    __shared__ float k_tile[ATTN_TILE][DMAX + 1];   // +1: lanes read down a column, see below
    __shared__ float v_tile[ATTN_TILE][DMAX];
    __shared__ float p_tile[ATTN_WARPS][R][ATTN_TILE];  // each warp's probabilities for a tile

    const int bh = blockIdx.x;
    const int b = bh / H;
    const int q_start = blockIdx.y * BQ;
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    q += (long long)bh * Tq * D;
    out += (long long)bh * Tq * D;
    k += (long long)bh * Tk * D;
    v += (long long)bh * Tk * D;
    lse += (long long)bh * Tq;
    const unsigned char* mask_row = has_mask ? key_mask + (long long)b * Tk : nullptr;

    // Stage the queries. Thread t copies elements t, t + 128, ... of the (BQ, DMAX) tile with
    // d fastest, so consecutive threads read consecutive addresses. Rows past Tq and columns
    // past D are zero. No barrier yet: barrier (A) in the loop below publishes q_tile too, and
    // if the loop does not run q_tile is never read.
    for (int idx = threadIdx.x; idx < BQ * DMAX; idx += ATTN_THREADS) {
        const int r = idx / DMAX, d = idx % DMAX;
        const int i = q_start + r;
        q_tile[r][d] = (i < Tq && d < D) ? q[(long long)i * D + d] * scale : 0.0f;
    }

    float m[R], l[R], acc[R][DPL];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        m[r] = MINILM_NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[r][c] = 0.0f;
    }

    // With a causal mask no query of this block sees a key at or past k_end: skip those tiles.
    // (The bound is the same for every thread of the block, so all of them run the same
    // number of trips and meet at the same barriers.)
    int k_end = Tk;
    if (causal) k_end = min(Tk, min(q_start + BQ, Tq) + (Tk - Tq));

    for (int k_start = 0; k_start < k_end; k_start += ATTN_TILE) {
        // Stage one tile of 32 keys and values, the same way as the queries.
        for (int idx = threadIdx.x; idx < ATTN_TILE * DMAX; idx += ATTN_THREADS) {
            const int j = idx / DMAX, d = idx % DMAX;
            const bool inside = k_start + j < Tk && d < D;
            const long long g = (long long)(k_start + j) * D + d;
            k_tile[j][d] = inside ? k[g] : 0.0f;
            v_tile[j][d] = inside ? v[g] : 0.0f;
        }
        // (A) Each warp reads rows of the tiles that all four warps wrote: the whole tile (and,
        // on the first trip, q_tile) must be in shared memory before anyone reads it.
        __syncthreads();

        // Scores: lane L takes key j = k_start + L and forms s[r] = q_r . k_j for its warp's
        // rows. k_tile[lane][d] has the 32 lanes reading 32 different rows of one column; with a
        // row stride of DMAX + 1 floats those land in 32 different banks (with a stride of
        // DMAX, a multiple of 32, they would all hit one bank: a 32-way conflict).
        // q_tile[row][d] is the same address for every lane: a broadcast, no conflict.
        float s[R];
#pragma unroll
        for (int r = 0; r < R; ++r) s[r] = 0.0f;
        for (int d = 0; d < D; ++d) {
            const float kd = k_tile[lane][d];
#pragma unroll
            for (int r = 0; r < R; ++r) s[r] += q_tile[warp * R + r][d] * kd;
        }

        const int j = k_start + lane;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int i = q_start + warp * R + r;
            const bool visible = attn_visible(i, j, Tq, Tk, causal, mask_row);
            const float sr = visible ? s[r] : MINILM_NEG_INF;
            const float m_new = fmaxf(m[r], warp_max(sr));
            // While row r has seen no visible key, m_new is -inf and (-inf) - (-inf) would be
            // NaN: measure from 0 instead (then p = 0 and alpha = exp(-inf) = 0, harmless).
            const float m_ref = (m_new == MINILM_NEG_INF) ? 0.0f : m_new;
            const float p = visible ? __expf(sr - m_ref) : 0.0f;
            const float alpha = __expf(m[r] - m_ref);  // rescales what was summed so far
            l[r] = l[r] * alpha + warp_sum(p);
            m[r] = m_new;
#pragma unroll
            for (int c = 0; c < DPL; ++c) acc[r][c] *= alpha;
            p_tile[warp][r][lane] = p;
        }
        // (B) Below, every lane reads the probabilities of all 32 keys, written by the other
        // lanes of its warp. Only this warp reads its rows of p_tile: a warp barrier suffices.
        __syncwarp();

        // acc_r[d] += sum_j p_rj * v_j[d]. Lane L owns dimensions d = L + 32 c: consecutive
        // lanes read consecutive addresses of v_tile; p_tile[warp][r][jj] is a broadcast.
        const int keys_here = min(ATTN_TILE, Tk - k_start);
        for (int jj = 0; jj < keys_here; ++jj) {
#pragma unroll
            for (int c = 0; c < DPL; ++c) {
                const float vd = v_tile[jj][lane + 32 * c];
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r][c] += p_tile[warp][r][jj] * vd;
            }
        }
        // (C) All warps must be done with this tile before the next trip overwrites k_tile,
        // v_tile and p_tile.
        __syncthreads();
    }

    // out = acc / l, lse = m + log(l). A row that saw no visible key has l == 0: out 0, lse -inf.
    // (Test l == 0, not l > 0: a NaN that came in with the inputs must come out as NaN.)
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = q_start + warp * R + r;
        if (i >= Tq) continue;  // the same for the whole warp; no barrier follows
        const float inv_l = l[r] == 0.0f ? 0.0f : 1.0f / l[r];
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < D) out[(long long)i * D + d] = acc[r][c] * inv_l;
        }
        if (lane == 0) lse[i] = l[r] == 0.0f ? MINILM_NEG_INF : m[r] + logf(l[r]);
    }
}
