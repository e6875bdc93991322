// gelu.cu -- GELU activation, forward and backward, exact (erf) and tanh forms.
//
// Hendrycks & Gimpel 2016, "Gaussian Error Linear Units (GELUs)":
//   exact:  y = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))
//           dy/dx = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   tanh:   u = sqrt(2/pi) * (x + 0.044715 x^3),   y = 0.5 * x * (1 + tanh(u))
//           dy/dx = 0.5 * (1 + tanh(u)) + 0.5 * x * (1 - tanh(u)^2) * sqrt(2/pi) * (1 + 3 * 0.044715 x^2)
// The backward kernels return dx = dy * dy/dx (the chain rule), recomputing dy/dx from x
// instead of storing it in the forward pass: one read of x is cheaper than a write and a read.
//
// Thread mapping: element-wise, so any thread can take any element. A grid-stride loop lets a
// grid of a fixed number of blocks cover an array of any length: thread t of the grid handles
// elements t, t + G, t + 2G, ... where G is the number of threads in the grid. Neighbouring
// threads touch neighbouring elements, so every warp reads and writes whole 128-byte lines.
// No shared memory, no barriers. Indices are 64-bit: activations can exceed 2^31 elements.

#define GELU_SQRT_HALF 0.70710678118654752f       // 1 / sqrt(2)
#define GELU_INV_SQRT_2PI 0.39894228040143268f    // 1 / sqrt(2 pi)
#define GELU_SQRT_2_OVER_PI 0.79788456080286536f  // sqrt(2 / pi)
#define GELU_TANH_COEF 0.044715f

extern "C" __global__ void gelu_forward_erf_kernel(const float* __restrict__ x,
                                                   float* __restrict__ y, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        y[i] = 0.5f * xi * (1.0f + erff(xi * GELU_SQRT_HALF));
    }
}

extern "C" __global__ void gelu_forward_tanh_kernel(const float* __restrict__ x,
                                                    float* __restrict__ y, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        const float u = GELU_SQRT_2_OVER_PI * (xi + GELU_TANH_COEF * xi * xi * xi);
        y[i] = 0.5f * xi * (1.0f + tanhf(u));
    }
}

extern "C" __global__ void gelu_backward_erf_kernel(const float* __restrict__ x,
                                                    const float* __restrict__ dy,
                                                    float* __restrict__ dx, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        const float cdf = 0.5f * (1.0f + erff(xi * GELU_SQRT_HALF));  // Phi(x)
        const float pdf = GELU_INV_SQRT_2PI * expf(-0.5f * xi * xi);  // phi(x)
        dx[i] = dy[i] * (cdf + xi * pdf);
    }
}

extern "C" __global__ void gelu_backward_tanh_kernel(const float* __restrict__ x,
                                                     const float* __restrict__ dy,
                                                     float* __restrict__ dx, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        const float x2 = xi * xi;
        const float t = tanhf(GELU_SQRT_2_OVER_PI * xi * (1.0f + GELU_TANH_COEF * x2));
        const float du_dx = GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_COEF * x2);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * xi * (1.0f - t * t) * du_dx);
    }
}
