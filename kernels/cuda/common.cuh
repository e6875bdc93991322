// common.cuh -- small helpers shared by the minilm CUDA kernels.
//
// A warp is 32 threads that execute in lock step; a block is several warps that can
// share memory and meet at __syncthreads(). The reductions below work in two levels:
// inside a warp, lanes swap registers with __shfl_xor_sync (no memory, no barrier);
// across the warps of a block, one partial per warp goes through shared memory.
//
// Every kernel that calls block_reduce_* must be launched with a block size that is a
// multiple of 32 (at most 1024), and every thread of the block must make the call
// (it contains __syncthreads()).
#ifndef MINILM_CUDA_COMMON_CUH
#define MINILM_CUDA_COMMON_CUH

// -inf without <math_constants.h>. NVRTC rejects `-INFINITY`; the bit pattern
// 0xff800000 is the IEEE-754 float -inf.
#define MINILM_NEG_INF __int_as_float(0xff800000)

#define MINILM_FULL_MASK 0xffffffffu

// Sum of `v` over the 32 lanes of a warp, returned to every lane.
// Butterfly: after the step with offset o, each lane holds the sum of a group of 2*o
// lanes; after offsets 16, 8, 4, 2, 1 every lane holds the sum of all 32.
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(MINILM_FULL_MASK, v, offset);
    return v;
}

// Maximum of `v` over the 32 lanes of a warp, returned to every lane.
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(MINILM_FULL_MASK, v, offset));
    return v;
}

// Sum of `v` over all threads of the block, returned to every thread.
// `scratch` is a __shared__ array of at least 32 floats owned by the caller.
__device__ __forceinline__ float block_reduce_sum(float v, float* scratch) {
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int num_warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    // Every warp's partial must be in shared memory before any thread adds them up.
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < num_warps; ++w) total += scratch[w];  // same address: a broadcast
    // Every thread must have read the partials before the caller's next reduction
    // overwrites `scratch`.
    __syncthreads();
    return total;
}

// Maximum of `v` over all threads of the block, returned to every thread.
__device__ __forceinline__ float block_reduce_max(float v, float* scratch) {
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int num_warps = blockDim.x / 32;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();  // as in block_reduce_sum: partials written before they are read
    float best = MINILM_NEG_INF;
    for (int w = 0; w < num_warps; ++w) best = fmaxf(best, scratch[w]);
    __syncthreads();  // partials read before `scratch` is reused
    return best;
}

#endif  // MINILM_CUDA_COMMON_CUH
