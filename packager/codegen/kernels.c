/* Kernels of packager's ONNX -> C99 generator: float32, NCHW, no allocation, no globals. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PK_MAX_DIMS 8
#define PK_MAX_TAPS 64 /* kernel taps a conv reads in place (pk_igeom) or a depthwise conv holds */

/* AVX-512 copies of the hot kernels, compiled for it whatever -march says and picked at run time
   (pk_wide512). PK_PLAIN_C (no vector extensions) and PK_NARROW (16-byte vectors only, as on a
   CPU without AVX2) leave them out. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(PK_PLAIN_C) && !defined(PK_NARROW)
#define PK_HAS512 1
#define PK_W512 __attribute__((target("avx512f,fma")))
#include <immintrin.h> /* masked loads and stores: the intrinsics need only the target attribute */
/* Lanes of two 16-float vectors picked by index (0-15: a's, 16-31: b's): one two-source permute. */
typedef int pk_perm16 __attribute__((vector_size(64)));
#if defined(__clang__)
#define PK_PERM(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define PK_PERM(a, b, ...) __builtin_shuffle(a, b, (pk_perm16){__VA_ARGS__})
#endif
#define PK_EVENS 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define PK_ODDS 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
static int pk_wide512(void) { return __builtin_cpu_supports("avx512f"); }
#else
#define PK_HAS512 0
static int pk_wide512(void) { return 0; }
#endif


static void pk_bias(float *restrict Y, const float *restrict C, int M, int N, float alpha, float beta, int c_kind);

/* Y[M,N] = alpha * op(A) op(B) + beta * C (C broadcast as [N], [M,N], [1], [M,1] or absent):
   the general loop, for a transposed A or a transposed B that is not a constant. */
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
    }
    pk_bias(Y, C, M, N, alpha, beta, c_kind);
}

/* A fused Relu or Clip: v in [lo, hi] (NaN gives lo). */
static inline float pk_clamp(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    return v < hi ? v : hi;
}

/* One row of n outputs: a and b step by sa and sb (1, or 0 for a broadcast value), so each op's
   loop is a plain one the compiler vectorizes. */
#define PK_BINARY_ROW(EXPR)                                                                    \
    if (sa == 1 && sb == 1) for (int i = 0; i < n; ++i) { const float a = A[i], b = B[i]; Y[i] = EXPR; } \
    else if (sa == 1 && sb == 0) { const float b = B[0]; for (int i = 0; i < n; ++i) { const float a = A[i]; Y[i] = EXPR; } } \
    else if (sa == 0 && sb == 1) { const float a = A[0]; for (int i = 0; i < n; ++i) { const float b = B[i]; Y[i] = EXPR; } } \
    else for (int i = 0; i < n; ++i) { const float a = A[(size_t)i * sa], b = B[(size_t)i * sb]; Y[i] = EXPR; }

static void pk_binary_row(int op, const float *restrict A, const float *restrict B, float *restrict Y, int n, int sa,
                          int sb) {
    switch (op) {
        case 0: PK_BINARY_ROW(a + b) break;
        case 1: PK_BINARY_ROW(a - b) break;
        case 2: PK_BINARY_ROW(a * b) break;
        case 3: PK_BINARY_ROW(a / b) break;
        case 4: PK_BINARY_ROW(a >= 0.0f ? a : a * b) break;
        case 5: PK_BINARY_ROW(powf(a, b)) break;
        case 6: PK_BINARY_ROW(a != a || b != b ? NAN : a > b ? a : b) break;
        default: PK_BINARY_ROW(a != a || b != b ? NAN : a < b ? a : b)
    }
}

/* Elementwise binary op over a broadcast: strides are 0 along broadcast dims. 0 add, 1 sub, 2 mul,
   3 div, 4 prelu, 5 pow, 6 max, 7 min (NaN wins). The last dim is a row of pk_binary_row. */
static void pk_binary(int op, const float *A, const float *B, float *Y, int ndim, const int *shape,
                      const int *as, const int *bs) {
    int idx[PK_MAX_DIMS] = {0};
    const int last = ndim - 1, n = shape[last];
    size_t rows = 1;
    for (int d = 0; d < last; ++d) rows *= (size_t)shape[d];
    size_t ai = 0, bi = 0;
    for (size_t r = 0; r < rows; ++r) {
        pk_binary_row(op, A + ai, B + bi, Y + r * (size_t)n, n, as[last], bs[last]);
        for (int d = last - 1; d >= 0; --d) {
            ai += (size_t)as[d];
            bi += (size_t)bs[d];
            if (++idx[d] < shape[d]) break;
            ai -= (size_t)as[d] * (size_t)shape[d];
            bi -= (size_t)bs[d] * (size_t)shape[d];
            idx[d] = 0;
        }
    }
}

/* erf as one rational function of x (x clamped to [-4, 4], where float erf is +-1): no branch, so
   a loop of it vectorizes. The coefficients are those TensorFlow's XLA and Eigen use for float;
   within 4.3e-7 (7 ulp) of the exact value. */
static float pk_erf(float x) {
    x = x < -4.0f ? -4.0f : x > 4.0f ? 4.0f : x;
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

#define PK_ERF_BODY(GELU)                                                                      \
    for (size_t i = 0; i < n; ++i) Y[i] = GELU ? 0.5f * X[i] * (1.0f + pk_erf(X[i] * 0.70710678118654752f)) : pk_erf(X[i]);

#if PK_HAS512
PK_W512 static void pk_erf_512(const float *restrict X, float *restrict Y, size_t n, int gelu) {
    if (gelu) {
        PK_ERF_BODY(1)
    } else {
        PK_ERF_BODY(0)
    }
}
#endif

/* Y = erf(X) or (gelu) its Gelu, 16 floats at a time where the CPU has AVX-512. */
static void pk_erf_n(const float *restrict X, float *restrict Y, size_t n, int gelu) {
#if PK_HAS512
    if (pk_wide512()) {
        pk_erf_512(X, Y, n, gelu);
        return;
    }
#endif
    if (gelu) {
        PK_ERF_BODY(1)
    } else {
        PK_ERF_BODY(0)
    }
}

static float pk_softplus(float x) { return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }

/* Elementwise math: 9 abs, 10 exp, 11 log, 12 sqrt, 13 erf, 14 gelu (erf), 15 gelu (tanh),
   16 softplus, 17 softsign, 18 ceil, 19 floor, 20 round (half to even), 21 reciprocal, 22 sin,
   23 cos, 24 elu (alpha p0), 25 selu (alpha p0, gamma p1), 26 celu (alpha p0), 27 thresholded
   relu (alpha p0), 28 sign, 29 mish, 30 tan, 31 asin, 32 acos, 33 atan, 34 sinh, 35 cosh,
   36 asinh, 37 acosh, 38 atanh. */
static void pk_math(int op, const float *restrict X, float *restrict Y, size_t n, float p0, float p1) {
    for (size_t i = 0; i < n; ++i) {
        const float x = X[i];
        float y;
        switch (op) {
            case 9: y = fabsf(x); break;
            case 10: y = expf(x); break;
            case 11: y = logf(x); break;
            case 12: y = sqrtf(x); break;
            case 13: y = pk_erf(x); break;
            case 14: y = 0.5f * x * (1.0f + pk_erf(x * 0.70710678118654752f)); break;
            case 15: y = 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x))); break;
            case 16: y = pk_softplus(x); break;
            case 17: y = x / (1.0f + fabsf(x)); break;
            case 18: y = ceilf(x); break;
            case 19: y = floorf(x); break;
            case 20: y = nearbyintf(x); break;
            case 21: y = 1.0f / x; break;
            case 22: y = sinf(x); break;
            case 23: y = cosf(x); break;
            case 24: y = x > 0.0f ? x : p0 * expm1f(x); break;
            case 25: y = p1 * (x > 0.0f ? x : p0 * expm1f(x)); break;
            case 26: y = (x > 0.0f ? x : 0.0f) + (x < 0.0f ? p0 * expm1f(x / p0) : 0.0f); break;
            case 27: y = x > p0 ? x : 0.0f; break;
            case 28: y = x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x == 0.0f ? 0.0f : x; break;
            case 29: y = x * tanhf(pk_softplus(x)); break;
            case 30: y = tanf(x); break;
            case 31: y = asinf(x); break;
            case 32: y = acosf(x); break;
            case 33: y = atanf(x); break;
            case 34: y = sinhf(x); break;
            case 35: y = coshf(x); break;
            case 36: y = asinhf(x); break;
            case 37: y = acoshf(x); break;
            case 38: y = atanhf(x); break;
            default: y = x;
        }
        Y[i] = y;
    }
}

/* 0 relu, 1 leaky relu, 2 sigmoid, 3 tanh, 4 clip (min > max gives max), 6 neg, 7 hard sigmoid
   (alpha p0, beta p1), 8 hard swish, 9 and up: pk_math; anything else identity; one loop per op
   so each vectorizes. */
static void pk_unary(int op, const float *restrict X, float *restrict Y, size_t n, float p0, float p1) {
    size_t i;
    switch (op) {
        case 0: for (i = 0; i < n; ++i) Y[i] = X[i] > 0.0f ? X[i] : 0.0f; break;
        case 1: for (i = 0; i < n; ++i) Y[i] = X[i] >= 0.0f ? X[i] : p0 * X[i]; break;
        case 2: for (i = 0; i < n; ++i) Y[i] = 1.0f / (1.0f + expf(-X[i])); break;
        case 3: for (i = 0; i < n; ++i) Y[i] = tanhf(X[i]); break;
        case 4:
            for (i = 0; i < n; ++i) {
                const float v = X[i] < p0 ? p0 : X[i];
                Y[i] = v > p1 ? p1 : v;
            }
            break;
        case 6: for (i = 0; i < n; ++i) Y[i] = -X[i]; break;
        case 7:
            for (i = 0; i < n; ++i) {
                const float v = p0 * X[i] + p1;
                Y[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
            break;
        case 8:
            for (i = 0; i < n; ++i) {
                const float v = X[i] / 6.0f + 0.5f;
                Y[i] = X[i] * (v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v);
            }
            break;
        case 13: pk_erf_n(X, Y, n, 0); break;
        case 14: pk_erf_n(X, Y, n, 1); break;
        default:
            if (op >= 9) pk_math(op, X, Y, n, p0, p1);
            else memmove(Y, X, n * sizeof(float));
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
/* A depthwise conv (one input channel per output channel). Each channel's zero-padded image is
   split by the strides into sh x sw phase planes of Wq = ceil(Wp / sw) columns (for stride 1,
   one plane: the padded image), so that every tap (kh, kw) reads one plane at one offset for the
   whole output: out[i] += w * plane[i + off], i over OH rows of Wq, one long loop that
   vectorizes. The Wq - OW columns past each output row are computed and dropped; each plane's
   extra row keeps their reads in bounds. Then bias and [lo, hi] as the rows are compacted. */
/* dst[q] = from[2q] for q in [q0, q1): a row's even (or, from one float on, odd) columns; from[i]
   may be read for first <= i <= last. */
static void pk_even(float *restrict dst, const float *restrict from, int q0, int q1, int first, int last) {
    (void)first;
    (void)last;
    for (int q = q0; q < q1; ++q) dst[q] = from[2 * q] + 0.0f;
}

#if PK_HAS512
typedef float pk_ev16 __attribute__((vector_size(64)));
typedef float pk_ev16u __attribute__((vector_size(64), aligned(4)));
/* ... 16 at a time: two vectors of the row, their even lanes picked by one permute; the last 16
   end at q1 (rewriting some), read from one float earlier (their odd lanes) if the row ends
   before the even ones' last float. */
PK_W512 static void pk_even512(float *restrict dst, const float *restrict from, int q0, int q1, int first,
                               int last) {
    int q = q0;
    for (; q + 16 <= q1 && 2 * q + 31 <= last; q += 16) {
        const pk_ev16 a = *(const pk_ev16u *)(from + 2 * q), b = *(const pk_ev16u *)(from + 2 * q + 16);
        *(pk_ev16u *)(dst + q) = PK_PERM(a, b, PK_EVENS);
    }
    if (q < q1 && q1 - 16 >= q0) {
        const int t = q1 - 16;
        if (2 * t + 31 <= last) {
            const pk_ev16 a = *(const pk_ev16u *)(from + 2 * t), b = *(const pk_ev16u *)(from + 2 * t + 16);
            *(pk_ev16u *)(dst + t) = PK_PERM(a, b, PK_EVENS);
            return;
        }
        if (2 * t - 1 >= first) {
            const pk_ev16 a = *(const pk_ev16u *)(from + 2 * t - 1), b = *(const pk_ev16u *)(from + 2 * t + 15);
            *(pk_ev16u *)(dst + t) = PK_PERM(a, b, PK_ODDS);
            return;
        }
    }
    for (; q < q1; ++q) dst[q] = from[2 * q] + 0.0f;
}
#endif

static void pk_evens(float *restrict dst, const float *restrict from, int q0, int q1, int first, int last) {
#if PK_HAS512
    if (pk_wide512()) {
        pk_even512(dst, from, q0, q1, first, last);
        return;
    }
#endif
    pk_even(dst, from, q0, q1, first, last);
}

/* The padded planes of channel c (zeroed once per call: each channel rewrites the same inside). */
#define PK_DEPTHWISE_PLANES                                                                    \
    const int Hp = (OH - 1) * sh + (KH - 1) * dh + 1, Wp = (OW - 1) * sw + (KW - 1) * dw + 1;   \
    const int Rq = (Hp + sh - 1) / sh, Wq = (Wp + sw - 1) / sw, T = KH * KW;                   \
    const size_t plane = (size_t)(Rq + 1) * Wq, P = (size_t)OH * Wq;                           \
    float *restrict acc = S + (size_t)sh * sw * plane;                                         \
    const float *taps[PK_MAX_TAPS];                                                            \
    for (int kh = 0; kh < KH; ++kh)                                                            \
        for (int kw = 0; kw < KW; ++kw) {                                                      \
            const int ar = kh * dh, ac = kw * dw;                                              \
            taps[kh * KW + kw] = S + (size_t)((ar % sh) * sw + ac % sw) * plane + (size_t)(ar / sh) * Wq + ac / sw; \
        }                                                                                      \
    for (size_t i = 0; i < (size_t)sh * sw * plane; ++i) S[i] = 0.0f;                          \
    int q0s[2], q1s[2]; /* each column phase's first and end q: padded column sw * q + par */  \
    for (int par = 0; par < sw; ++par) {                                                       \
        q0s[par] = pl - par > 0 ? (pl - par + sw - 1) / sw : 0;                                \
        q1s[par] = (Wd + pl - par + sw - 1) / sw < Wq ? (Wd + pl - par + sw - 1) / sw : Wq;     \
    }

#define PK_DEPTHWISE_COPY(EVEN)                                                                \
        const float *restrict x = X + (size_t)c * H * Wd;                                      \
        for (int ih = 0; ih < H; ++ih) {                                                       \
            const int r = ih + pt;                                                             \
            if (r < 0 || r >= Hp) continue;                                                    \
            const float *restrict src = x + (size_t)ih * Wd;                                   \
            const int phase = sh == 2 ? r & 1 : 0, at = sh == 2 ? r >> 1 : r; /* sh is 1 or 2 */  \
            float *restrict row = S + (size_t)phase * sw * plane + (size_t)at * Wq;            \
            for (int par = 0; par < sw; ++par) { /* padded columns j = sw * q + par: iw = j - pl */ \
                const int q0 = q0s[par], q1 = q1s[par];                                        \
                float *restrict dst = row + (size_t)par * plane;                               \
                const float *restrict from = src + par - pl;                                   \
                if (sw == 1) /* constant strides: a plain copy, or the even and odd columns */ \
                    for (int q = q0; q < q1; ++q) dst[q] = from[q] + 0.0f;                     \
                else                                                                           \
                    EVEN(dst, from, q0, q1, pl - par, Wd - 1 - par + pl);                      \
            }                                                                                  \
        }                                                                                      \
        const float *restrict w = W + (size_t)c * T;

#define PK_DEPTHWISE_STORE                                                                     \
        const float b = Bias ? Bias[c] : 0.0f;                                                 \
        for (int oh = 0; oh < OH; ++oh) {                                                      \
            float *restrict y = Y + ((size_t)c * OH + oh) * OW;                                \
            const float *restrict a = acc + (size_t)oh * Wq;                                   \
            if (act)                                                                           \
                for (int ow = 0; ow < OW; ++ow) y[ow] = pk_clamp(a[ow] + b, lo, hi);           \
            else                                                                               \
                for (int ow = 0; ow < OW; ++ow) y[ow] = a[ow] + b;                             \
        }

/* Portable: each tap one pass over the channel's outputs. */
#define PK_DEPTHWISE_BODY                                                                      \
    PK_DEPTHWISE_PLANES                                                                        \
    for (int c = 0; c < C; ++c) {                                                              \
        PK_DEPTHWISE_COPY(pk_even)                                                             \
        for (int t = 0; t < T; ++t) {                                                          \
            const float *restrict tp = taps[t];                                                \
            const float wv = w[t];                                                             \
            if (t == 0)                                                                        \
                for (size_t i = 0; i < P; ++i) acc[i] = wv * tp[i];                            \
            else                                                                               \
                for (size_t i = 0; i < P; ++i) acc[i] += wv * tp[i];                           \
        }                                                                                      \
        PK_DEPTHWISE_STORE                                                                     \
    }

/* With vectors of W floats (V, unaligned VU; VI: int lanes of V's size). A row at least W wide:
   each output row's vectors summed over every tap in registers, then bias and [lo, hi], and
   stored into Y (the last vector ends at OW: it rewrites some outputs with the same values).
   A narrower one: the outputs of all rows at the planes' width Wq, the taps summed in registers
   4 vectors at a time, then compacted as the portable body does. */
#define PK_DW_VEC(V, VU, I, N)                                                                 \
    V s[N];                                                                                    \
    for (int j = 0; j < N; ++j) s[j] = (V){0} + b;                                             \
    for (int t = 0; t < T; ++t) {                                                              \
        const float *restrict tp = taps[t] + (I);                                              \
        const float wv = w[t];                                                                 \
        for (int j = 0; j < N; ++j) s[j] += wv * *(const VU *)(tp + j * (sizeof(V) / 4));      \
    }

#define PK_DW_CLAMP(V, VI, v)                                                                  \
    if (act) {                                                                                 \
        const V l = (V){0} + lo, h = (V){0} + hi;                                              \
        VI below = v < l, above = v > h;                                                       \
        v = (V)(((VI)v & ~below) | ((VI)l & below));                                           \
        v = (V)(((VI)v & ~above) | ((VI)h & above));                                           \
    }

/* Vectors j .. j + N - 1 of output row oh (vector k at column min(k * W, OW - W)). */
#define PK_DW_ROW(V, VU, VI, W, N)                                                             \
    {                                                                                          \
        int o[N];                                                                              \
        for (int k = 0; k < N; ++k) o[k] = (j + k) * W + W <= OW ? (j + k) * W : OW - W;       \
        V s[N];                                                                                \
        for (int k = 0; k < N; ++k) s[k] = (V){0} + b;                                         \
        for (int t = 0; t < T; ++t) {                                                          \
            const float *restrict tp = taps[t] + row;                                          \
            const float wv = w[t];                                                             \
            for (int k = 0; k < N; ++k) s[k] += wv * *(const VU *)(tp + o[k]);                 \
        }                                                                                      \
        for (int k = 0; k < N; ++k) {                                                          \
            PK_DW_CLAMP(V, VI, s[k])                                                           \
            *(VU *)(y + o[k]) = s[k];                                                          \
        }                                                                                      \
    }

#define PK_DEPTHWISE_VBODY(V, VU, VI, W, EVEN)                                                 \
    PK_DEPTHWISE_PLANES                                                                        \
    for (int c = 0; c < C; ++c) {                                                              \
        PK_DEPTHWISE_COPY(EVEN)                                                                \
        const float b = Bias ? Bias[c] : 0.0f;                                                 \
        if (OW >= W) {                                                                         \
            const int nv = (OW + W - 1) / W; /* vectors per output row, the last ending at OW */ \
            for (int oh = 0; oh < OH; ++oh) {                                                  \
                float *restrict y = Y + ((size_t)c * OH + oh) * OW;                            \
                const size_t row = (size_t)oh * Wq;                                            \
                for (int j = 0; j < nv;) { /* groups of 2 to 4 vectors: as many chains of adds */ \
                    const int left = nv - j, g = left == 5 ? 3 : left > 4 ? 4 : left;          \
                    switch (g) {                                                               \
                        case 4: PK_DW_ROW(V, VU, VI, W, 4) break;                              \
                        case 3: PK_DW_ROW(V, VU, VI, W, 3) break;                              \
                        case 2: PK_DW_ROW(V, VU, VI, W, 2) break;                              \
                        default: PK_DW_ROW(V, VU, VI, W, 1)                                    \
                    }                                                                          \
                    j += g;                                                                    \
                }                                                                              \
            }                                                                                  \
            continue;                                                                          \
        }                                                                                      \
        size_t i = 0;                                                                          \
        for (; i + 4 * W <= P; i += 4 * W) {                                                   \
            PK_DW_VEC(V, VU, i, 4)                                                             \
            for (int j = 0; j < 4; ++j) *(VU *)(acc + i + j * W) = s[j];                   \
        }                                                                                      \
        while (i < P) { /* the last vector ends at P (it recomputes some sums) */              \
            i = i + W <= P ? i : P >= W ? P - W : 0;                                           \
            if (i + W > P) break;                                                              \
            PK_DW_VEC(V, VU, i, 1)                                                             \
            *(VU *)(acc + i) = s[0];                                                       \
            i += W;                                                                            \
        }                                                                                      \
        for (int j = (int)i; j < (int)P; ++j) { /* fewer than W outputs in all */              \
            float s0 = b;                                                                      \
            for (int t = 0; t < T; ++t) s0 += w[t] * taps[t][j];                               \
            acc[j] = s0;                                                                       \
        }                                                                                      \
        for (int oh = 0; oh < OH; ++oh) { /* bias added: the rows compacted, then [lo, hi] */  \
            float *restrict y = Y + ((size_t)c * OH + oh) * OW;                                \
            const float *restrict a = acc + (size_t)oh * Wq;                                   \
            if (act)                                                                           \
                for (int ow = 0; ow < OW; ++ow) y[ow] = pk_clamp(a[ow], lo, hi);               \
            else                                                                               \
                for (int ow = 0; ow < OW; ++ow) y[ow] = a[ow];                                 \
        }                                                                                      \
    }

#if defined(__GNUC__) && !defined(PK_PLAIN_C)
typedef float pk_dv4 __attribute__((vector_size(16)));
typedef float pk_dv4u __attribute__((vector_size(16), aligned(4)));
typedef int pk_dv4i __attribute__((vector_size(16)));
static void pk_depthwise(const float *restrict X, const float *restrict W, const float *restrict Bias,
                         float *restrict Y, float *restrict S, int C, int H, int Wd, int OH, int OW, int KH, int KW,
                         int pt, int pl, int sh, int sw, int dh, int dw, int act, float lo, float hi) {
    PK_DEPTHWISE_VBODY(pk_dv4, pk_dv4u, pk_dv4i, 4, pk_even)
}
#else
static void pk_depthwise(const float *restrict X, const float *restrict W, const float *restrict Bias,
                         float *restrict Y, float *restrict S, int C, int H, int Wd, int OH, int OW, int KH, int KW,
                         int pt, int pl, int sh, int sw, int dh, int dw, int act, float lo, float hi) {
    PK_DEPTHWISE_BODY
}
#endif

#if PK_HAS512
typedef float pk_dv16 __attribute__((vector_size(64)));
typedef float pk_dv16u __attribute__((vector_size(64), aligned(4)));
typedef int pk_dv16i __attribute__((vector_size(64)));
PK_W512 static void pk_depthwise_512(
    const float *restrict X, const float *restrict W, const float *restrict Bias, float *restrict Y,
    float *restrict S, int C, int H, int Wd, int OH, int OW, int KH, int KW, int pt, int pl, int sh, int sw, int dh,
    int dw, int act, float lo, float hi) {
    PK_DEPTHWISE_VBODY(pk_dv16, pk_dv16u, pk_dv16i, 16, pk_even512)
}
#endif

static void pk_conv2d(const float *restrict X, const float *restrict W, const float *restrict Bias, float *restrict Y,
                      int C, int H, int Wd, int M, int OH, int OW, int KH, int KW, int pt, int pl,
                      int sh, int sw, int dh, int dw, int group, float lo, float hi, float *restrict S) {
    const int cg = C / group, mg = M / group, act = lo > -INFINITY || hi < INFINITY;
    if (S && group == C && M == C && sw <= 2 && sh <= 2 && KH * KW <= PK_MAX_TAPS) {
#if PK_HAS512
        if (pk_wide512()) {
            pk_depthwise_512(X, W, Bias, Y, S, C, H, Wd, OH, OW, KH, KW, pt, pl, sh, sw, dh, dw, act, lo, hi);
            return;
        }
#endif
        pk_depthwise(X, W, Bias, Y, S, C, H, Wd, OH, OW, KH, KW, pt, pl, sh, sw, dh, dw, act, lo, hi);
        return;
    }
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
                    /* the outputs whose tap falls inside the row: ow in [first, end), no test per element */
                    const int off = kw * dw - pl;
                    const int first = off >= 0 ? 0 : (-off + sw - 1) / sw;
                    const int end = Wd - 1 - off < 0 ? 0 : ((Wd - 1 - off) / sw + 1 < OW ? (Wd - 1 - off) / sw + 1 : OW);
                    for (int oh = 0; oh < OH; ++oh) {
                        const int ih = oh * sh - pt + kh * dh;
                        if (ih < 0 || ih >= H) continue;
                        float *restrict yr = y + (size_t)oh * OW;
                        const float *restrict xr = x + (size_t)ih * Wd;
                        if (sw == 1)
                            for (int ow = first; ow < end; ++ow) yr[ow] += wv * xr[ow + off];
                        else
                            for (int ow = first; ow < end; ++ow) yr[ow] += wv * xr[ow * sw + off];
                    }
                }
        }
        if (act)
            for (int i = 0; i < OH * OW; ++i) y[i] = pk_clamp(y[i], lo, hi);
    }
}

/* Max (kind 0) or average (kind 1; count_include_pad flag) pooling, NCHW, batch 1. */
static void pk_pool2d(int kind, const float *X, float *Y, int C, int H, int Wd, int OH, int OW, int KH, int KW,
                      int pt, int pl, int sh, int sw, int dh, int dw, int include_pad) {
    if (kind == 0 && KH == 2 && KW == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1 && pt == 0 && pl == 0 &&
        2 * OH <= H && 2 * OW <= Wd) { /* the common 2x2/2 max pool: every window inside the image */
        for (int c = 0; c < C; ++c)
            for (int oh = 0; oh < OH; ++oh) {
                const float *restrict r0 = X + ((size_t)c * H + 2 * oh) * Wd, *restrict r1 = r0 + Wd;
                float *restrict y = Y + ((size_t)c * OH + oh) * OW;
                for (int ow = 0; ow < OW; ++ow) {
                    const float a = r0[2 * ow] > r0[2 * ow + 1] ? r0[2 * ow] : r0[2 * ow + 1];
                    const float b = r1[2 * ow] > r1[2 * ow + 1] ? r1[2 * ow] : r1[2 * ow + 1];
                    y[ow] = a > b ? a : b;
                }
            }
        return;
    }
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

/* A coordinate reflected by the near border until it lies within [lo, hi] (GridSample). */
static double pk_reflect(double x, double lo, double hi) {
    const double range = hi - lo;
    if (x < lo) {
        const double dx = lo - x;
        const long n = (long)(dx / range);
        const double r = dx - (double)n * range;
        return n % 2 == 0 ? lo + r : hi - r;
    }
    if (x > hi) {
        const double dx = x - hi;
        const long n = (long)(dx / range);
        const double r = dx - (double)n * range;
        return n % 2 == 0 ? hi - r : lo + r;
    }
    return x;
}

/* The activations of the recurrent layers, by code: Sigmoid, Tanh, Relu. */
static float pk_activate(int code, float x) {
    return code == 0 ? 1.0f / (1.0f + expf(-x)) : code == 1 ? tanhf(x) : (x > 0.0f ? x : 0.0f);
}

/* float -> an 8-bit float format, through its table of positive values (codes 0..top, ascending):
   the nearest, ties to the even code; NaN to `nan`; beyond the largest value (infinities too) to
   it when saturating, else to `over` (the format's infinity or NaN); -0 to 0 where the format has
   no negative zero. `sign_bit`: 0x80, or 0x08 for the 4-bit float. */
static uint8_t pk_to_f8(float x, const float *pos, int top, int nan, int over, int saturate, int negzero,
                        int sign_bit) {
    if (x != x) return (uint8_t)nan;
    const int sign = signbit(x) ? sign_bit : 0;
    const double a = fabs((double)x);
    int code;
    if (a > pos[top]) {
        if (!saturate && a >= (double)pos[top] + ((double)pos[top] - pos[top - 1]) / 2)
            return (uint8_t)(over == sign_bit ? over : over | sign);
        code = top;
    } else {
        int lo = 0, hi = top;
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (pos[mid] <= a) lo = mid; else hi = mid - 1;
        }
        code = lo;
        if (code < top && pos[code] != a) {
            const double down = a - pos[code], up = pos[code + 1] - a;
            if (up < down || (up == down && (code & 1))) ++code;
        }
    }
    if (code == 0 && !negzero) return 0;
    return (uint8_t)(code | sign);
}

/* The element types besides float: tensors of these live in the float arena too, so they alias it. */
typedef double pk_float64 __attribute__((may_alias));
typedef int64_t pk_int64 __attribute__((may_alias));
typedef int32_t pk_int32 __attribute__((may_alias));
typedef int16_t pk_int16 __attribute__((may_alias));
typedef int8_t pk_int8 __attribute__((may_alias));
typedef uint64_t pk_uint64 __attribute__((may_alias));
typedef uint32_t pk_uint32 __attribute__((may_alias));
typedef uint16_t pk_uint16 __attribute__((may_alias));
typedef uint8_t pk_uint8 __attribute__((may_alias));
typedef uint16_t pk_float16 __attribute__((may_alias)); /* IEEE binary16, as its bits */

/* binary16 <-> float: exact one way; to binary16 rounds to nearest even, NaN stays NaN. */
static float pk_h2f(pk_float16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (!man) {
        bits = sign;
    } else { /* subnormal: normalise */
        uint32_t e = 113u;
        while (!(man & 0x400u)) { man <<= 1; --e; }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* bfloat16 <-> float: the high half of the float's bits, rounded to nearest even; NaN stays NaN. */
static float pk_bf2f(pk_float16 h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static pk_float16 pk_f2bf(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (pk_float16)((x >> 16) | 0x40u);
    return (pk_float16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static pk_float16 pk_f2h(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (pk_float16)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (pk_float16)(sign | 0x7c00u); /* 65520 and up round to infinity */
    if (a >= 0x38800000u) { /* a normal binary16 */
        const uint32_t m = a - 0x38000000u;
        return (pk_float16)(sign | ((m + 0xfffu + ((m >> 13) & 1u)) >> 13));
    }
    return (pk_float16)(sign | (uint32_t)rintf(fabsf(f) * 16777216.0f)); /* subnormal, in units of 2^-24 */
}

/* One definition of a kernel for each element type a library computes on (bool is uint8_t):
   NAME(float) for float32 and NAME_<type> for the others, e.g. pk_transpose_int64. */
#define PK_TYPED(DEFINE, NAME) \
    DEFINE(NAME, float) DEFINE(NAME##_float64, pk_float64) DEFINE(NAME##_int64, pk_int64) \
    DEFINE(NAME##_int32, pk_int32) DEFINE(NAME##_int16, pk_int16) DEFINE(NAME##_int8, pk_int8) \
    DEFINE(NAME##_uint64, pk_uint64) DEFINE(NAME##_uint32, pk_uint32) DEFINE(NAME##_uint16, pk_uint16) \
    DEFINE(NAME##_uint8, pk_uint8) DEFINE(NAME##_float16, pk_float16)

/* General transpose: out[i] over out shape; in strides permuted. */
#define PK_TRANSPOSE(NAME, T) \
static void NAME(const T *X, T *Y, int ndim, const int *oshape, const int *istrides_perm) { \
    int idx[PK_MAX_DIMS] = {0}; \
    const int last = ndim - 1, n = oshape[last], step = istrides_perm[last]; \
    size_t rows = 1, xi = 0; \
    for (int d = 0; d < last; ++d) rows *= (size_t)oshape[d]; \
    for (size_t r = 0; r < rows; ++r) { /* a row of the output: a run of X, or every step-th of X */ \
        T *restrict y = Y + r * (size_t)n; \
        if (step == 1) memcpy(y, X + xi, (size_t)n * sizeof(T)); \
        else for (int i = 0; i < n; ++i) y[i] = X[xi + (size_t)i * step]; \
        for (int d = last - 1; d >= 0; --d) { \
            xi += (size_t)istrides_perm[d]; \
            if (++idx[d] < oshape[d]) break; \
            xi -= (size_t)istrides_perm[d] * (size_t)oshape[d]; \
            idx[d] = 0; \
        } \
    } \
}
PK_TYPED(PK_TRANSPOSE, pk_transpose)

/* Concat along an axis: parts[i] with size axis_sizes[i] * inner, outer blocks; `size`: bytes
   per element. */
static void pk_concat(const void **parts, const int *axis_sizes, int nparts, void *Y, int outer, int inner,
                      size_t size) {
    size_t off = 0;
    for (int o = 0; o < outer; ++o)
        for (int p = 0; p < nparts; ++p) {
            const size_t n = (size_t)axis_sizes[p] * inner * size;
            memcpy((char *)Y + off, (const char *)parts[p] + (size_t)o * n, n);
            off += n;
        }
}

/* The offset in an operand with strides `st` (0 along a broadcast dim) of element i of a tensor
   of `shape`: elementwise ops of the types without a kernel of their own. */
static size_t pk_at(size_t i, int nd, const int *shape, const long *st) {
    size_t o = 0;
    for (int d = nd - 1; d >= 0; --d) {
        o += (i % (size_t)shape[d]) * (size_t)st[d];
        i /= (size_t)shape[d];
    }
    return o;
}

/* ---- ai.onnx.ml ---- */

/* A tree node: threshold, feature, then the true and false children's indexes (a leaf: itself). */
typedef struct {
    float thr;
    int feat, yes, no;
} pk_tnode;

#define PK_STEP(i) i = x[nodes[i].feat] <= nodes[i].thr ? nodes[i].yes : nodes[i].no

/* Sums (or min/max) the leaf votes of every tree into scores[0..n), in tree order (dense: each
   leaf's votes are n weights from weight + vstart[leaf]; else vcount (class, weight) pairs). Node flags:
   mode in the low 3 bits (0 <=, 1 <, 2 >=, 3 >, 4 ==, 5 !=, 6 leaf), 8 = a missing value goes
   the true way. With only <= splits, four trees are walked in lockstep for their deepest depth
   (leaves point at themselves), so their loads overlap instead of waiting on each other. */
static void pk_trees(const pk_tnode *nodes, const unsigned char *flags, const int *roots, const int *depth,
                     int ntrees, const int *vstart, const int *vcount, const int *vote, const float *weight,
                     int dense, const float *x, float *scores, int n, int aggregate, int all_leq) {
    unsigned char seen[256];
    int leaf[4];
    for (int i = 0; i < n; ++i) { scores[i] = 0.0f; if (i < 256) seen[i] = 0; }
    for (int t = 0; t < ntrees; t += 4) {
        const int group = ntrees - t < 4 ? ntrees - t : 4;
        if (all_leq && group == 4) {
            int i0 = roots[t], i1 = roots[t + 1], i2 = roots[t + 2], i3 = roots[t + 3];
            int d = depth[t];
            for (int g = 1; g < 4; ++g) d = depth[t + g] > d ? depth[t + g] : d;
            for (int s = 0; s < d; ++s) { PK_STEP(i0); PK_STEP(i1); PK_STEP(i2); PK_STEP(i3); }
            leaf[0] = i0, leaf[1] = i1, leaf[2] = i2, leaf[3] = i3;
        } else {
            for (int g = 0; g < group; ++g) {
                int i = roots[t + g];
                while ((flags[i] & 7) != 6) {
                    const float v = x[nodes[i].feat], th = nodes[i].thr;
                    int go;
                    switch (flags[i] & 7) {
                        case 0: go = v <= th; break;
                        case 1: go = v < th; break;
                        case 2: go = v >= th; break;
                        case 3: go = v > th; break;
                        case 4: go = v == th; break;
                        default: go = v != th; break;
                    }
                    if (isnan(v) && (flags[i] & 8)) go = 1;
                    i = go ? nodes[i].yes : nodes[i].no;
                }
                leaf[g] = i;
            }
        }
        if (dense) { /* each leaf: n weights, zeros where it casts no vote (sum and average only) */
            for (int g = 0; g < group; ++g) {
                const float *restrict w = weight + vstart[leaf[g]];
                for (int k = 0; k < n; ++k) scores[k] += w[k];
            }
            continue;
        }
        if (aggregate < 2) { /* sum and average: no first-vote bookkeeping */
            for (int g = 0; g < group; ++g) {
                const int *restrict v = vote + vstart[leaf[g]];
                const float *restrict w = weight + vstart[leaf[g]];
                for (int k = 0, count = vcount[leaf[g]]; k < count; ++k) scores[v[k]] += w[k];
            }
            continue;
        }
        for (int g = 0; g < group; ++g)
            for (int k = vstart[leaf[g]]; k < vstart[leaf[g]] + vcount[leaf[g]]; ++k) {
                const int c = vote[k];
                if (aggregate < 2 || (c < 256 && !seen[c])) scores[c] = aggregate < 2 ? scores[c] + weight[k] : weight[k];
                else if (aggregate == 2) scores[c] = weight[k] < scores[c] ? weight[k] : scores[c];
                else scores[c] = weight[k] > scores[c] ? weight[k] : scores[c];
                if (c < 256) seen[c] = 1;
            }
    }
}

static void pk_finish_regression(float *y, int n, const float *base, int aggregate, int ntrees) {
    for (int i = 0; i < n; ++i) {
        if (aggregate == 1) y[i] /= (float)ntrees;
        if (base) y[i] += base[i];
    }
}

static float pk_logistic(float v) {
    const float e = 1.0f / (1.0f + expf(-fabsf(v)));
    return v < 0.0f ? 1.0f - e : e;
}

/* Abramowitz-Stegun style inverse erf, the approximation onnxruntime's ML kernels use for PROBIT. */
static float pk_probit(float v) {
    const float x = 2.0f * v - 1.0f, sgn = x < 0.0f ? -1.0f : 1.0f;
    const float w = (1.0f - x) * (1.0f + x);
    if (w == 0.0f) return 0.0f;
    const float l = logf(w), a = 2.0f / (3.14159265358979323846f * 0.147f) + 0.5f * l, b = l / 0.147f;
    return 1.41421356f * sgn * sqrtf(-a + sqrtf(a * a - b));
}

/* Base values, post transform, the binary expansion of one score, and the arg-max label.
   expand: 0 none, 1 [1-s, s], 2 [-s, s] (or [logistic(-s), logistic(s)]); PROBIT is refused there. */
static void pk_classify(float *s, int n, const float *base, int post, int expand, float threshold,
                        const int64_t *labels, int64_t *label, float *probs) {
    if (base) for (int i = 0; i < n; ++i) s[i] += base[i];
    if (expand) {
        const float v = s[0];
        if (label) *label = labels[v > threshold ? 1 : 0];
        if (expand == 1) { s[0] = 1.0f - v; s[1] = v; }
        else if (post == 1) { s[0] = pk_logistic(-v); s[1] = pk_logistic(v); }
        else { s[0] = -v; s[1] = v; }
        if (probs) { probs[0] = s[0]; probs[1] = s[1]; }
        return;
    }
    if (post == 1) for (int i = 0; i < n; ++i) s[i] = pk_logistic(s[i]);
    else if (post == 4) for (int i = 0; i < n; ++i) s[i] = pk_probit(s[i]);
    else if (post == 2 || post == 3) {
        float mx = -3.402823466e38f, sum = 0.0f, e0 = 0.0f;
        for (int i = 0; i < n; ++i) mx = s[i] > mx ? s[i] : mx;
        e0 = expf(-mx);
        for (int i = 0; i < n; ++i) {
            if (post == 3 && s[i] <= 1e-7f && s[i] >= -1e-7f) s[i] *= e0;
            else { s[i] = expf(s[i] - mx); sum += s[i]; }
        }
        for (int i = 0; i < n; ++i) s[i] /= sum;
    }
    int best = 0;
    for (int i = 1; i < n; ++i) if (s[i] > s[best]) best = i;
    if (label) *label = labels[best];
    if (probs) for (int i = 0; i < n; ++i) probs[i] = s[i];
}

/* Y[r, t] = sum_f X[r, f] * coef[t, f] + bias[t] */
static void pk_linear(const float *X, const float *coef, const float *bias, float *Y, int rows, int targets,
                      int features) {
    for (int r = 0; r < rows; ++r)
        for (int t = 0; t < targets; ++t) {
            float acc = 0.0f;
            for (int f = 0; f < features; ++f) acc += X[(size_t)r * features + f] * coef[(size_t)t * features + f];
            Y[(size_t)r * targets + t] = acc + bias[t];
        }
}

static void pk_scaler(const float *X, float *Y, size_t n, int features, const float *offset, int noff,
                      const float *scale, int nscale) {
    for (size_t i = 0; i < n; ++i) {
        const int f = (int)(i % (size_t)features);
        Y[i] = (X[i] - offset[noff == 1 ? 0 : f]) * scale[nscale == 1 ? 0 : f];
    }
}

/* kind 0 max, 1 L1, 2 L2 over each row */
static void pk_normalize(const float *X, float *Y, int rows, int cols, int kind) {
    for (int r = 0; r < rows; ++r) {
        const float *x = X + (size_t)r * cols;
        float *y = Y + (size_t)r * cols, d = 0.0f;
        for (int c = 0; c < cols; ++c) {
            const float a = fabsf(x[c]);
            if (kind == 0) d = a > d ? a : d;
            else d += kind == 1 ? a : a * a;
        }
        if (kind == 2) d = sqrtf(d);
        d = d > 1e-30f ? d : 1e-30f;
        for (int c = 0; c < cols; ++c) y[c] = x[c] / d;
    }
}

/* ---- blocked matrix product ---- */

/* Y[M,N] = A[M,K] B[K,N], row-major. Blocks of 4 rows x 3 (then 2) vectors of outputs stay in
   registers while K streams by; a row left over takes 8-vector strips when N allows (a batch of
   one), and what is left after that a row-times-matrix loop that the compiler vectorizes. Columns
   left over are covered by one more block ending at N, which rewrites a few columns with the
   very same sums. The same blocks read a stride-1 conv's padded image in place (pk_imatmul).
   With GCC or Clang the blocks use vector extensions (plain C the compiler lowers to SSE, AVX,
   NEON...; no intrinsics), and on x86 an AVX2+FMA version is chosen at run time when the CPU
   has it, as onnxruntime's MLAS does, so the portable x86-64-v2 library is not left at SSE
   speed. Define PK_PLAIN_C for other compilers. */

/* Sums over K are taken in chunks of PK_KC terms, each added to the total: a float error that
   grows with the K terms of a long sum grows with about PK_KC + K / PK_KC instead. */
#ifndef PK_KC
#define PK_KC 32
#endif

#define PK_ROWS_BODY                                                                           \
    for (; m < M; ++m) {                                                                       \
        float *restrict y = Y + (size_t)m * N;                                                 \
        for (int n = n0; n < N; n += 64) {                                                     \
            const int w = N - n < 64 ? N - n : 64;                                             \
            float t[64];                                                                       \
            for (int j = 0; j < w; ++j) y[n + j] = 0.0f;                                       \
            for (int k0 = 0; k0 < K; k0 += PK_KC) {                                            \
                const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;                                \
                for (int j = 0; j < w; ++j) t[j] = 0.0f;                                       \
                for (int k = k0; k < k1; ++k) {                                                \
                    const float a = A[(size_t)m * K + k];                                      \
                    const float *restrict b = B + (size_t)k * N + n;                           \
                    for (int j = 0; j < w; ++j) t[j] += a * b[j];                              \
                }                                                                              \
                for (int j = 0; j < w; ++j) y[n + j] += t[j];                                  \
            }                                                                                  \
        }                                                                                      \
    }

/* Rows m..M, columns n0..N of the product, one row at a time. */
static void pk_rows(const float *restrict A, const float *restrict B, float *restrict Y, int m, int M, int n0,
                    int N, int K) {
    PK_ROWS_BODY
}

/* Where a stride-1 conv reads its input: C channels of HW floats each (the zero-padded image),
   and in each channel the T taps of the kernel at offsets taps[t] (kh * dh * Wp + kw * dw). */
typedef struct {
    int C, T, HW;
    int taps[PK_MAX_TAPS];
} pk_igeom;

#define PK_IROWS_BODY                                                                          \
    const size_t K = (size_t)g->C * g->T;                                                      \
    const int cc = g->T >= PK_KC ? 1 : PK_KC / g->T;                                           \
    for (; m < M; ++m) {                                                                       \
        float *restrict y = Y + (size_t)m * N;                                                 \
        for (int n = n0; n < N; n += 64) {                                                     \
            const int w = N - n < 64 ? N - n : 64;                                             \
            const float *restrict a = A + (size_t)m * K;                                       \
            float t[64];                                                                       \
            for (int j = 0; j < w; ++j) y[n + j] = 0.0f;                                       \
            for (int c0 = 0; c0 < g->C; c0 += cc) {                                            \
                for (int j = 0; j < w; ++j) t[j] = 0.0f;                                       \
                for (int c = c0; c < g->C && c < c0 + cc; ++c)                                 \
                    for (int tap = 0; tap < g->T; ++tap, ++a) {                                \
                        const float *restrict b = B + (size_t)c * g->HW + g->taps[tap] + n;    \
                        for (int j = 0; j < w; ++j) t[j] += *a * b[j];                         \
                    }                                                                          \
                for (int j = 0; j < w; ++j) y[n + j] += t[j];                                  \
            }                                                                                  \
        }                                                                                      \
    }

static void pk_irows(const float *restrict A, const float *restrict B, float *restrict Y, int m, int M, int n0,
                     int N, const pk_igeom *g) {
    PK_IROWS_BODY
}

#if defined(__GNUC__) && !defined(PK_PLAIN_C)
typedef float pk_v4 __attribute__((vector_size(16)));
typedef float pk_v4u __attribute__((vector_size(16), aligned(4)));
typedef float pk_v8 __attribute__((vector_size(32)));
typedef float pk_v8u __attribute__((vector_size(32), aligned(4)));

#define PK_BLOCK_STORE(VU, W)                                                                  \
    if (chunk) {                                                                               \
        c00 += *(VU *)Y; c01 += *(VU *)(Y + W);                                                \
        c10 += *(VU *)(Y + N); c11 += *(VU *)(Y + N + W);                                      \
        c20 += *(VU *)(Y + 2 * (size_t)N); c21 += *(VU *)(Y + 2 * (size_t)N + W);             \
        c30 += *(VU *)(Y + 3 * (size_t)N); c31 += *(VU *)(Y + 3 * (size_t)N + W);             \
    }                                                                                          \
    *(VU *)Y = c00; *(VU *)(Y + W) = c01;                                                      \
    *(VU *)(Y + N) = c10; *(VU *)(Y + N + W) = c11;                                            \
    *(VU *)(Y + 2 * (size_t)N) = c20; *(VU *)(Y + 2 * (size_t)N + W) = c21;                    \
    *(VU *)(Y + 3 * (size_t)N) = c30; *(VU *)(Y + 3 * (size_t)N + W) = c31;

#define PK_BLOCK_BODY(V, VU, W)                                                                \
    for (int k0 = 0, chunk = 0; k0 < K; k0 += PK_KC, chunk = 1) {                              \
        const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;                                        \
        V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0}; \
        for (int k = k0; k < k1; ++k) {                                                        \
            const V b0 = *(const VU *)(B + (size_t)k * N), b1 = *(const VU *)(B + (size_t)k * N + W); \
            const float a0 = A[k], a1 = A[(size_t)K + k], a2 = A[2 * (size_t)K + k], a3 = A[3 * (size_t)K + k]; \
            c00 += a0 * b0; c01 += a0 * b1; c10 += a1 * b0; c11 += a1 * b1;                   \
            c20 += a2 * b0; c21 += a2 * b1; c30 += a3 * b0; c31 += a3 * b1;                   \
        }                                                                                      \
        PK_BLOCK_STORE(VU, W)                                                                  \
    }

/* Y[0..4, 0..8) with 16-byte vectors. */
static void pk_block8(const float *restrict A, const float *restrict B, float *restrict Y, int N, int K) {
    PK_BLOCK_BODY(pk_v4, pk_v4u, 4)
}

/* The same block for a stride-1 conv read in place (see pk_conv2d_gemm): row k = (c, kh, kw) of
   the virtual im2col matrix starts at B + c * HW + kh * dh * Wp + kw * dw. */
#define PK_IBLOCK_BODY(V, VU, W)                                                               \
    const size_t K = (size_t)g->C * g->T;                                                      \
    const int cc = g->T >= PK_KC ? 1 : PK_KC / g->T;                                           \
    const float *restrict a = A;                                                               \
    for (int c0 = 0, chunk = 0; c0 < g->C; c0 += cc, chunk = 1) {                              \
        V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0}; \
        for (int c = c0; c < g->C && c < c0 + cc; ++c) {                                       \
            const float *restrict bc = B + (size_t)c * g->HW;                                  \
            for (int tap = 0; tap < g->T; ++tap, ++a) {                                        \
                const float *restrict b = bc + g->taps[tap];                                   \
                const V b0 = *(const VU *)b, b1 = *(const VU *)(b + W);                        \
                const float a0 = a[0], a1 = a[K], a2 = a[2 * K], a3 = a[3 * K];                \
                c00 += a0 * b0; c01 += a0 * b1; c10 += a1 * b0; c11 += a1 * b1;               \
                c20 += a2 * b0; c21 += a2 * b1; c30 += a3 * b0; c31 += a3 * b1;               \
            }                                                                                  \
        }                                                                                      \
        PK_BLOCK_STORE(VU, W)                                                                  \
    }

static void pk_iblock8(const float *restrict A, const float *restrict B, float *restrict Y, int N,
                       const pk_igeom *g) {
    PK_IBLOCK_BODY(pk_v4, pk_v4u, 4)
}

#define PK_INLINE __attribute__((always_inline)) inline /* one call per block costs more than its setup */
#if defined(__x86_64__) && !defined(__AVX2__)
#define PK_DISPATCH 1
#define PK_WIDE __attribute__((target("avx2,fma")))
#else
#define PK_DISPATCH 0
#define PK_WIDE
#endif

/* Y[0..4, 0..16) with 32-byte vectors: one AVX register each on x86. */
PK_WIDE PK_INLINE static void pk_block16(const float *restrict A, const float *restrict B, float *restrict Y, int N, int K) {
    PK_BLOCK_BODY(pk_v8, pk_v8u, 8)
}

/* Y[0..4, 0..24) in twelve accumulators, three column vectors and one broadcast: the sixteen
   AVX registers, and fewer loads per multiply-add than 4 x 16. */
PK_WIDE PK_INLINE static void pk_block24(const float *restrict A, const float *restrict B, float *restrict Y, int N,
                                         int K) {
    for (int k0 = 0; k0 < K; k0 += PK_KC) {
        const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;
        pk_v8 acc[4][3] = {{{0}}};
        for (int k = k0; k < k1; ++k) {
            const float *restrict b = B + (size_t)k * N;
            const pk_v8 b0 = *(const pk_v8u *)b, b1 = *(const pk_v8u *)(b + 8), b2 = *(const pk_v8u *)(b + 16);
            for (int i = 0; i < 4; ++i) {
                const float ai = A[(size_t)i * K + k];
                acc[i][0] += ai * b0; acc[i][1] += ai * b1; acc[i][2] += ai * b2;
            }
        }
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 3; ++j) {
                pk_v8u *y = (pk_v8u *)(Y + (size_t)i * N + 8 * j);
                *y = k0 ? *y + acc[i][j] : acc[i][j];
            }
    }
}

PK_WIDE static void pk_rows_wide(const float *restrict A, const float *restrict B, float *restrict Y, int m, int M,
                                 int n0, int N, int K) {
    PK_ROWS_BODY
}

/* One row of the product, Y[0, 0..64), in eight registers: a batch of one meets every layer here. */
PK_WIDE static void pk_strip64(const float *restrict A, const float *restrict B, float *restrict Y, int N, int K) {
    for (int k0 = 0; k0 < K; k0 += PK_KC) {
        const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;
        pk_v8 c[8] = {{0}};
        for (int k = k0; k < k1; ++k) {
            const float a = A[k];
            const float *restrict b = B + (size_t)k * N;
            for (int i = 0; i < 8; ++i) c[i] += a * *(const pk_v8u *)(b + 8 * i);
        }
        for (int i = 0; i < 8; ++i) *(pk_v8u *)(Y + 8 * i) = k0 ? *(const pk_v8u *)(Y + 8 * i) + c[i] : c[i];
    }
}

PK_WIDE static void pk_matmul_wide(const float *restrict A, const float *restrict B, float *restrict Y, int M,
                                   int N, int K) {
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        int n = 0;
        for (; n + 24 <= N; n += 24) pk_block24(A + (size_t)m * K, B + n, Y + (size_t)m * N + n, N, K);
        for (; n + 16 <= N; n += 16) pk_block16(A + (size_t)m * K, B + n, Y + (size_t)m * N + n, N, K);
        /* Columns left over: one more block ending at N when N allows (it rewrites some columns
           with the very same sums), else the row loop. */
        if (n < N && N >= 16) pk_block16(A + (size_t)m * K, B + N - 16, Y + (size_t)m * N + N - 16, N, K);
        else if (n < N) pk_rows_wide(A, B, Y, m, m + 4, n, N, K);
    }
    if (N < 64) {
        pk_rows_wide(A, B, Y, m, M, 0, N, K);
        return;
    }
    for (; m < M; ++m) {
        int n = 0;
        for (; n + 64 <= N; n += 64) pk_strip64(A + (size_t)m * K, B + n, Y + (size_t)m * N + n, N, K);
        if (n < N) pk_strip64(A + (size_t)m * K, B + N - 64, Y + (size_t)m * N + N - 64, N, K);
    }
}

PK_WIDE PK_INLINE static void pk_iblock16(const float *restrict A, const float *restrict B, float *restrict Y, int N,
                                const pk_igeom *g) {
    PK_IBLOCK_BODY(pk_v8, pk_v8u, 8)
}

/* pk_block24 over a stride-1 conv's padded image (pk_iblock16). */
PK_WIDE PK_INLINE static void pk_iblock24(const float *restrict A, const float *restrict B, float *restrict Y, int N,
                                          const pk_igeom *g) {
    const size_t K = (size_t)g->C * g->T;
    const int cc = g->T >= PK_KC ? 1 : PK_KC / g->T;
    const float *restrict a = A;
    for (int c0 = 0; c0 < g->C; c0 += cc) {
        pk_v8 acc[4][3] = {{{0}}};
        for (int c = c0; c < g->C && c < c0 + cc; ++c) {
            const float *restrict bc = B + (size_t)c * g->HW;
            for (int tap = 0; tap < g->T; ++tap, ++a) {
                const float *restrict b = bc + g->taps[tap];
                const pk_v8 b0 = *(const pk_v8u *)b, b1 = *(const pk_v8u *)(b + 8), b2 = *(const pk_v8u *)(b + 16);
                for (int i = 0; i < 4; ++i) {
                    const float ai = a[i * K];
                    acc[i][0] += ai * b0; acc[i][1] += ai * b1; acc[i][2] += ai * b2;
                }
            }
        }
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 3; ++j) {
                pk_v8u *y = (pk_v8u *)(Y + (size_t)i * N + 8 * j);
                *y = c0 ? *y + acc[i][j] : acc[i][j];
            }
    }
}

PK_WIDE static void pk_irows_wide(const float *restrict A, const float *restrict B, float *restrict Y, int m,
                                  int M, int n0, int N, const pk_igeom *g) {
    PK_IROWS_BODY
}

PK_WIDE static void pk_imatmul_wide(const float *restrict A, const float *restrict B, float *restrict Y, int M,
                                    int N, const pk_igeom *g) {
    const size_t K = (size_t)g->C * g->T;
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        int n = 0;
        for (; n + 24 <= N; n += 24) pk_iblock24(A + m * K, B + n, Y + (size_t)m * N + n, N, g);
        for (; n + 16 <= N; n += 16) pk_iblock16(A + m * K, B + n, Y + (size_t)m * N + n, N, g);
        if (n < N && N >= 16) pk_iblock16(A + m * K, B + N - 16, Y + (size_t)m * N + N - 16, N, g);
        else if (n < N) pk_irows_wide(A, B, Y, m, m + 4, n, N, g);
    }
    pk_irows_wide(A, B, Y, m, M, 0, N, g);
}

#define PK_DOTS_BODY(V, VU, W)                                                                 \
    for (int m = 0; m < M; ++m)                                                                \
        for (int n = 0; n < N; ++n) {                                                          \
            const float *restrict a = A + (size_t)m * K, *restrict b = Bt + (size_t)n * K;     \
            V acc0 = {0}, acc1 = {0};                                                          \
            int k = 0;                                                                         \
            for (; k + 2 * W <= K; k += 2 * W) {                                               \
                acc0 += *(const VU *)(a + k) * *(const VU *)(b + k);                           \
                acc1 += *(const VU *)(a + k + W) * *(const VU *)(b + k + W);                   \
            }                                                                                  \
            acc0 += acc1;                                                                      \
            float sum = 0.0f;                                                                  \
            for (int i = 0; i < W; ++i) sum += acc0[i];                                        \
            for (; k < K; ++k) sum += a[k] * b[k];                                             \
            Y[(size_t)m * N + n] = sum;                                                        \
        }

PK_WIDE static void pk_dots_wide(const float *restrict A, const float *restrict Bt, float *restrict Y, int M,
                                 int N, int K) {
    PK_DOTS_BODY(pk_v8, pk_v8u, 8)
}

#if PK_HAS512
/* AVX-512: R rows x 64 columns in 4R accumulators of 16 floats (6 x 64: 24 of the 32 registers,
   4 loads and 6 broadcasts per 24 multiply-adds). Picked at run time, as the AVX2 kernels are.
   B's rows are ldb floats apart (N, or 64 in a packed panel, which is prefetched 8 rows ahead:
   the first row block of a panel reads it from memory, the others from the L2 cache), Y's ldy;
   bias (or NULL) is added with the last chunk of sums. */
typedef float pk_v16 __attribute__((vector_size(64)));
typedef float pk_v16u __attribute__((vector_size(64), aligned(4)));
typedef int pk_v16m __attribute__((vector_size(64)));
/* pk_clamp on 16 lanes (a NaN stays NaN, as there). */
PK_W512 PK_INLINE static pk_v16 pk_clamp16(pk_v16 v, float lo, float hi) {
    const pk_v16 l = v - v + lo, h = v - v + hi;
    pk_v16m below = v < l, above = v > h;
    v = (pk_v16)(((pk_v16m)v & ~below) | ((pk_v16m)l & below));
    return (pk_v16)(((pk_v16m)v & ~above) | ((pk_v16m)h & above));
}
#define PK_BLOCK64(NAME, R)                                                                    \
PK_W512 PK_INLINE static void NAME(const float *restrict A, const float *restrict B, int ldb, const float *restrict bias, \
                                   const float *restrict rbias, float *restrict Y, int ldy, int K, int prefetch, \
                                   int act, float lo, float hi) {                              \
    for (int k0 = 0; k0 < K; k0 += PK_KC) {                                                    \
        const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;                                        \
        pk_v16 acc[R][4];                                                                      \
        for (int i = 0; i < R; ++i)                                                            \
            for (int j = 0; j < 4; ++j) acc[i][j] = (pk_v16){0};                               \
        for (int k = k0; k < k1; ++k) {                                                        \
            const float *restrict b = B + (size_t)k * ldb;                                     \
            if (prefetch) { /* a packed panel: its row 8 steps ahead */                        \
                __builtin_prefetch(b + 24 * ldb); __builtin_prefetch(b + 24 * ldb + 16);       \
                __builtin_prefetch(b + 24 * ldb + 32); __builtin_prefetch(b + 24 * ldb + 48);    \
            }                                                                                  \
            const pk_v16 b0 = *(const pk_v16u *)b, b1 = *(const pk_v16u *)(b + 16);            \
            const pk_v16 b2 = *(const pk_v16u *)(b + 32), b3 = *(const pk_v16u *)(b + 48);     \
            for (int i = 0; i < R; ++i) {                                                      \
                const float ai = A[(size_t)i * K + k];                                         \
                acc[i][0] += ai * b0; acc[i][1] += ai * b1; acc[i][2] += ai * b2; acc[i][3] += ai * b3; \
            }                                                                                  \
        }                                                                                      \
        const int last = k1 == K;                                                              \
        for (int i = 0; i < R; ++i)                                                            \
            for (int j = 0; j < 4; ++j) {                                                      \
                pk_v16u *y = (pk_v16u *)(Y + (size_t)i * ldy + 16 * j);                        \
                pk_v16 v = k0 ? *y + acc[i][j] : acc[i][j];                                    \
                if (last && bias) v += *(const pk_v16u *)(bias + 16 * j);                      \
                if (last && rbias) v += rbias[i];                                              \
                if (last && act) v = pk_clamp16(v, lo, hi);                                    \
                *y = v;                                                                        \
            }                                                                                  \
    }                                                                                          \
}
PK_BLOCK64(pk_block6x64, 6)
PK_BLOCK64(pk_block4x64, 4)
PK_BLOCK64(pk_block2x64, 2)
PK_BLOCK64(pk_block1x64, 1)

/* Column panels of 64 outside, every row inside: a panel of B (K x 64) is read from memory once
   and stays in cache while the rows pass over it (the rows of A, few in a transformer's batch of
   tokens, stay there too). The last panel ends at N: it rewrites some columns with the very same
   sums. N >= 64. */
/* Rows of A at a time, a multiple of 6: as many as 1 MiB holds (they stay in the L2 cache while
   the panels of B pass), so a large batch streams the weights from memory a few times, not once
   per 96 rows. */
#define PK_MC(K) ((K) >= 2730 ? 96 : 262144 / (K) / 6 * 6)
/* rbias (or NULL): added to each row's sums; act: then clamped to [lo, hi] (a conv's bias and
   fused Relu/Clip), on each block of Y just after it is stored, while it is in the L1 cache (in
   the blocks themselves the bounds would hold registers the sums need). */
PK_W512 PK_INLINE static void pk_rows_epilogue(float *restrict Y, int ldy, int R, const float *restrict rbias, int act,
                                               float lo, float hi) {
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < 4; ++j) {
            pk_v16u *y = (pk_v16u *)(Y + (size_t)i * ldy + 16 * j);
            pk_v16 v = *y;
            if (rbias) v += rbias[i];
            if (act) v = pk_clamp16(v, lo, hi);
            *y = v;
        }
}

PK_W512 static void pk_matmul_512e(const float *restrict A, const float *restrict B, float *restrict Y, int M,
                                   int N, int K, const float *restrict rbias, int act, float lo, float hi) {
    const int mc = PK_MC(K);
    for (int m0 = 0; m0 < M; m0 += mc) {
        const int m1 = M - m0 < mc ? M : m0 + mc;
        for (int n = 0; n < N; n += 64) {
            const int at = n + 64 <= N ? n : N - 64;
            int m = m0;
#define PK_ROWS64(BLOCK, R)                                                                    \
    BLOCK(A + (size_t)m * K, B + at, N, 0, 0, Y + (size_t)m * N + at, N, K, 0, 0, 0.0f, 0.0f); \
    if (rbias || act) pk_rows_epilogue(Y + (size_t)m * N + at, N, R, rbias ? rbias + m : 0, act, lo, hi);
            for (; m + 6 <= m1; m += 6) { PK_ROWS64(pk_block6x64, 6) }
            for (; m + 4 <= m1; m += 4) { PK_ROWS64(pk_block4x64, 4) }
            for (; m + 2 <= m1; m += 2) { PK_ROWS64(pk_block2x64, 2) }
            for (; m < m1; ++m) { PK_ROWS64(pk_block1x64, 1) }
#undef PK_ROWS64
        }
    }
}

PK_W512 static void pk_matmul_512(const float *restrict A, const float *restrict B, float *restrict Y, int M,
                                  int N, int K) {
    pk_matmul_512e(A, B, Y, M, N, K, 0, 0, 0.0f, 0.0f);
}

/* Narrow products, 16 <= N < 64 (a 1x1 conv on a small image: N = H * W): R rows x V vectors
   of 16 columns, the vectors at columns off[j]; the last one ends at N, and its lanes that the
   one before it covers are masked off (keep) before its sums are added, and stored first. */
typedef int pk_v16i __attribute__((vector_size(64)));
#define PK_NBLOCK(NAME, R, V)                                                                  \
PK_W512 PK_INLINE static void NAME(const float *restrict A, const float *restrict B, float *restrict Y, int N, \
                                   int K, const int *off, pk_v16i keep) {                      \
    for (int k0 = 0; k0 < K; k0 += PK_KC) {                                                    \
        const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;                                        \
        pk_v16 acc[R][V];                                                                      \
        for (int i = 0; i < R; ++i)                                                            \
            for (int j = 0; j < V; ++j) acc[i][j] = (pk_v16){0};                               \
        for (int k = k0; k < k1; ++k) {                                                        \
            pk_v16 b[V];                                                                       \
            for (int j = 0; j < V; ++j) b[j] = *(const pk_v16u *)(B + (size_t)k * N + off[j]); \
            for (int i = 0; i < R; ++i) {                                                      \
                const float ai = A[(size_t)i * K + k];                                         \
                for (int j = 0; j < V; ++j) acc[i][j] += ai * b[j];                            \
            }                                                                                  \
        }                                                                                      \
        for (int i = 0; i < R; ++i) {                                                          \
            acc[i][V - 1] = (pk_v16)((pk_v16i)acc[i][V - 1] & keep);                           \
            for (int j = V - 1; j >= 0; --j) {                                                 \
                pk_v16u *y = (pk_v16u *)(Y + (size_t)i * N + off[j]);                          \
                *y = k0 ? *y + acc[i][j] : acc[i][j];                                          \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}
PK_NBLOCK(pk_nblock12x1, 12, 1)
PK_NBLOCK(pk_nblock1x1, 1, 1)
PK_NBLOCK(pk_nblock12x2, 12, 2)
PK_NBLOCK(pk_nblock1x2, 1, 2)
PK_NBLOCK(pk_nblock8x3, 8, 3)
PK_NBLOCK(pk_nblock1x3, 1, 3)
PK_NBLOCK(pk_nblock6x4, 6, 4)
PK_NBLOCK(pk_nblock1x4, 1, 4)

#define PK_NROWS(BIG, ONE, R)                                                                  \
    for (; m + R <= M; m += R) BIG(A + (size_t)m * K, B, Y + (size_t)m * N, N, K, off, keep); \
    for (; m < M; ++m) ONE(A + (size_t)m * K, B, Y + (size_t)m * N, N, K, off, keep);

PK_W512 static void pk_matmul_512n(const float *restrict A, const float *restrict B, float *restrict Y, int M, int N,
                                   int K) {
    const int V = (N + 15) / 16;
    int off[4], m = 0;
    for (int j = 0; j < V; ++j) off[j] = 16 * j + 16 <= N ? 16 * j : N - 16;
    pk_v16i keep;
    for (int l = 0; l < 16; ++l) keep[l] = V == 1 || off[V - 1] + l >= 16 * (V - 1) ? -1 : 0;
    switch (V) {
        case 1: PK_NROWS(pk_nblock12x1, pk_nblock1x1, 12) break;
        case 2: PK_NROWS(pk_nblock12x2, pk_nblock1x2, 12) break;
        case 3: PK_NROWS(pk_nblock8x3, pk_nblock1x3, 8) break;
        default: PK_NROWS(pk_nblock6x4, pk_nblock1x4, 6)
    }
}

#else
static void pk_matmul_512(const float *A, const float *B, float *Y, int M, int N, int K) { (void)A; (void)B; (void)Y; (void)M; (void)N; (void)K; }
static void pk_matmul_512e(const float *A, const float *B, float *Y, int M, int N, int K, const float *rbias, int act,
                           float lo, float hi) {
    (void)A; (void)B; (void)Y; (void)M; (void)N; (void)K; (void)rbias; (void)act; (void)lo; (void)hi;
}
static void pk_matmul_512n(const float *A, const float *B, float *Y, int M, int N, int K) { (void)A; (void)B; (void)Y; (void)M; (void)N; (void)K; }
#endif

static int pk_wide(void) {
#if defined(PK_NARROW) /* the 16-byte kernels only, as on a CPU without AVX2 */
    return 0;
#elif PK_DISPATCH
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(__AVX__) || defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}
#else
static void pk_block8(const float *restrict A, const float *restrict B, float *restrict Y, int N, int K) {
    float acc[4][8] = {{0}};
    for (int k = 0; k < K; ++k)
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 8; ++j) acc[i][j] += A[(size_t)i * K + k] * B[(size_t)k * N + j];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 8; ++j) Y[(size_t)i * N + j] = acc[i][j];
}
static void pk_matmul_wide(const float *A, const float *B, float *Y, int M, int N, int K) { (void)A; (void)B; (void)Y; (void)M; (void)N; (void)K; }
static void pk_iblock8(const float *restrict A, const float *restrict B, float *restrict Y, int N,
                       const pk_igeom *g) {
    float acc[4][8] = {{0}};
    const size_t K = (size_t)g->C * g->T;
    size_t k = 0;
    for (int c = 0; c < g->C; ++c)
        for (int tap = 0; tap < g->T; ++tap, ++k) {
            const float *b = B + (size_t)c * g->HW + g->taps[tap];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 8; ++j) acc[i][j] += A[i * K + k] * b[j];
        }
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 8; ++j) Y[(size_t)i * N + j] = acc[i][j];
}
static void pk_imatmul_wide(const float *A, const float *B, float *Y, int M, int N, const pk_igeom *g) { (void)A; (void)B; (void)Y; (void)M; (void)N; (void)g; }
static int pk_wide(void) { return 0; }
static void pk_dots_wide(const float *A, const float *Bt, float *Y, int M, int N, int K) { (void)A; (void)Bt; (void)Y; (void)M; (void)N; (void)K; }
static void pk_matmul_512(const float *A, const float *B, float *Y, int M, int N, int K) { (void)A; (void)B; (void)Y; (void)M; (void)N; (void)K; }
static void pk_matmul_512e(const float *A, const float *B, float *Y, int M, int N, int K, const float *rbias, int act,
                           float lo, float hi) {
    (void)A; (void)B; (void)Y; (void)M; (void)N; (void)K; (void)rbias; (void)act; (void)lo; (void)hi;
}
static void pk_matmul_512n(const float *A, const float *B, float *Y, int M, int N, int K) { (void)A; (void)B; (void)Y; (void)M; (void)N; (void)K; }
#define PK_DOTS_BODY(V, VU, W)                                                                 \
    for (int m = 0; m < M; ++m)                                                                \
        for (int n = 0; n < N; ++n) {                                                          \
            float sum = 0.0f;                                                                  \
            for (int k = 0; k < K; ++k) sum += A[(size_t)m * K + k] * Bt[(size_t)n * K + k];   \
            Y[(size_t)m * N + n] = sum;                                                        \
        }
#endif

/* Y[M,N] = A[M,K] Bt[N,K]^T as dot products: for products too narrow for the blocks (a
   classifier's last layer), with B stored transposed so both operands are read in order. */
static void pk_dots(const float *restrict A, const float *restrict Bt, float *restrict Y, int M, int N, int K) {
    if (pk_wide()) {
        pk_dots_wide(A, Bt, Y, M, N, K);
        return;
    }
    PK_DOTS_BODY(pk_v4, pk_v4u, 4)
}

static void pk_matmul(const float *restrict A, const float *restrict B, float *restrict Y, int M, int N, int K) {
    if (N >= 64 && pk_wide512()) {
        pk_matmul_512(A, B, Y, M, N, K);
        return;
    }
    if (N >= 16 && pk_wide512()) {
        pk_matmul_512n(A, B, Y, M, N, K);
        return;
    }
    if (pk_wide()) {
        pk_matmul_wide(A, B, Y, M, N, K);
        return;
    }
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        int n = 0;
        for (; n + 8 <= N; n += 8) pk_block8(A + (size_t)m * K, B + n, Y + (size_t)m * N + n, N, K);
        if (n < N && N >= 8) pk_block8(A + (size_t)m * K, B + N - 8, Y + (size_t)m * N + N - 8, N, K);
        else if (n < N) pk_rows(A, B, Y, m, m + 4, n, N, K);
    }
    pk_rows(A, B, Y, m, M, 0, N, K);
}

/* ---- products with a constant B packed at generation time ----
   Bp holds B[K,N] as panels of 64 columns: panel p is K rows of 64 floats (columns 64p..64p+63),
   but the last, K rows of its width rounded up to 16 (zeros past N), one after the other, so a panel streams from memory in order and the cache's
   prefetcher (and ours) stays ahead of it. Y[M,N] = A[M,K] B (+ bias[N] when bias is not NULL). */
#define PK_PANEL 64

/* Rows m..M of the product, one panel row-strip at a time: the portable path, which the compiler
   vectorizes over the panel's 64 columns. */
#define PK_PACKED_ROWS_BODY                                                                    \
    for (int n = 0; n < N; n += PK_PANEL) {                                                    \
        const int w = N - n < PK_PANEL ? N - n : PK_PANEL, pw = (w + 15) & ~15;                \
        const float *restrict bp = Bp + (size_t)(n / PK_PANEL) * K * PK_PANEL;                 \
        for (int m = m0; m < M; ++m) {                                                         \
            const float *restrict a = A + (size_t)m * K;                                       \
            float acc[PK_PANEL], t[PK_PANEL];                                                  \
            for (int j = 0; j < PK_PANEL; ++j) acc[j] = 0.0f;                                  \
            for (int k0 = 0; k0 < K; k0 += PK_KC) {                                            \
                const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;                                \
                for (int j = 0; j < PK_PANEL; ++j) t[j] = 0.0f;                                \
                if (pw == PK_PANEL)                                                            \
                    for (int k = k0; k < k1; ++k) {                                            \
                        const float *restrict b = bp + (size_t)k * PK_PANEL;                   \
                        for (int j = 0; j < PK_PANEL; ++j) t[j] += a[k] * b[j];                \
                    }                                                                          \
                else                                                                           \
                    for (int k = k0; k < k1; ++k) {                                            \
                        const float *restrict b = bp + (size_t)k * pw;                         \
                        for (int j = 0; j < pw; ++j) t[j] += a[k] * b[j];                      \
                    }                                                                          \
                for (int j = 0; j < PK_PANEL; ++j) acc[j] += t[j];                             \
            }                                                                                  \
            float *restrict y = Y + (size_t)m * N + n;                                         \
            for (int j = 0; j < w; ++j) y[j] = acc[j] + (bias ? bias[n + j] : 0.0f);           \
            if (act)                                                                           \
                for (int j = 0; j < w; ++j) y[j] = pk_clamp(y[j], lo, hi);                     \
        }                                                                                      \
    }

static void pk_packed_rows(const float *restrict A, const float *restrict Bp, const float *restrict bias,
                           float *restrict Y, int m0, int M, int N, int K, int act, float lo, float hi) {
    PK_PACKED_ROWS_BODY
}

#if defined(__GNUC__) && !defined(PK_PLAIN_C)
PK_WIDE static void pk_packed_rows_wide(const float *restrict A, const float *restrict Bp,
                                        const float *restrict bias, float *restrict Y, int m0, int M, int N, int K,
                                        int act, float lo, float hi) {
    PK_PACKED_ROWS_BODY
}
#else
#define pk_packed_rows_wide pk_packed_rows
#endif

#if PK_HAS512
/* Rows m..m1 against one panel; ldy = N for a whole panel, or a 64-wide scratch tile. */
PK_W512 PK_INLINE static void pk_panel512(const float *restrict A, const float *restrict bp,
                                          const float *restrict bias, float *restrict Y, int ldy, int m, int m1,
                                          int K, int act, float lo, float hi) {
#define PK_PANEL64(BLOCK) BLOCK(A + (size_t)m * K, bp, PK_PANEL, bias, 0, Y + (size_t)m * ldy, ldy, K, 1, act, lo, hi)
    for (; m + 6 <= m1; m += 6) PK_PANEL64(pk_block6x64);
    if (m + 4 <= m1) PK_PANEL64(pk_block4x64), m += 4;
    if (m + 2 <= m1) PK_PANEL64(pk_block2x64), m += 2;
    if (m < m1) PK_PANEL64(pk_block1x64);
#undef PK_PANEL64
}

/* The last panel (V = 1 to 4 vectors of 16): R rows x V vectors; of its last vector only the
   lanes in keep are read and written (the columns up to N), so the rows are stored in place. */
#define PK_PBLOCK(NAME, R, V)                                                                  \
PK_W512 PK_INLINE static void NAME(const float *restrict A, const float *restrict B, const float *restrict bias, \
                                   float *restrict Y, int ldy, int K, int act, float lo, float hi, \
                                   __mmask16 keep) {                                           \
    pk_v16 part[R][V];                                                                         \
    for (int k0 = 0; k0 < K; k0 += PK_KC) {                                                    \
        const int k1 = K - k0 < PK_KC ? K : k0 + PK_KC;                                        \
        pk_v16 acc[R][V];                                                                      \
        for (int i = 0; i < R; ++i)                                                            \
            for (int j = 0; j < V; ++j) acc[i][j] = (pk_v16){0};                               \
        for (int k = k0; k < k1; ++k) {                                                        \
            pk_v16 b[V];                                                                       \
            for (int j = 0; j < V; ++j) b[j] = *(const pk_v16u *)(B + (size_t)k * 16 * V + 16 * j); \
            for (int i = 0; i < R; ++i) {                                                      \
                const float ai = A[(size_t)i * K + k];                                         \
                for (int j = 0; j < V; ++j) acc[i][j] += ai * b[j];                            \
            }                                                                                  \
        }                                                                                      \
        for (int i = 0; i < R; ++i)                                                            \
            for (int j = 0; j < V; ++j) {                                                      \
                float *y = Y + (size_t)i * ldy + 16 * j;                                       \
                const __mmask16 lanes = j == V - 1 ? keep : (__mmask16)0xFFFF;                 \
                pk_v16 v = acc[i][j];                                                          \
                /* the sums so far wait in part, not in Y: Y's rows may straddle cache lines, */ \
                /* and a load from a masked store is not forwarded (it would stall each chunk) */ \
                if (k0) v += part[i][j];                                                       \
                if (k1 < K) {                                                                  \
                    part[i][j] = v;                                                            \
                    continue;                                                                  \
                }                                                                              \
                if (bias) v += (pk_v16)_mm512_maskz_loadu_ps(lanes, bias + 16 * j);            \
                if (act) v = pk_clamp16(v, lo, hi);                                            \
                _mm512_mask_storeu_ps(y, lanes, (__m512)v);                                    \
            }                                                                                  \
    }                                                                                          \
}
PK_PBLOCK(pk_pblock12x1, 12, 1)
PK_PBLOCK(pk_pblock1x1, 1, 1)
PK_PBLOCK(pk_pblock12x2, 12, 2)
PK_PBLOCK(pk_pblock1x2, 1, 2)
PK_PBLOCK(pk_pblock8x3, 8, 3)
PK_PBLOCK(pk_pblock1x3, 1, 3)
PK_PBLOCK(pk_pblock6x4, 6, 4)
PK_PBLOCK(pk_pblock1x4, 1, 4)

#define PK_PROWS(BIG, ONE, R)                                                                  \
    for (; m + R <= m1; m += R) BIG(A + (size_t)m * K, bp, bias, Y + (size_t)m * ldy, ldy, K, act, lo, hi, keep); \
    for (; m < m1; ++m) ONE(A + (size_t)m * K, bp, bias, Y + (size_t)m * ldy, ldy, K, act, lo, hi, keep);

/* Rows m..m1 against the last panel, w columns (V = ceil(w / 16) vectors; its bias: w floats, or
   NULL). */
PK_W512 static void pk_last_panel512(const float *restrict A, const float *restrict bp, const float *restrict bias,
                                     float *restrict Y, int ldy, int m, int m1, int K, int w, int act, float lo,
                                     float hi) {
    const int V = (w + 15) / 16;
    const __mmask16 keep = (__mmask16)(w % 16 ? (1u << (w % 16)) - 1 : 0xFFFFu);
    switch (V) {
        case 1: PK_PROWS(pk_pblock12x1, pk_pblock1x1, 12) break;
        case 2: PK_PROWS(pk_pblock12x2, pk_pblock1x2, 12) break;
        case 3: PK_PROWS(pk_pblock8x3, pk_pblock1x3, 8) break;
        default: PK_PROWS(pk_pblock6x4, pk_pblock1x4, 6)
    }
}

PK_W512 static void pk_matmul_packed512(const float *restrict A, const float *restrict Bp, const float *restrict bias,
                                        float *restrict Y, int M, int N, int K, int act, float lo, float hi) {
    const int mc = PK_MC(K);
    for (int m0 = 0; m0 < M; m0 += mc) {
        const int m1 = M - m0 < mc ? M : m0 + mc;
        for (int n = 0; n < N; n += PK_PANEL) {
            const float *restrict bp = Bp + (size_t)(n / PK_PANEL) * K * PK_PANEL;
            if (n + PK_PANEL <= N)
                pk_panel512(A, bp, bias ? bias + n : 0, Y + n, N, m0, m1, K, act, lo, hi);
            else /* the last panel, part-filled */
                pk_last_panel512(A, bp, bias ? bias + n : 0, Y + n, N, m0, m1, K, N - n, act, lo, hi);
        }
    }
}
#else
static void pk_matmul_packed512(const float *A, const float *Bp, const float *bias, float *Y, int M, int N, int K,
                                int act, float lo, float hi) {
    (void)A; (void)Bp; (void)bias; (void)Y; (void)M; (void)N; (void)K; (void)act; (void)lo; (void)hi;
}
#endif

/* ... then clamped to [lo, hi] when act (a conv's fused Relu or Clip) */
static void pk_matmul_packed_act(const float *restrict A, const float *restrict Bp, const float *restrict bias,
                                 float *restrict Y, int M, int N, int K, int act, float lo, float hi) {
    if (pk_wide512()) pk_matmul_packed512(A, Bp, bias, Y, M, N, K, act, lo, hi);
    else if (pk_wide()) pk_packed_rows_wide(A, Bp, bias, Y, 0, M, N, K, act, lo, hi);
    else pk_packed_rows(A, Bp, bias, Y, 0, M, N, K, act, lo, hi);
}

static void pk_matmul_packed(const float *restrict A, const float *restrict Bp, const float *restrict bias,
                             float *restrict Y, int M, int N, int K) {
    pk_matmul_packed_act(A, Bp, bias, Y, M, N, K, 0, 0.0f, 0.0f);
}

/* Y[cols, rows] = X[rows, cols]^T, in 16 x 16 tiles (a tile's source and destination lines stay
   in the cache while it is copied). */
static void pk_transpose_tiles(const float *restrict X, float *restrict Y, int rows, int cols, int ra, int rb, int ca,
                               int cb) { /* rows [ra, rb) and columns [ca, cb) of X */
    for (int r0 = ra; r0 < rb; r0 += 16)
        for (int c0 = ca; c0 < cb; c0 += 16) {
            const int r1 = rb - r0 < 16 ? rb : r0 + 16, c1 = cb - c0 < 16 ? cb : c0 + 16;
            for (int j = c0; j < c1; ++j)
                for (int r = r0; r < r1; ++r) Y[(size_t)j * rows + r] = X[(size_t)r * cols + j];
        }
}

#if PK_HAS512
typedef float pk_tv16 __attribute__((vector_size(64)));
typedef float pk_tv16u __attribute__((vector_size(64), aligned(4)));
/* With AVX-512, each whole 16 x 16 tile in registers: four rounds of two-source permutes, each
   swapping the off-diagonal blocks of 1, 2, 4 and 8 lanes between rows i and i + s. */
#define PK_LIST(...) __VA_ARGS__
#define PK_SWAP_BLOCKS(S, LO, HI)                                                              \
    for (int i = 0; i < 16; ++i)                                                               \
        if (!(i & S)) {                                                                        \
            const pk_tv16 a = v[i], b = v[i + S];                                              \
            v[i] = PK_PERM(a, b, LO);                                                          \
            v[i + S] = PK_PERM(a, b, HI);                                                      \
        }
PK_W512 static void pk_transpose512(const float *restrict X, float *restrict Y, int rows, int cols) {
    const int R = rows / 16 * 16, Cc = cols / 16 * 16;
    for (int r0 = 0; r0 < R; r0 += 16)
        for (int c0 = 0; c0 < Cc; c0 += 16) {
            pk_tv16 v[16];
            for (int i = 0; i < 16; ++i) v[i] = *(const pk_tv16u *)(X + (size_t)(r0 + i) * cols + c0);
            PK_SWAP_BLOCKS(1, PK_LIST(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
                           PK_LIST(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))
            PK_SWAP_BLOCKS(2, PK_LIST(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
                           PK_LIST(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
            PK_SWAP_BLOCKS(4, PK_LIST(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
                           PK_LIST(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
            PK_SWAP_BLOCKS(8, PK_LIST(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
                           PK_LIST(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
            for (int i = 0; i < 16; ++i) *(pk_tv16u *)(Y + (size_t)(c0 + i) * rows + r0) = v[i];
        }
    pk_transpose_tiles(X, Y, rows, cols, 0, rows, Cc, cols); /* the columns past the last whole tile */
    pk_transpose_tiles(X, Y, rows, cols, R, rows, 0, Cc);    /* the rows past it, in those tiles' columns */
}
#endif

static void pk_transpose_block(const float *restrict X, float *restrict Y, int rows, int cols) {
#if PK_HAS512
    if (pk_wide512()) {
        pk_transpose512(X, Y, rows, cols);
        return;
    }
#endif
    pk_transpose_tiles(X, Y, rows, cols, 0, rows, 0, cols);
}

/* A 1x1 stride-1 conv on a small image (HW positions): the product turned around, the image's
   positions as rows, Y^T[HW, M] = X^T[HW, C] W^T[C, M], so the weights are the packed operand and
   no column block is left part-filled. tin, tout: X, Y are held channels-last ([HW, C], [HW, M]:
   codegen.layout), so X is already X^T, or Y is Y^T; S holds X^T (unless tin), then Y^T (unless
   tout), as temp_floats sizes it.
   [lo, hi] as in pk_conv2d_gemm. */
static void pk_conv1x1_rows(const float *restrict X, const float *restrict Wp, const float *restrict Bias,
                            float *restrict Y, float *restrict S, int C, int HW, int M, float lo, float hi, int tin,
                            int tout) {
    const int act = lo > -INFINITY || hi < INFINITY;
    const float *xt = X;
    float *yt = tout ? Y : tin ? S : S + (((size_t)HW * C + 15) & ~(size_t)15);
    if (!tin) {
        pk_transpose_block(X, S, C, HW);
        xt = S;
    }
    pk_matmul_packed_act(xt, Wp, Bias, yt, HW, M, C, act, lo, hi);
    if (!tout) pk_transpose_block(yt, Y, HW, M);
}

/* A depthwise conv on channels-last tensors (codegen.layout): X [H, W, C], Y [OH, OW, C], Wt
   [KH * KW, C] (each tap's weights as a row): every tap a multiply-add over the C channels of one
   position, which the compiler vectorizes. */
#define PK_DW_TURNED_BODY                                                                      \
    const int act = lo > -INFINITY || hi < INFINITY;                                           \
    for (int oh = 0; oh < OH; ++oh)                                                            \
        for (int ow = 0; ow < OW; ++ow) {                                                      \
            float *restrict y = Y + ((size_t)oh * OW + ow) * C;                                \
            if (Bias) for (int c = 0; c < C; ++c) y[c] = Bias[c];                              \
            else for (int c = 0; c < C; ++c) y[c] = 0.0f;                                      \
            for (int kh = 0; kh < KH; ++kh) {                                                  \
                const int ih = oh * sh - pt + kh * dh;                                         \
                if (ih < 0 || ih >= H) continue;                                               \
                for (int kw = 0; kw < KW; ++kw) {                                              \
                    const int iw = ow * sw - pl + kw * dw;                                     \
                    if (iw < 0 || iw >= Wd) continue;                                          \
                    const float *restrict x = X + ((size_t)ih * Wd + iw) * C;                  \
                    const float *restrict w = Wt + (size_t)(kh * KW + kw) * C;                 \
                    for (int c = 0; c < C; ++c) y[c] += w[c] * x[c];                           \
                }                                                                              \
            }                                                                                  \
            if (act) for (int c = 0; c < C; ++c) y[c] = pk_clamp(y[c], lo, hi);                \
        }

static void pk_depthwise_turned_c(const float *restrict X, const float *restrict Wt, const float *restrict Bias,
                                  float *restrict Y, int C, int H, int Wd, int OH, int OW, int KH, int KW, int pt,
                                  int pl, int sh, int sw, int dh, int dw, float lo, float hi) {
    PK_DW_TURNED_BODY
}

#if PK_HAS512
/* ... with AVX-512: up to 8 vectors of 16 channels of one position summed over its taps in
   registers (8 chains of adds keep both FMA units busy through their latency), the groups of a
   position balanced so none is short; the last vector ends at C (it rewrites some channels with
   the same values). */
#define PK_DWT_VEC(N)                                                                          \
    {                                                                                          \
        int o[N];                                                                              \
        for (int k = 0; k < N; ++k) o[k] = (j + k) * 16 + 16 <= C ? (j + k) * 16 : C - 16;      \
        pk_dv16 s[N];                                                                          \
        for (int k = 0; k < N; ++k) s[k] = Bias ? *(const pk_dv16u *)(Bias + o[k]) : (pk_dv16){0}; \
        for (int kh = 0; kh < KH; ++kh) {                                                      \
            const int ih = oh * sh - pt + kh * dh;                                             \
            if (ih < 0 || ih >= H) continue;                                                   \
            for (int kw = 0; kw < KW; ++kw) {                                                  \
                const int iw = ow * sw - pl + kw * dw;                                         \
                if (iw < 0 || iw >= Wd) continue;                                              \
                const float *restrict x = X + ((size_t)ih * Wd + iw) * C;                      \
                const float *restrict w = Wt + (size_t)(kh * KW + kw) * C;                     \
                for (int k = 0; k < N; ++k) s[k] += *(const pk_dv16u *)(w + o[k]) * *(const pk_dv16u *)(x + o[k]); \
            }                                                                                  \
        }                                                                                      \
        for (int k = 0; k < N; ++k) {                                                          \
            PK_DW_CLAMP(pk_dv16, pk_dv16i, s[k])                                               \
            *(pk_dv16u *)(y + o[k]) = s[k];                                                    \
        }                                                                                      \
    }

/* Four neighbouring positions (ow .. ow + 3, every tap inside the row) at once, N vectors of
   channels each: a tap's weights are loaded once for the four (1.25 loads per multiply-add, not 2). */
#define PK_DWT_QUAD(N)                                                                         \
    {                                                                                          \
        int o[N];                                                                              \
        for (int k = 0; k < N; ++k) o[k] = (j + k) * 16 + 16 <= C ? (j + k) * 16 : C - 16;      \
        pk_dv16 s[4][N];                                                                       \
        for (int k = 0; k < N; ++k) {                                                          \
            const pk_dv16 b0 = Bias ? *(const pk_dv16u *)(Bias + o[k]) : (pk_dv16){0};         \
            for (int q = 0; q < 4; ++q) s[q][k] = b0;                                          \
        }                                                                                      \
        for (int kh = 0; kh < KH; ++kh) {                                                      \
            const int ih = oh * sh - pt + kh * dh;                                             \
            if (ih < 0 || ih >= H) continue;                                                   \
            for (int kw = 0; kw < KW; ++kw) {                                                  \
                const float *restrict x = X + ((size_t)ih * Wd + ow * sw - pl + kw * dw) * C;  \
                const float *restrict w = Wt + (size_t)(kh * KW + kw) * C;                     \
                for (int k = 0; k < N; ++k) {                                                  \
                    const pk_dv16 wk = *(const pk_dv16u *)(w + o[k]);                          \
                    for (int q = 0; q < 4; ++q)                                                \
                        s[q][k] += wk * *(const pk_dv16u *)(x + (size_t)q * sw * C + o[k]);    \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int q = 0; q < 4; ++q)                                                            \
            for (int k = 0; k < N; ++k) {                                                      \
                PK_DW_CLAMP(pk_dv16, pk_dv16i, s[q][k])                                        \
                *(pk_dv16u *)(y + (size_t)q * C + o[k]) = s[q][k];                             \
            }                                                                                  \
    }

PK_W512 static void pk_depthwise_turned512(const float *restrict X, const float *restrict Wt,
                                           const float *restrict Bias, float *restrict Y, int C, int H, int Wd,
                                           int OH, int OW, int KH, int KW, int pt, int pl, int sh, int sw, int dh,
                                           int dw, float lo, float hi) {
    if (C < 16) {
        pk_depthwise_turned_c(X, Wt, Bias, Y, C, H, Wd, OH, OW, KH, KW, pt, pl, sh, sw, dh, dw, lo, hi);
        return;
    }
    const int act = lo > -INFINITY || hi < INFINITY, nv = (C + 15) / 16;
    /* the positions whose taps all fall inside the row: ow in [inner0, inner1) */
    const int last = Wd + pl - (KW - 1) * dw - 1; /* the largest ow * sw whose last tap is inside */
    const int inner0 = (pl + sw - 1) / sw, inner1 = last < 0 ? 0 : last / sw + 1;
    for (int oh = 0; oh < OH; ++oh)
        for (int ow = 0; ow < OW; ++ow) {
            float *restrict y = Y + ((size_t)oh * OW + ow) * C;
            if (ow >= inner0 && ow + 4 <= inner1 && ow + 4 <= OW) {
                for (int j = 0; j < nv;) {
                    const int g = nv - j >= 4 ? 4 : nv - j;
                    switch (g) {
                        case 4: PK_DWT_QUAD(4) break;
                        case 3: PK_DWT_QUAD(3) break;
                        case 2: PK_DWT_QUAD(2) break;
                        default: PK_DWT_QUAD(1)
                    }
                    j += g;
                }
                ow += 3;
                continue;
            }
            for (int j = 0; j < nv;) {
                const int left = nv - j, g = left <= 8 ? left : left < 16 ? (left + 1) / 2 : 8;
                switch (g) {
                    case 8: PK_DWT_VEC(8) break;
                    case 7: PK_DWT_VEC(7) break;
                    case 6: PK_DWT_VEC(6) break;
                    case 5: PK_DWT_VEC(5) break;
                    case 4: PK_DWT_VEC(4) break;
                    case 3: PK_DWT_VEC(3) break;
                    case 2: PK_DWT_VEC(2) break;
                    default: PK_DWT_VEC(1)
                }
                j += g;
            }
        }
}
#else
#define pk_depthwise_turned512 pk_depthwise_turned_c
#endif

static void pk_depthwise_turned(const float *restrict X, const float *restrict Wt, const float *restrict Bias,
                                float *restrict Y, int C, int H, int Wd, int OH, int OW, int KH, int KW, int pt,
                                int pl, int sh, int sw, int dh, int dw, float lo, float hi) {
    if (pk_wide512())
        pk_depthwise_turned512(X, Wt, Bias, Y, C, H, Wd, OH, OW, KH, KW, pt, pl, sh, sw, dh, dw, lo, hi);
    else
        pk_depthwise_turned_c(X, Wt, Bias, Y, C, H, Wd, OH, OW, KH, KW, pt, pl, sh, sw, dh, dw, lo, hi);
}


/* pk_matmul over the virtual im2col matrix of a stride-1 conv (pk_igeom): Y[M,N] = A[M,K] B. */
static void pk_imatmul(const float *restrict A, const float *restrict B, float *restrict Y, int M, int N,
                       const pk_igeom *g) {
    if (pk_wide()) {
        pk_imatmul_wide(A, B, Y, M, N, g);
        return;
    }
    const size_t K = (size_t)g->C * g->T;
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        int n = 0;
        for (; n + 8 <= N; n += 8) pk_iblock8(A + m * K, B + n, Y + (size_t)m * N + n, N, g);
        if (n < N && N >= 8) pk_iblock8(A + m * K, B + N - 8, Y + (size_t)m * N + N - 8, N, g);
        else if (n < N) pk_irows(A, B, Y, m, m + 4, n, N, g);
    }
    pk_irows(A, B, Y, m, M, 0, N, g);
}

/* Y = alpha * Y + beta * C, C as in pk_gemm. */
static void pk_bias(float *restrict Y, const float *restrict C, int M, int N, float alpha, float beta, int c_kind) {
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
            float c = 0.0f;
            if (c_kind == 1) c = C[n];
            else if (c_kind == 2) c = C[(size_t)m * N + n];
            else if (c_kind == 3) c = C[0];
            else if (c_kind == 4) c = C[m];
            Y[(size_t)m * N + n] = alpha * Y[(size_t)m * N + n] + beta * c;
        }
}

/* A conv's output rows (Wp floats apart, before bias) to Y = its 2x2 stride-2 max pool plus bias
   (then Relu): max and bias commute, as do max and Relu. */
#define PK_POOL_ROWS_BODY                                                                      \
    const int PH = OH / 2, PW = OW / 2;                                                        \
    for (int m = 0; m < M; ++m) {                                                              \
        const float b = Bias ? Bias[m] : 0.0f;                                                 \
        for (int i = 0; i < PH; ++i) {                                                         \
            const float *restrict s0 = S + ((size_t)m * OH + 2 * i) * Wp, *restrict s1 = s0 + Wp; \
            float *restrict y = Y + ((size_t)m * PH + i) * PW;                                 \
            for (int j = 0; j < PW; ++j) {                                                     \
                const float u = s0[2 * j] > s0[2 * j + 1] ? s0[2 * j] : s0[2 * j + 1];         \
                const float v = s1[2 * j] > s1[2 * j + 1] ? s1[2 * j] : s1[2 * j + 1];         \
                const float top = (u > v ? u : v) + b;                                         \
                y[j] = act ? pk_clamp(top, lo, hi) : top;                                      \
            }                                                                                  \
        }                                                                                      \
    }

static void pk_pool_rows(const float *restrict S, const float *restrict Bias, float *restrict Y, int M, int OH, int OW,
                         int Wp, int act, float lo, float hi) {
    PK_POOL_ROWS_BODY
}

#if defined(__GNUC__) && !defined(PK_PLAIN_C)
PK_WIDE static void pk_pool_rows_wide(const float *restrict S, const float *restrict Bias, float *restrict Y, int M,
                                      int OH, int OW, int Wp, int act, float lo, float hi) {
    PK_POOL_ROWS_BODY
}
#else
#define pk_pool_rows_wide pk_pool_rows
#endif

/* Conv with one group as a matrix product: col[C*KH*KW, OH*OW] gathered from X (zeros where the
   window leaves the image), then Y[M, OH*OW] = W[M, C*KH*KW] col + bias. col may be NULL for a
   1x1 stride-1 unpadded conv, where X already is that matrix. [lo, hi]: a Relu or Clip fused in
   (-INFINITY, INFINITY: none).
   inplace (stride 1, KH * KW <= PK_MAX_TAPS): no im2col; col holds the zero-padded image (and
   KW * dw floats after it), then the product's rows at the padded width; the product reads each
   window in place, and the first OW columns of its rows are the output. pool (in place only): a
   2x2 stride-2 max pool of the output is written instead. */
static void pk_conv2d_gemm(const float *restrict X, const float *restrict W, const float *restrict Bias,
                           float *restrict Y, float *restrict col, int C, int H, int Wd, int M, int OH, int OW,
                           int KH, int KW, int pt, int pl, int sh, int sw, int dh, int dw, float lo, float hi, int inplace,
                           int pool) {
    const int P = OH * OW, act = lo > -INFINITY || hi < INFINITY;
    if (inplace) {
        const int Hp = OH + (KH - 1) * dh, Wp = OW + (KW - 1) * dw;
        const size_t HW = (size_t)Hp * Wp, image = (size_t)C * HW + (size_t)(KW - 1) * dw;
        float *restrict xp = col, *restrict yp = col + ((image + 15) & ~(size_t)15);
        for (int c = 0; c < C; ++c)
            for (int i = 0; i < Hp; ++i) {
                float *restrict row = xp + c * HW + (size_t)i * Wp;
                const int ih = i - pt;
                if (ih < 0 || ih >= H) {
                    for (int j = 0; j < Wp; ++j) row[j] = 0.0f;
                    continue;
                }
                const float *restrict src = X + ((size_t)c * H + ih) * Wd;
                for (int j = 0; j < pl; ++j) row[j] = 0.0f;
                for (int j = 0; j < Wd; ++j) row[pl + j] = src[j] + 0.0f;
                for (int j = pl + Wd; j < Wp; ++j) row[j] = 0.0f;
            }
        for (size_t i = (size_t)C * HW; i < image; ++i) xp[i] = 0.0f; /* read only for unused columns */
        pk_igeom g = {C, KH * KW, (int)HW, {0}};
        for (int kh = 0; kh < KH; ++kh)
            for (int kw = 0; kw < KW; ++kw) g.taps[kh * KW + kw] = kh * dh * Wp + kw * dw;
        pk_imatmul(W, xp, yp, M, OH * Wp, &g);
        if (pool) { /* a 2x2 stride-2 max pool fused in: Y is [M, OH / 2, OW / 2] */
            if (pk_wide()) pk_pool_rows_wide(yp, Bias, Y, M, OH, OW, Wp, act, lo, hi);
            else pk_pool_rows(yp, Bias, Y, M, OH, OW, Wp, act, lo, hi);
            return;
        }
        for (int m = 0; m < M; ++m) {
            const float b = Bias ? Bias[m] : 0.0f;
            for (int oh = 0; oh < OH; ++oh) {
                const float *restrict s = yp + ((size_t)m * OH + oh) * Wp;
                float *restrict y = Y + ((size_t)m * OH + oh) * OW;
                if (act) for (int ow = 0; ow < OW; ++ow) y[ow] = pk_clamp(s[ow] + b, lo, hi);
                else for (int ow = 0; ow < OW; ++ow) y[ow] = s[ow] + b;
            }
        }
        return;
    }
    if (col) {
        for (int c = 0; c < C; ++c)
            for (int kh = 0; kh < KH; ++kh)
                for (int kw = 0; kw < KW; ++kw) {
                    float *restrict row = col + ((size_t)(c * KH + kh) * KW + kw) * P;
                    const float *restrict x = X + (size_t)c * H * Wd;
                    for (int oh = 0; oh < OH; ++oh) {
                        const int ih = oh * sh - pt + kh * dh;
                        float *restrict r = row + (size_t)oh * OW;
                        if (ih < 0 || ih >= H) {
                            for (int ow = 0; ow < OW; ++ow) r[ow] = 0.0f;
                            continue;
                        }
                        /* one input row, every sw-th column from shift, zeros where it leaves the image:
                           iw = ow * sw + shift is inside for ow in [first, end) */
                        const int shift = kw * dw - pl;
                        int first = shift < 0 ? (-shift + sw - 1) / sw : 0;
                        int end = Wd - 1 - shift < 0 ? 0 : (Wd - 1 - shift) / sw + 1;
                        first = first < OW ? first : OW;
                        end = end < OW ? (end > first ? end : first) : OW;
                        const float *restrict src = x + (size_t)ih * Wd + shift;
                        for (int ow = 0; ow < first; ++ow) r[ow] = 0.0f;
                        /* "+ 0.0f" keeps gcc from turning these short copies into memcpy calls,
                           which cost more than the copy (it only turns -0.0 into +0.0). */
                        if (sw == 1)
                            for (int ow = first; ow < end; ++ow) r[ow] = src[ow] + 0.0f;
                        else if (sw == 2)
                            pk_evens(r, src, first, end, -shift, Wd - 1 - shift);
                        else
                            for (int ow = first; ow < end; ++ow) r[ow] = src[(size_t)ow * sw] + 0.0f;
                        for (int ow = end; ow < OW; ++ow) r[ow] = 0.0f;
                    }
                }
    }
    if (P >= 64 && pk_wide512()) { /* bias and [lo, hi] as the sums are stored */
        pk_matmul_512e(W, col ? col : X, Y, M, P, C * KH * KW, Bias, act, lo, hi);
        return;
    }
    pk_matmul(W, col ? col : X, Y, M, P, C * KH * KW);
    if (Bias || act)
        for (int m = 0; m < M; ++m) {
            float *restrict y = Y + (size_t)m * P;
            const float b = Bias ? Bias[m] : 0.0f;
            if (act) for (int i = 0; i < P; ++i) y[i] = pk_clamp(y[i] + b, lo, hi);
            else for (int i = 0; i < P; ++i) y[i] += b;
        }
}

/* Reduce over the dims whose output stride is 0 (ys: the output's strides over the input's dims):
   0 sum, 1 mean, 2 max, 3 min, 4 prod, 5 l1, 6 l2, 7 log sum, 8 log sum exp, 9 sum square.
   Sums accumulate in double. S: ny doubles of scratch (log sum exp: the sums beside the maxima). */
static void pk_reduce(int op, const float *X, float *Y, double *S, int ndim, const int *shape, const int *ys,
                      size_t ny, size_t count) {
    int idx[PK_MAX_DIMS] = {0};
    size_t total = 1;
    for (int d = 0; d < ndim; ++d) total *= (size_t)shape[d];
    for (size_t j = 0; j < ny; ++j) {
        S[j] = op == 4 ? 1.0 : 0.0;
        Y[j] = op == 2 || op == 8 ? -INFINITY : op == 3 ? INFINITY : 0.0f;
    }
    for (int pass = op == 8 ? 0 : 1; pass < 2; ++pass) {
        size_t yi = 0;
        for (size_t i = 0; i < total; ++i) {
            const float x = X[i];
            if (pass == 0 || op == 2) {
                if (x > Y[yi] || x != x) Y[yi] = x;
            } else if (op == 3) {
                if (x < Y[yi] || x != x) Y[yi] = x;
            } else {
                const double v = x;
                S[yi] = op == 4 ? S[yi] * v : S[yi] + (op == 5 ? fabs(v) : op == 6 || op == 9 ? v * v
                                                       : op == 8 ? exp(v - (double)Y[yi]) : v);
            }
            for (int d = ndim - 1; d >= 0; --d) {
                yi += (size_t)ys[d];
                if (++idx[d] < shape[d]) break;
                yi -= (size_t)ys[d] * (size_t)shape[d];
                idx[d] = 0;
            }
        }
    }
    if (op == 2 || op == 3) return;
    for (size_t j = 0; j < ny; ++j) {
        const double v = S[j];
        Y[j] = (float)(op == 1 ? v / (double)count : op == 6 ? sqrt(v) : op == 7 ? log(v)
                       : op == 8 ? (double)Y[j] + log(v) : v);
    }
}

/* Layer normalization over the last `inner` values of each of `outer` rows; scale and bias
   (B may be null) have `inner` values. Mean and variance in double; each row's mean and inverse
   standard deviation written to Mean and InvStd where they are not null. */
static void pk_layernorm(const float *X, const float *Sc, const float *B, float *Y, float *Mean, float *InvStd,
                         size_t outer, size_t inner, float eps) {
    for (size_t o = 0; o < outer; ++o) { /* sums in 16 lanes (a loop that vectorizes), then added */
        const float *restrict x = X + o * inner;
        float *restrict y = Y + o * inner;
        float lane[16] = {0}, sq[16] = {0};
        const size_t body = inner / 16 * 16;
        size_t i;
        for (i = 0; i < body; i += 16)
            for (int j = 0; j < 16; ++j) lane[j] += x[i + j];
        double total = 0.0;
        for (int j = 0; j < 16; ++j) total += lane[j];
        for (i = body; i < inner; ++i) total += x[i];
        const float mean = (float)(total / (double)inner);
        for (i = 0; i < body; i += 16)
            for (int j = 0; j < 16; ++j) sq[j] += (x[i + j] - mean) * (x[i + j] - mean);
        double var = 0.0;
        for (int j = 0; j < 16; ++j) var += sq[j];
        for (i = body; i < inner; ++i) var += ((double)x[i] - mean) * ((double)x[i] - mean);
        const float inv = (float)(1.0 / sqrt(var / (double)inner + (double)eps));
        if (Mean) Mean[o] = mean;
        if (InvStd) InvStd[o] = inv;
        if (B)
            for (i = 0; i < inner; ++i) y[i] = (x[i] - mean) * inv * Sc[i] + B[i];
        else
            for (i = 0; i < inner; ++i) y[i] = (x[i] - mean) * inv * Sc[i];
    }
}

/* Y over the output's dims, each dim's index mapped through its own table: map[offs[d] + i] is
   the input index along d for output index i, or -1 where the output holds `fill` (constant
   padding). Rows along the last dim that map to a contiguous input run are copied whole. */
#define PK_REMAP(NAME, T) \
static void NAME(const T *X, T *Y, int ndim, const int *shape, const int *map, const int *offs, \
                     const long *in_strides, T fill) { \
    int idx[PK_MAX_DIMS] = {0}; \
    const int last = ndim - 1, width = shape[last]; \
    int contiguous = in_strides[last] == 1; \
    for (int i = 0; i < width && contiguous; ++i) \
        contiguous = map[offs[last] + i] == map[offs[last]] + i && map[offs[last]] >= 0; \
    size_t rows = 1; \
    for (int d = 0; d < last; ++d) rows *= (size_t)shape[d]; \
    for (size_t r = 0; r < rows; ++r) { \
        long base = 0; \
        int pad = 0; \
        for (int d = 0; d < last; ++d) { \
            const int m = map[offs[d] + idx[d]]; \
            if (m < 0) pad = 1; \
            base += (long)m * in_strides[d]; \
        } \
        T *y = Y + r * (size_t)width; \
        if (pad) { \
            for (int i = 0; i < width; ++i) y[i] = fill; \
        } else if (contiguous) { \
            memcpy(y, X + base + map[offs[last]], (size_t)width * sizeof(T)); \
        } else { \
            for (int i = 0; i < width; ++i) { \
                const int m = map[offs[last] + i]; \
                y[i] = m < 0 ? fill : X[base + (long)m * in_strides[last]]; \
            } \
        } \
        for (int d = last - 1; d >= 0; --d) { \
            if (++idx[d] < shape[d]) break; \
            idx[d] = 0; \
        } \
    } \
}
PK_TYPED(PK_REMAP, pk_remap)

static void pk_log_softmax(const float *X, float *Y, int outer, int axis, int inner) {
    for (int o = 0; o < outer; ++o)
        for (int i = 0; i < inner; ++i) {
            const float *x = X + (size_t)o * axis * inner + i;
            float *y = Y + (size_t)o * axis * inner + i;
            float mx = x[0];
            double sum = 0.0;
            for (int a = 1; a < axis; ++a) mx = x[(size_t)a * inner] > mx ? x[(size_t)a * inner] : mx;
            for (int a = 0; a < axis; ++a) sum += exp((double)x[(size_t)a * inner] - mx);
            const float lse = (float)log(sum);
            for (int a = 0; a < axis; ++a) y[(size_t)a * inner] = x[(size_t)a * inner] - mx - lse;
        }
}

/* Separable resampling: along dim d, output index i reads taps[d] input indices idx[offs[d] +
   i*taps[d] + t] with weights w[...] (an index of -1 reads `fill`: tf_crop_and_resize outside
   the box); the output value is the sum over every combination of one tap per dim of the
   weights' product times the input value. */
static void pk_resample(const float *X, float *Y, int ndim, const int *shape, const int *taps, const int *offs,
                        const int *idx, const float *w, const long *in_strides, float fill) {
    int pos[PK_MAX_DIMS] = {0};
    size_t total = 1;
    for (int d = 0; d < ndim; ++d) total *= (size_t)shape[d];
    for (size_t o = 0; o < total; ++o) {
        int t[PK_MAX_DIMS] = {0};
        double acc = 0.0;
        for (;;) {
            long src = 0;
            double weight = 1.0;
            int outside = 0;
            for (int d = 0; d < ndim; ++d) {
                const int k = offs[d] + pos[d] * taps[d] + t[d];
                if (idx[k] < 0) outside = 1;
                src += (long)idx[k] * in_strides[d];
                weight *= w[k];
            }
            if (weight != 0.0) acc += weight * (outside ? (double)fill : (double)X[src]);
            int d = ndim - 1;
            while (d >= 0 && ++t[d] == taps[d]) t[d--] = 0;
            if (d < 0) break;
        }
        Y[o] = (float)acc;
        for (int d = ndim - 1; d >= 0; --d) {
            if (++pos[d] < shape[d]) break;
            pos[d] = 0;
        }
    }
}

/* 2-D transposed convolution, NCHW, one item: each input value scattered through the kernel.
   W is (C, M/group, KH, KW); pads (top, left) are the output's cropped rows and columns. */
static void pk_conv_transpose2d(const float *restrict X, const float *restrict W, const float *restrict Bias,
                                float *restrict Y, int C, int H, int Wd, int M, int OH, int OW, int KH, int KW,
                                int pt, int pl, int sh, int sw, int dh, int dw, int group) {
    const int cg = C / group, mg = M / group;
    for (int m = 0; m < M; ++m)
        for (int i = 0; i < OH * OW; ++i) Y[(size_t)m * OH * OW + i] = Bias ? Bias[m] : 0.0f;
    for (int c = 0; c < C; ++c) {
        const int g = c / cg;
        for (int ml = 0; ml < mg; ++ml) {
            const float *w = W + ((size_t)c * mg + ml) * KH * KW;
            float *y = Y + (size_t)(g * mg + ml) * OH * OW;
            for (int ih = 0; ih < H; ++ih)
                for (int kh = 0; kh < KH; ++kh) {
                    const int oh = ih * sh + kh * dh - pt;
                    if (oh < 0 || oh >= OH) continue;
                    for (int iw = 0; iw < Wd; ++iw) {
                        const float v = X[((size_t)c * H + ih) * Wd + iw];
                        for (int kw = 0; kw < KW; ++kw) {
                            const int ow = iw * sw + kw * dw - pl;
                            if (ow >= 0 && ow < OW) y[(size_t)oh * OW + ow] += v * w[kh * KW + kw];
                        }
                    }
                }
        }
    }
}
