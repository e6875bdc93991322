// layer_norm.cu -- LayerNorm over the last axis, forward and backward.
//
// Ba, Kiros & Hinton 2016, "Layer Normalization". For one row x of C numbers:
//   mean = sum(x) / C,   var = sum((x - mean)^2) / C,   rstd = 1 / sqrt(var + eps)
//   xhat = (x - mean) * rstd,   y = xhat * weight + bias
// Backward, with g = dy * weight (the gradient reaching xhat):
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))      (means over the row)
//   dweight = sum over rows of dy * xhat,   dbias = sum over rows of dy
//
// The input is viewed as N rows of C numbers (all leading axes flattened).
//
// Kernels:
//   layer_norm_forward_kernel          one block per row: y, mean, rstd
//   layer_norm_backward_dx_kernel      one block per row: dx
//   layer_norm_backward_params_partial_kernel
//                                      dweight/dbias summed over a chunk of rows
//   layer_norm_backward_params_reduce_kernel
//                                      sum of the chunk partials
// dweight and dbias are sums over all N rows. Instead of atomicAdd from every row (N-way
// contention on each column and a result that depends on the order the adds land in), the
// rows are cut into chunks: each (column, chunk) pair is summed by one thread, and a second
// kernel adds the chunk partials. Both steps read along a row across neighbouring threads
// (coalesced) and the answer is the same on every run.
#include "common.cuh"

#define LN_THREADS 128  // block size of the per-row kernels (a multiple of 32)

// Thread mapping: block b normalises row b; thread t handles columns t, t + 128, t + 256, ...
// The row is read three times (mean, variance, output); after the first read it sits in L1/L2.
// Two passes (mean first, then the squared deviations) instead of sum(x^2) - mean^2 avoid the
// cancellation that makes the one-pass formula lose digits when |mean| >> std.
extern "C" __global__ void __launch_bounds__(LN_THREADS)
layer_norm_forward_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                          const float* __restrict__ bias, float* __restrict__ y,
                          float* __restrict__ mean, float* __restrict__ rstd, int C, float eps) {
    __shared__ float scratch[32];  // one partial per warp for block_reduce_*
    const long long row = blockIdx.x;
    const float* xr = x + row * C;
    float* yr = y + row * C;

    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    const float mu = block_reduce_sum(s, scratch) / C;

    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float d = xr[c] - mu;
        ss += d * d;
    }
    const float var = block_reduce_sum(ss, scratch) / C;  // the same value in every thread
    if (!(var <= 3.40282347e38f)) {  // inf or NaN (FLT_MAX, spelled out for the CPU emulator too)
        // The float squares overflowed: |x - mean| above ~1e19 (LayerNorm is scale-invariant, so
        // such a row is legitimate). Redo the row in double, like the NumPy reference and the
        // Numba kernel, so every backend returns the normalised row. Rare: one thread does it.
        // Every thread of the block takes this branch (var is block-uniform), so the barrier is safe.
        __shared__ double stats[2];
        if (threadIdx.x == 0) {
            double s64 = 0.0, ss64 = 0.0;
            for (int c = 0; c < C; ++c) s64 += (double)xr[c];
            const double mu64 = s64 / C;
            for (int c = 0; c < C; ++c) {
                const double d = (double)xr[c] - mu64;
                ss64 += d * d;
            }
            stats[0] = mu64;
            stats[1] = 1.0 / sqrt(ss64 / C + (double)eps);
            mean[row] = (float)mu64;
            rstd[row] = (float)stats[1];
        }
        __syncthreads();
        const double mu64 = stats[0], rs64 = stats[1];
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            yr[c] = (float)(((double)xr[c] - mu64) * rs64 * weight[c] + bias[c]);
        return;
    }
    const float rs = rsqrtf(var + eps);

    for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] = (xr[c] - mu) * rs * weight[c] + bias[c];
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// Same mapping as the forward kernel: block b computes dx for row b.
extern "C" __global__ void __launch_bounds__(LN_THREADS)
layer_norm_backward_dx_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                              const float* __restrict__ weight, const float* __restrict__ mean,
                              const float* __restrict__ rstd, float* __restrict__ dx, int C) {
    __shared__ float scratch[32];
    const long long row = blockIdx.x;
    const float* xr = x + row * C;
    const float* dyr = dy + row * C;
    float* dxr = dx + row * C;
    const float mu = mean[row];
    const float rs = rstd[row];

    // Two row sums: sum(g) and sum(g * xhat), with g = dy * weight.
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float g = dyr[c] * weight[c];
        sum_g += g;
        sum_gx += g * ((xr[c] - mu) * rs);  // xhat first: x - mu may be ~1e20
    }
    const float mean_g = block_reduce_sum(sum_g, scratch) / C;
    const float mean_gx = block_reduce_sum(sum_gx, scratch) / C;

    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float xhat = (xr[c] - mu) * rs;
        dxr[c] = rs * (dyr[c] * weight[c] - mean_g - xhat * mean_gx);
    }
}

// Grid (ceil(C / blockDim.x), num_chunks). Thread (c, k) sums dy * xhat and dy over the rows
// [k * rows_per_chunk, (k + 1) * rows_per_chunk) of column c and writes one partial each.
// No shared memory: every output element has exactly one writer.
extern "C" __global__ void
layer_norm_backward_params_partial_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                          const float* __restrict__ mean,
                                          const float* __restrict__ rstd,
                                          float* __restrict__ dweight_partial,
                                          float* __restrict__ dbias_partial, int N, int C,
                                          int rows_per_chunk) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int chunk = blockIdx.y;
    const long long row_begin = (long long)chunk * rows_per_chunk;
    const long long row_end = min((long long)N, row_begin + rows_per_chunk);
    float dw = 0.0f, db = 0.0f;
    for (long long r = row_begin; r < row_end; ++r) {
        const long long i = r * C + c;
        const float g = dy[i];
        dw += g * ((x[i] - mean[r]) * rstd[r]);  // xhat first: x - mean may be ~1e20
        db += g;
    }
    dweight_partial[(long long)chunk * C + c] = dw;
    dbias_partial[(long long)chunk * C + c] = db;
}

// Grid ceil(C / blockDim.x): thread c adds up the num_chunks partials of column c.
extern "C" __global__ void
layer_norm_backward_params_reduce_kernel(const float* __restrict__ dweight_partial,
                                         const float* __restrict__ dbias_partial,
                                         float* __restrict__ dweight, float* __restrict__ dbias,
                                         int C, int num_chunks) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float dw = 0.0f, db = 0.0f;
    for (int k = 0; k < num_chunks; ++k) {
        dw += dweight_partial[(long long)k * C + c];
        db += dbias_partial[(long long)k * C + c];
    }
    dweight[c] = dw;
    dbias[c] = db;
}
