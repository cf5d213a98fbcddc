/* Kernels of packager's ONNX -> C99 generator: float32, NCHW, no allocation, no globals. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#define PK_MAX_DIMS 8

/* Y[M,N] = alpha * op(A) op(B) + beta * C (C broadcast as [N], [M,N], [1] or absent). */
static void pk_gemm(const float *restrict A, const float *restrict B, const float *restrict C, float *restrict Y,
                    int M, int N, int K, int transA, int transB, float alpha, float beta, int c_kind) {
    for (int m = 0; m < M; ++m) {
        float *restrict y = Y + (size_t)m * N;
        for (int n = 0; n < N; ++n) y[n] = 0.0f;
        for (int k = 0; k < K; ++k) {
            const float a = transA ? A[(size_t)k * M + m] : A[(size_t)m * K + k];
            if (transB) {
                for (int n = 0; n < N; ++n) y[n] += a * B[(size_t)n * K + k];
            } else {
                const float *restrict b = B + (size_t)k * N;
                for (int n = 0; n < N; ++n) y[n] += a * b[n];
            }
        }
        for (int n = 0; n < N; ++n) {
            float c = 0.0f;
            if (c_kind == 1) c = C[n];
            else if (c_kind == 2) c = C[(size_t)m * N + n];
            else if (c_kind == 3) c = C[0];
            else if (c_kind == 4) c = C[m];
            y[n] = alpha * y[n] + beta * c;
        }
    }
}

/* Elementwise binary op over a broadcast: strides are 0 along broadcast dims. */
static void pk_binary(int op, const float *A, const float *B, float *Y, int ndim, const int *shape,
                      const int *as, const int *bs) {
    int idx[PK_MAX_DIMS] = {0};
    size_t total = 1;
    for (int d = 0; d < ndim; ++d) total *= (size_t)shape[d];
    size_t ai = 0, bi = 0;
    for (size_t i = 0; i < total; ++i) {
        const float a = A[ai], b = B[bi];
        Y[i] = op == 0 ? a + b : op == 1 ? a - b : op == 2 ? a * b : a / b;
        for (int d = ndim - 1; d >= 0; --d) {
            ai += (size_t)as[d];
            bi += (size_t)bs[d];
            if (++idx[d] < shape[d]) break;
            ai -= (size_t)as[d] * (size_t)shape[d];
            bi -= (size_t)bs[d] * (size_t)shape[d];
            idx[d] = 0;
        }
    }
}

/* 0 relu, 1 leaky relu, 2 sigmoid, 3 tanh, 4 clip, 5 identity */
static void pk_unary(int op, const float *X, float *Y, size_t n, float p0, float p1) {
    for (size_t i = 0; i < n; ++i) {
        const float x = X[i];
        switch (op) {
            case 0: Y[i] = x > 0.0f ? x : 0.0f; break;
            case 1: Y[i] = x >= 0.0f ? x : p0 * x; break;
            case 2: Y[i] = 1.0f / (1.0f + expf(-x)); break;
            case 3: Y[i] = tanhf(x); break;
            case 4: { const float v = x < p0 ? p0 : x; Y[i] = v > p1 ? p1 : v; break; } /* min > max gives max */
            default: Y[i] = x;
        }
    }
}

static void pk_softmax(const float *X, float *Y, int outer, int axis, int inner) {
    for (int o = 0; o < outer; ++o)
        for (int i = 0; i < inner; ++i) {
            const float *x = X + (size_t)o * axis * inner + i;
            float *y = Y + (size_t)o * axis * inner + i;
            float mx = x[0], sum = 0.0f;
            for (int a = 1; a < axis; ++a) mx = x[(size_t)a * inner] > mx ? x[(size_t)a * inner] : mx;
            for (int a = 0; a < axis; ++a) sum += (y[(size_t)a * inner] = expf(x[(size_t)a * inner] - mx));
            for (int a = 0; a < axis; ++a) y[(size_t)a * inner] /= sum;
        }
}

/* 2-D convolution, NCHW, batch 1: pads (top, left, bottom, right), strides, dilations, groups. */
static void pk_conv2d(const float *restrict X, const float *restrict W, const float *restrict Bias, float *restrict Y,
                      int C, int H, int Wd, int M, int OH, int OW, int KH, int KW, int pt, int pl,
                      int sh, int sw, int dh, int dw, int group) {
    const int cg = C / group, mg = M / group;
    for (int m = 0; m < M; ++m) {
        const int g = m / mg;
        float *restrict y = Y + (size_t)m * OH * OW;
        const float b = Bias ? Bias[m] : 0.0f;
        for (int i = 0; i < OH * OW; ++i) y[i] = b;
        for (int c = 0; c < cg; ++c) {
            const float *restrict x = X + (size_t)(g * cg + c) * H * Wd;
            const float *restrict w = W + ((size_t)m * cg + c) * KH * KW;
            for (int kh = 0; kh < KH; ++kh)
                for (int kw = 0; kw < KW; ++kw) {
                    const float wv = w[kh * KW + kw];
                    for (int oh = 0; oh < OH; ++oh) {
                        const int ih = oh * sh - pt + kh * dh;
                        if (ih < 0 || ih >= H) continue;
                        for (int ow = 0; ow < OW; ++ow) {
                            const int iw = ow * sw - pl + kw * dw;
                            if (iw >= 0 && iw < Wd) y[oh * OW + ow] += wv * x[(size_t)ih * Wd + iw];
                        }
                    }
                }
        }
    }
}

/* Max (kind 0) or average (kind 1; count_include_pad flag) pooling, NCHW, batch 1. */
static void pk_pool2d(int kind, const float *X, float *Y, int C, int H, int Wd, int OH, int OW, int KH, int KW,
                      int pt, int pl, int sh, int sw, int dh, int dw, int include_pad) {
    for (int c = 0; c < C; ++c)
        for (int oh = 0; oh < OH; ++oh)
            for (int ow = 0; ow < OW; ++ow) {
                float acc = kind == 0 ? -INFINITY : 0.0f;
                int count = 0;
                for (int kh = 0; kh < KH; ++kh)
                    for (int kw = 0; kw < KW; ++kw) {
                        const int ih = oh * sh - pt + kh * dh, iw = ow * sw - pl + kw * dw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) {
                            if (include_pad) ++count;
                            continue;
                        }
                        const float v = X[((size_t)c * H + ih) * Wd + iw];
                        if (kind == 0) acc = v > acc ? v : acc;
                        else acc += v;
                        ++count;
                    }
                Y[((size_t)c * OH + oh) * OW + ow] = kind == 0 ? acc : acc / (float)(count ? count : 1);
            }
}

static void pk_global_avg(const float *X, float *Y, int C, int HW) {
    for (int c = 0; c < C; ++c) {
        float s = 0.0f;
        for (int i = 0; i < HW; ++i) s += X[(size_t)c * HW + i];
        Y[c] = s / (float)HW;
    }
}

static void pk_batchnorm(const float *X, float *Y, const float *scale, const float *bias, const float *mean,
                         const float *var, float eps, int C, int inner) {
    for (int c = 0; c < C; ++c) {
        const float k = scale[c] / sqrtf(var[c] + eps), b = bias[c] - mean[c] * k;
        for (int i = 0; i < inner; ++i) Y[(size_t)c * inner + i] = X[(size_t)c * inner + i] * k + b;
    }
}

/* General transpose: out[i] over out shape; in strides permuted. */
static void pk_transpose(const float *X, float *Y, int ndim, const int *oshape, const int *istrides_perm) {
    int idx[PK_MAX_DIMS] = {0};
    size_t total = 1, xi = 0;
    for (int d = 0; d < ndim; ++d) total *= (size_t)oshape[d];
    for (size_t i = 0; i < total; ++i) {
        Y[i] = X[xi];
        for (int d = ndim - 1; d >= 0; --d) {
            xi += (size_t)istrides_perm[d];
            if (++idx[d] < oshape[d]) break;
            xi -= (size_t)istrides_perm[d] * (size_t)oshape[d];
            idx[d] = 0;
        }
    }
}

/* Concat along an axis: parts[i] with size axis_sizes[i] * inner, outer blocks. */
static void pk_concat(const float **parts, const int *axis_sizes, int nparts, float *Y, int outer, int inner) {
    size_t off = 0;
    for (int o = 0; o < outer; ++o)
        for (int p = 0; p < nparts; ++p) {
            const size_t n = (size_t)axis_sizes[p] * inner;
            memcpy(Y + off, parts[p] + (size_t)o * n, n * sizeof(float));
            off += n;
        }
}
