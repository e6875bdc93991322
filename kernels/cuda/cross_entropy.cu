// cross_entropy.cu -- softmax + cross-entropy fused, forward and backward, with ignore_index.
//
// For one row of logits x (V classes) and its target t:
//   lse  = log(sum_c exp(x_c)) = m + log(sum_c exp(x_c - m)),   m = max_c x_c
//   loss = lse - x_t                                              (= -log softmax(x)_t)
//   dloss/dx_c = softmax(x)_c - [c == t] = exp(x_c - lse) - [c == t]
// Rows whose target equals ignore_index contribute no loss and get a zero gradient.
// Subtracting the row maximum keeps every exp() argument <= 0, so nothing overflows.
//
// "Fused" means the (N, V) softmax matrix is never written to memory: the forward pass keeps
// only lse (one number per row), and the backward pass rebuilds softmax(x)_c = exp(x_c - lse)
// on the fly while it writes the gradient. For a 50k-word vocabulary that saves two full
// passes over the largest activation of a language model.
//
// Thread mapping (both kernels): block r owns row r; thread t handles classes t, t + 128, ...
// so neighbouring threads read neighbouring logits (coalesced).
#include "common.cuh"

#define CE_THREADS 128  // a multiple of 32

// Writes lse[r] and row_loss[r] (0 for an ignored row). The caller sums row_loss.
// A target outside [0, V) that is not ignore_index gives row_loss = NaN (never an
// out-of-bounds read); the Python wrapper rejects such targets before launching.
extern "C" __global__ void __launch_bounds__(CE_THREADS)
cross_entropy_forward_kernel(const float* __restrict__ logits, const long long* __restrict__ targets,
                             float* __restrict__ lse, float* __restrict__ row_loss, int V,
                             long long ignore_index) {
    __shared__ float scratch[32];
    const long long row = blockIdx.x;
    const float* xr = logits + row * V;

    float m = MINILM_NEG_INF;
    for (int c = threadIdx.x; c < V; c += blockDim.x) m = fmaxf(m, xr[c]);
    m = block_reduce_max(m, scratch);

    float s = 0.0f;
    for (int c = threadIdx.x; c < V; c += blockDim.x) s += __expf(xr[c] - m);
    const float row_lse = m + logf(block_reduce_sum(s, scratch));

    if (threadIdx.x == 0) {
        const long long t = targets[row];
        lse[row] = row_lse;
        if (t == ignore_index) {
            row_loss[row] = 0.0f;
        } else if (t < 0 || t >= V) {
            row_loss[row] = __int_as_float(0x7fc00000);  // quiet NaN: a bad target is loud
        } else {
            row_loss[row] = row_lse - xr[t];
        }
    }
}

// dlogits[r, c] = grad_scale * (exp(x_c - lse_r) - [c == t_r]) for a counted row, 0 otherwise.
// grad_scale carries the upstream gradient and the 1/N of a mean reduction.
extern "C" __global__ void __launch_bounds__(CE_THREADS)
cross_entropy_backward_kernel(const float* __restrict__ logits, const long long* __restrict__ targets,
                              const float* __restrict__ lse, float* __restrict__ dlogits, int V,
                              long long ignore_index, float grad_scale) {
    const long long row = blockIdx.x;
    const float* xr = logits + row * V;
    float* dr = dlogits + row * V;
    const long long t = targets[row];
    if (t == ignore_index) {
        for (int c = threadIdx.x; c < V; c += blockDim.x) dr[c] = 0.0f;
        return;  // safe: this kernel has no barrier
    }
    const float row_lse = lse[row];
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        const float p = __expf(xr[c] - row_lse);
        dr[c] = grad_scale * (c == t ? p - 1.0f : p);
    }
}
