// attention_common.cuh -- what the attention kernels share: block shape and the mask rule.
//
// Shapes (row-major, contiguous): q (B, H, Tq, D), k and v (B, H, Tk, D), key_mask (B, Tk)
// as bytes (1 = a real key), lse (B, H, Tq). One (batch, head) pair is one "bh" slice.
#ifndef MINILM_CUDA_ATTENTION_COMMON_CUH
#define MINILM_CUDA_ATTENTION_COMMON_CUH

#include "common.cuh"

#define ATTN_WARPS 4                      // warps per block
#define ATTN_THREADS (ATTN_WARPS * 32)    // threads per block
#define ATTN_TILE 32                      // rows of the tile that the lanes walk, one per lane

// How many rows (queries, or keys in the dK/dV kernel) one warp owns. With head dim up to 128
// the shared tiles of the backward kernels would pass the 48 KB static shared memory limit
// with 4 rows per warp, so they take 2; smaller heads take 4 (more reuse of each staged tile).
__host__ __device__ constexpr int attn_rows_per_warp(int dmax) { return dmax >= 128 ? 2 : 4; }

// May query i attend to key j?
//   causal: key j is visible from query i when j <= i + (Tk - Tq), i.e. the last query sees
//   the last key (for Tq == Tk this is the usual j <= i; with a KV cache Tq < Tk).
//   key mask: key j of this batch row must be a real key (not padding).
// `mask_row` is key_mask + b * Tk, or nullptr when there is no mask.
__device__ __forceinline__ bool attn_visible(int i, int j, int Tq, int Tk, int causal,
                                             const unsigned char* mask_row) {
    if (i >= Tq || j >= Tk) return false;
    if (causal && j > i + (Tk - Tq)) return false;
    if (mask_row != nullptr && mask_row[j] == 0) return false;
    return true;
}

#endif  // MINILM_CUDA_ATTENTION_COMMON_CUH
