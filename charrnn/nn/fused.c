/* The recurrent cells' time loops, fused: one pass per time step instead of a dozen NumPy
 * calls, and one C call per chunk (charrnn/nn/fused.py compiles and loads this; charrnn/nn/cells.py
 * calls it).
 *
 * float32 only. The chunk's big multiplies stay in NumPy (OpenBLAS); the recurrent multiply inside
 * the time loop, h_{t-1} Wh, is done here, by a register-blocked kernel on Wh packed once per
 * chunk (see "The recurrent multiply" below). Each *_step function is what one time step of a
 * cell does between two multiplies, with the same formulas, in the same layouts (time-major;
 * LSTM gate columns i, f, o, g; GRU r, z, n). For the LSTM's loops:
 *
 *   forward:  u_t = b_t - [xp_ifo, 2 xp_g]   (b: h_{t-1} Wh scaled by cells._gate_scale, -1
 *                                             for i f o and -2 for g, so u = -a, -2 a_g)
 *             s = 1 / (1 + exp(u_t))   [i f o] = s, g = 2 s - 1
 *             c_t = f c_{t-1} + i g,   tanh(c_t),   h_t = o tanh(c_t)
 *   backward: dh = dh + dhs_t,  dc = dc + dh o (1 - tanh(c_t)^2),
 *             da_t = [dc K_i, dc K_f, dh K_o, dc K_g] (the factors K of cells.lstm_backward,
 *             computed here from the cached activations),  dc = f_t dc
 *
 * Three kinds of entry point: the time loops (lstm_, gru_, rnn_forward_loop and _backward_loop),
 * called once per chunk with raw pointers, each running the packed multiply and its cell's step
 * function (lstm_forward_step, ...) T times; the single steps lstm_step and gru_step
 * (cells.lstm_step and gru_step: what predict and beam search run, one call per layer and
 * character) and stack_step (a language model's whole step, its products on weights packed
 * once per sample: fused_step.stack_stepper), which take the NumPy arrays themselves (see
 * array_data); and exp_array, tanh_array, panel_matmul and step_multiply for the tests and
 * bench/recurrent_multiply.py.
 *
 * exp is our own (below), so results agree with the NumPy path to float32 rounding, not bit for
 * bit. Every loop is written to be vectorised by the compiler (-O3 -march=native).
 */

#include <stdint.h>
#include <string.h>

/* exp(x) for float32, |relative error| < 2e-7 on [-87, 87]; x is clamped to that range, so the
 * result stays a normal number (no infinities, no denormals: 1 / (1 + exp(87)) = 1.6e-38). The
 * Cephes expf: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-7 polynomial, times 2^n. */
static inline float exp_(float x) {
    x = x > 87.0f ? 87.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* tanh(x) = 1 - 2 / (1 + exp(2 x)), exact at the extremes; for |x| < 0.25, where that
 * subtraction cancels, the odd Taylor series to x^11 (relative truncation error < 1e-8). */
static inline float tanh_(float x) {
    float e = 1.0f - 2.0f / (1.0f + exp_(2.0f * x));
    float x2 = x * x;
    float p = x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315
                  + x2 * (62.0f / 2835 + x2 * (-1382.0f / 155925))))));
    return (x2 < 0.0625f) ? p : e;
}

/* One forward step for n streams of H units.
 * a (n, 4H): xp_t in (not scaled), the activations [i f o g] out (the cache);  b (n, 4H):
 * h_{t-1} Wh scaled by cells._gate_scale (-1 for i f o, -2 for g); c_prev (n, H): c_{t-1};
 * c, tc, h (n, H): c_t, tanh(c_t), h_t out. All rows contiguous. */
static void lstm_forward_step(long n, long H, float *restrict a, const float *restrict b,
                       const float *restrict c_prev, float *restrict c, float *restrict tc,
                       float *restrict h) {
    const long G = 4 * H;
    for (long r = 0; r < n; r++) {
        float *ar = a + r * G;
        const float *br = b + r * G;
        for (long j = 0; j < 3 * H; j++)  /* sigmoid(a) = 1 / (1 + exp(-a)) */
            ar[j] = 1.0f / (1.0f + exp_(br[j] - ar[j]));
        for (long j = 3 * H; j < G; j++)  /* sigmoid(2 a_g) */
            ar[j] = 1.0f / (1.0f + exp_(br[j] - 2.0f * ar[j]));
        const float *i = ar, *f = ar + H, *o = ar + 2 * H;
        float *g = ar + 3 * H;
        const float *cp = c_prev + r * H;
        float *cr = c + r * H, *tr = tc + r * H, *hr = h + r * H;
        for (long j = 0; j < H; j++) {
            float gj = 2.0f * g[j] - 1.0f;  /* tanh(a_g) = 2 sigmoid(2 a_g) - 1 */
            g[j] = gj;
            float cj = f[j] * cp[j] + i[j] * gj;
            float t = tanh_(cj);
            cr[j] = cj;
            tr[j] = t;
            hr[j] = o[j] * t;
        }
    }
}

/* One backward step, computing the gate derivatives on the fly (cells.lstm_backward computes
 * them for all steps first, as the factors K).
 * da (n, 4H): da_t out; dh (n, H): da_{t+1} Wh^T in (not written); dhs (n, H): dL/dh_t from
 * above; acts (n, 4H): [i f o g] at t; c_prev (n, H): c_{t-1}; tc (n, H): tanh(c_t);
 * dc (n, H): f_{t+1} dc_{t+1} in, f_t dc_t out. */
static void lstm_backward_step(long n, long H, float *restrict da, const float *restrict dh,
                        const float *restrict dhs, const float *restrict acts,
                        const float *restrict c_prev, const float *restrict tc,
                        float *restrict dc) {
    const long G = 4 * H;
    for (long r = 0; r < n; r++) {
        float *d = da + r * G;
        const float *i = acts + r * G, *f = i + H, *o = i + 2 * H, *g = i + 3 * H;
        const float *dhr = dh + r * H, *sr = dhs + r * H, *cp = c_prev + r * H, *t = tc + r * H;
        float *dcr = dc + r * H;
        for (long j = 0; j < H; j++) {
            float dht = dhr[j] + sr[j];                                 /* dh_t */
            float tj = t[j], oj = o[j], ij = i[j], fj = f[j], gj = g[j];
            float c = dcr[j] + dht * oj * (1.0f - tj * tj);             /* dc_t */
            d[j] = c * gj * ij * (1.0f - ij);                           /* da_i = dc K_i */
            d[H + j] = c * cp[j] * fj * (1.0f - fj);                    /* da_f = dc K_f */
            d[2 * H + j] = dht * tj * oj * (1.0f - oj);                 /* da_o = dh K_o */
            d[3 * H + j] = c * ij * (1.0f - gj * gj);                   /* da_g = dc K_g */
            dcr[j] = c * fj;                                            /* path c_{t-1} -> c_t */
        }
    }
}

/* One GRU forward step (cells.gru_forward; PyTorch's GRU, gate columns r, z, n).
 * a (n, 3H): xp_t in (x Wx + b), the activations [r z n] out (the cache);  gh (n, 3H):
 * h_{t-1} Wh (not scaled);  bhn (H,);  h_prev (n, H);  hn (n, H): h_{t-1} Wh_n + bhn out;
 * h (n, H): h_t out.
 *   r = sigmoid(xp_r + gh_r), z = sigmoid(xp_z + gh_z), n = tanh(xp_n + r hn),
 *   h_t = n + z (h_{t-1} - n) */
static void gru_forward_step(long n, long H, float *restrict a, const float *restrict gh,
                      const float *restrict bhn, const float *restrict h_prev,
                      float *restrict hn, float *restrict h) {
    const long G = 3 * H;
    for (long r = 0; r < n; r++) {
        float *ar = a + r * G;
        const float *gr = gh + r * G, *hp = h_prev + r * H;
        float *hnr = hn + r * H, *hr = h + r * H;
        for (long j = 0; j < 2 * H; j++)
            ar[j] = 1.0f / (1.0f + exp_(-(ar[j] + gr[j])));
        const float *rg = ar, *zg = ar + H;
        float *ng = ar + 2 * H;
        for (long j = 0; j < H; j++) {
            float q = gr[2 * H + j] + bhn[j];
            float nj = tanh_(ng[j] + rg[j] * q);
            hnr[j] = q;
            ng[j] = nj;
            hr[j] = nj + zg[j] * (hp[j] - nj);
        }
    }
}

/* One GRU backward step, the gate derivatives computed on the fly (cells.gru_backward computes
 * them for all steps first, as the factors K).
 * dgh (n, 3H): the gradient at [h Wh_r, h Wh_z, h Wh_n + bhn] out;  dxn (n, H): dxp_n out;
 * dh (n, H): dh_{t+1} z_{t+1} in (the direct path), dh_t z_t out;  back (n, H): dgh_{t+1} Wh^T
 * in;  dhs (n, H): dL/dh_t from above;  acts (n, 3H): [r z n] at t;  hn (n, H);  h_prev (n, H).
 *   dh_t = dh + back + dhs,  k = (1 - z)(1 - n^2),
 *   dgh = dh_t [hn k r (1 - r), (h_prev - n) z (1 - z), k r],  dxp_n = dh_t k */
static void gru_backward_step(long n, long H, float *restrict dgh, float *restrict dxn,
                       float *restrict dh, const float *restrict back,
                       const float *restrict dhs, const float *restrict acts,
                       const float *restrict hn, const float *restrict h_prev) {
    const long G = 3 * H;
    for (long r = 0; r < n; r++) {
        float *d = dgh + r * G, *dx = dxn + r * H, *dhr = dh + r * H;
        const float *rg = acts + r * G, *zg = rg + H, *ng = rg + 2 * H;
        const float *br = back + r * H, *sr = dhs + r * H, *q = hn + r * H, *hp = h_prev + r * H;
        for (long j = 0; j < H; j++) {
            float dht = dhr[j] + br[j] + sr[j];
            float rj = rg[j], zj = zg[j], nj = ng[j];
            float k = (1.0f - zj) * (1.0f - nj * nj);
            d[j] = dht * q[j] * k * rj * (1.0f - rj);
            d[H + j] = dht * (hp[j] - nj) * zj * (1.0f - zj);
            d[2 * H + j] = dht * k * rj;
            dx[j] = dht * k;
            dhr[j] = dht * zj;
        }
    }
}

/* One vanilla RNN forward step (cells.rnn_forward), over the m = n H values of a step:
 * a (m): xp_t in, h_t = tanh(xp_t + b) out;  b (m): h_{t-1} Wh. */
static void rnn_forward_step(long m, float *restrict a, const float *restrict b) {
    for (long j = 0; j < m; j++) a[j] = tanh_(a[j] + b[j]);
}

/* One vanilla RNN backward step (cells.rnn_backward), over the m = n H values of a step:
 * da (m): da_t out;  dh (m): da_{t+1} Wh^T (dh_T at the last step) in;  dhs (m): dL/dh_t from
 * above;  h (m): h_t.   da_t = (dh + dhs_t)(1 - h_t^2), tanh's derivative from its output. */
static void rnn_backward_step(long m, float *restrict da, const float *restrict dh,
                       const float *restrict dhs, const float *restrict h) {
    for (long j = 0; j < m; j++) da[j] = (dh[j] + dhs[j]) * (1.0f - h[j] * h[j]);
}

/* ---- The recurrent multiply: Wh packed once per chunk --------------------------------------
 * Inside a time loop the multiply is small in rows (the n streams a process runs: 16 of a batch
 * of 32 split over two processes) and large in weights (Wh is 4 MB at H = 512). OpenBLAS's sgemm
 * copies ("packs") Wh into its kernel's layout at every call, every time step: a fifth of an LSTM
 * 512x2 training run's time went to that copy (py-spy, sgemm_itcopy). Here Wh is packed once per
 * chunk, and each step runs a register-blocked kernel straight off the packed copy:
 *
 *   panels:  W (K, M) becomes ceil(M / NR) panels of NR columns, each K rows of NR contiguous
 *            floats (zero past column M), so the kernel reads one panel front to back;
 *   kernel:  C (n, M) = A (n, K) W: for each panel, blocks of MR rows of C held in MR x NV vector
 *            registers (NR = NV vectors of VW floats) while k runs over K: per k, NV loads of the
 *            panel, MR broadcasts of A[r][k], MR NV fused multiply-adds.
 *
 * The sizes are chosen at compile time for the instruction set -march=native gives: AVX-512
 * (32 vector registers of 16 floats) MR = 8, NR = 32: 16 accumulators; otherwise (AVX2, SSE,
 * NEON: 16 registers) MR = 6, NR = 2 vectors: 12 accumulators. Measured against OpenBLAS's
 * per-step sgemm in bench/recurrent_multiply.py (1.3-1.45x at n = 16 on an AVX-512 EPYC). The
 * vectors are GCC's vector extensions (GCC and Clang), so other instruction sets compile to what
 * they have; another compiler, or -DFUSED_PLAIN, gets the plain loop below, which tests build too.
 * Each output is a sum over k in order 0..K-1, whatever the blocking, so results do not depend on
 * n or on the row block a stream falls in. */

#if defined(__GNUC__) && !defined(FUSED_PLAIN)
# if defined(__AVX512F__)
#  define VW 16
#  define MR 8
# elif defined(__AVX__)
#  define VW 8
#  define MR 6
# else
#  define VW 4
#  define MR 6
# endif
# define NV 2
typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));  /* loads need no alignment */
#else
# define VW 1
# define NV 8
#endif
#define NR (NV * VW)

/* The panels of nr columns of W (K, M) times scale (M,) (or NULL: 1), into P (ceil(M / nr) nr K
 * floats). W's element (k, m) is at W[k rs + m cs], so W^T is packed by swapping the strides.
 * The loops walk W along whichever stride is 1: a walk down W's columns meets cache aliasing
 * (rows 8 KB apart share cache sets; see cells._loop_copy). Inlined with a constant nr: NR
 * here, the single step's wider panels below. */
static inline __attribute__((always_inline)) void
pack_(const long nr, long K, long M, const float *restrict W, long rs, long cs,
      const float *restrict scale, float *restrict P) {
    const long np = (M + nr - 1) / nr;
    if (cs == 1) {
        for (long j = 0; j < np; j++)
            for (long k = 0; k < K; k++)
                for (long c = 0; c < nr; c++) {
                    long m = j * nr + c;
                    P[(j * K + k) * nr + c] = m < M ? W[k * rs + m] * (scale ? scale[m] : 1.0f)
                                                    : 0.0f;
                }
    } else {  /* in tiles of 64 k, so that the nr rows written to stay in the L1 cache */
        for (long j = 0; j < np; j++)
            for (long k0 = 0; k0 < K; k0 += 64)
                for (long c = 0; c < nr; c++) {
                    long m = j * nr + c, k1 = k0 + 64 < K ? k0 + 64 : K;
                    float s = m < M && scale ? scale[m] : 1.0f;
                    for (long k = k0; k < k1; k++)
                        P[(j * K + k) * nr + c] = m < M ? W[k * rs + m * cs] * s : 0.0f;
                }
    }
}

void pack_panels(long K, long M, const float *restrict W, long rs, long cs,
                 const float *restrict scale, float *restrict P) {
    pack_(NR, K, M, W, rs, cs, scale, P);
}

long panel_width(void) { return NR; }

#if VW > 1
/* C[r][0:ncols] = A[r] P for the mr (a constant once inlined) rows of one block and one panel:
 * the accumulators stay in registers (mr NV vectors), and a narrow last panel is stored through
 * a buffer. */
static inline __attribute__((always_inline)) void
panel_block(const int mr, long K, const float *restrict A, long lda, const float *restrict P,
            float *restrict C, long ldc, long ncols) {
    vf acc[MR][NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (vf){0};
    for (long k = 0; k < K; k++) {
        vf b[NV];
        for (int v = 0; v < NV; v++) memcpy(&b[v], P + k * NR + v * VW, sizeof(vf));
        for (int r = 0; r < mr; r++) {
            vf a = (vf){0} + A[r * lda + k];  /* broadcast A[r][k] */
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < mr; r++) {
        if (ncols == NR) {
            memcpy(C + r * ldc, acc[r], sizeof acc[r]);
        } else {
            float row[NR];
            memcpy(row, acc[r], sizeof row);
            memcpy(C + r * ldc, row, ncols * sizeof(float));
        }
    }
}

/* C (n, M), rows ldc apart, = A (n, K), rows lda apart, times the panels P of a (K, M) matrix. */
static void panel_matmul_(long n, long K, long M, const float *restrict A, long lda,
                          const float *restrict P, float *restrict C, long ldc) {
    for (long j = 0; j * NR < M; j++) {
        const float *Pj = P + j * K * NR;
        const long ncols = M - j * NR < NR ? M - j * NR : NR;
        float *Cj = C + j * NR;
        long r = 0;
        for (; r + MR <= n; r += MR) panel_block(MR, K, A + r * lda, lda, Pj, Cj + r * ldc, ldc, ncols);
        switch (n - r) {  /* the last rows, a block of fewer than MR (the cases past MR - 1 are dead) */
#define REST(m) case m: if (m < MR) panel_block(m, K, A + r * lda, lda, Pj, Cj + r * ldc, ldc, ncols); break;
            REST(1) REST(2) REST(3) REST(4) REST(5) REST(6) REST(7)
#undef REST
            default: break;
        }
    }
}
#else
static void panel_matmul_(long n, long K, long M, const float *restrict A, long lda,
                          const float *restrict P, float *restrict C, long ldc) {
    for (long j = 0; j * NR < M; j++) {
        const float *Pj = P + j * K * NR;
        const long ncols = M - j * NR < NR ? M - j * NR : NR;
        for (long r = 0; r < n; r++) {
            float acc[NR] = {0};
            for (long k = 0; k < K; k++)
                for (long c = 0; c < NR; c++) acc[c] += A[r * lda + k] * Pj[k * NR + c];
            memcpy(C + r * ldc + j * NR, acc, ncols * sizeof(float));
        }
    }
}
#endif

/* panel_matmul_ for the tests and the bench: C (n, M) = A (n, K) W, P the panels of W. */
void panel_matmul(long n, long K, long M, const float *A, const float *P, float *C) {
    panel_matmul_(n, K, M, A, K, P, C, M);
}

/* ---- The time loops: one call per chunk -----------------------------------------------------
 * Each runs T steps of its cell: the packed multiply, then the step function above, with the
 * arrays and their meaning as in fused.py's functions of the same name (time-major, n streams,
 * a step's slice of a (T, n, X) array is n X floats). */

void lstm_forward_loop(long T, long n, long H, float *acts, const float *P, const float *h0,
                       const float *c0, float *cs, float *tcs, float *hs, float *buf) {
    const long G = 4 * H;
    const float *h = h0, *c = c0;
    for (long t = 0; t < T; t++) {
        panel_matmul_(n, H, G, h, H, P, buf, G);  /* h_{t-1} Wh, scaled */
        lstm_forward_step(n, H, acts + t * n * G, buf, c, cs + t * n * H, tcs + t * n * H,
                          hs + t * n * H);
        h = hs + t * n * H;
        c = cs + t * n * H;
    }
}

void lstm_backward_loop(long T, long n, long H, float *dxp, const float *acts, const float *c0,
                        const float *cs, const float *tcs, const float *dhs, const float *P,
                        float *dh, float *dc) {
    const long G = 4 * H;
    for (long t = T - 1; t >= 0; t--) {
        const float *c_prev = t ? cs + (t - 1) * n * H : c0;
        lstm_backward_step(n, H, dxp + t * n * G, dh, dhs + t * n * H, acts + t * n * G, c_prev,
                           tcs + t * n * H, dc);
        panel_matmul_(n, G, H, dxp + t * n * G, G, P, dh, H);  /* dh_{t-1} = da_t Wh^T */
    }
}

void gru_forward_loop(long T, long n, long H, float *acts, const float *P, const float *bhn,
                      const float *h0, float *hns, float *hs, float *gh) {
    const long G = 3 * H;
    const float *h = h0;
    for (long t = 0; t < T; t++) {
        panel_matmul_(n, H, G, h, H, P, gh, G);  /* h_{t-1} Wh */
        gru_forward_step(n, H, acts + t * n * G, gh, bhn, h, hns + t * n * H, hs + t * n * H);
        h = hs + t * n * H;
    }
}

void gru_backward_loop(long T, long n, long H, float *dgh, float *dxn, const float *acts,
                       const float *h0, const float *hns, const float *hs, const float *dhs,
                       const float *P, float *dh, float *back) {
    const long G = 3 * H;
    for (long t = T - 1; t >= 0; t--) {
        const float *h_prev = t ? hs + (t - 1) * n * H : h0;
        gru_backward_step(n, H, dgh + t * n * G, dxn + t * n * H, dh, back, dhs + t * n * H,
                          acts + t * n * G, hns + t * n * H, h_prev);
        panel_matmul_(n, G, H, dgh + t * n * G, G, P, back, H);  /* dgh_t Wh^T */
    }
}

void rnn_forward_loop(long T, long n, long H, float *hs, const float *P, const float *h0,
                      float *buf) {
    const float *h = h0;
    for (long t = 0; t < T; t++) {
        panel_matmul_(n, H, H, h, H, P, buf, H);  /* h_{t-1} Wh */
        rnn_forward_step(n * H, hs + t * n * H, buf);
        h = hs + t * n * H;
    }
}

void rnn_backward_loop(long T, long n, long H, float *dxp, const float *hs, const float *dhs,
                       const float *P, float *dh) {
    for (long t = T - 1; t >= 0; t--) {
        rnn_backward_step(n * H, dxp + t * n * H, dh, dhs + t * n * H, hs + t * n * H);
        panel_matmul_(n, H, H, dxp + t * n * H, H, P, dh, H);  /* dh_{t-1} = da_t Wh^T */
    }
}

/* ---- Single steps: one call per layer and character ---------------------------------------
 * A sampler's step is a few matrix-vector products and a handful of tiny elementwise passes, so
 * its cost beyond the multiplies is per-call overhead, and through ctypes the costliest part of a
 * call is getting each array's address (numpy's `a.ctypes.data` takes about a microsecond, more
 * than a small NumPy call). These functions take the arrays themselves, as
 * PyObject pointers (ctypes.py_object), and read the data pointer from NumPy's array struct,
 * PyArrayObject_fields { PyObject_HEAD; char *data; ... }: part of NumPy's C ABI (every compiled
 * extension's PyArray_DATA reads it there), right after the object header, whose size fused.py
 * sets with set_data_offset and checks against `a.ctypes.data` once, at load. The caller passes
 * C-contiguous float32 arrays (cells._fused checks) and keeps them alive during the call. The
 * work is done in static functions whose pointer parameters are restrict: with the pointers read
 * in the loop's own function, GCC did not vectorise it. */

static long data_offset = -1;

void set_data_offset(long offset) { data_offset = offset; }

/* The data pointer of the NumPy array `array` (a PyObject *). */
void *array_data(const char *array) { return *(void *const *)(array + data_offset); }

#define DATA(array) ((float *)array_data(array))

static inline float sigmoid_(float x) { return 1.0f / (1.0f + exp_(-x)); }

/* One LSTM row of H units: a (4H) h_{t-1} Wh;  x (4H) the input projection, b (4H) the bias
 * added to it (NULL: none);  c_prev (H);  h, c (H) out: h_t, c_t.
 * [i f o g] = [sigmoid sigmoid sigmoid tanh](a + (x + b)),  c_t = f c_{t-1} + i g,
 * h_t = o tanh(c_t).  (x + b first: the order the model's NumPy step adds them in.) */
static inline void lstm_row_(long H, const float *restrict a, const float *restrict x,
                             const float *restrict b, const float *restrict c_prev,
                             float *restrict h, float *restrict c) {
    for (long j = 0; j < H; j++) {
        float xi = x[j], xf = x[H + j], xo = x[2 * H + j], xg = x[3 * H + j];
        if (b) {
            xi += b[j];
            xf += b[H + j];
            xo += b[2 * H + j];
            xg += b[3 * H + j];
        }
        float i = sigmoid_(a[j] + xi);
        float f = sigmoid_(a[H + j] + xf);
        float o = sigmoid_(a[2 * H + j] + xo);
        float g = tanh_(a[3 * H + j] + xg);
        float cj = f * c_prev[j] + i * g;
        c[j] = cj;
        h[j] = o * tanh_(cj);
    }
}

/* cells.lstm_step for n streams of H units: a (n, 4H) h_{t-1} Wh;  xp (n, 4H) the input
 * projection;  c_prev (n, H);  h, c (n, H) out: h_t, c_t. */
void lstm_step(long n, long H, const char *a, const char *xp, const char *c_prev,
               const char *h, const char *c) {
    const float *pa = DATA(a), *px = DATA(xp), *pc = DATA(c_prev);
    float *ph = DATA(h), *pn = DATA(c);
    for (long r = 0; r < n; r++)
        lstm_row_(H, pa + r * 4 * H, px + r * 4 * H, NULL, pc + r * H, ph + r * H, pn + r * H);
}

/* One GRU row of H units: gh (3H) h_{t-1} Wh;  x (3H) the input projection, b (3H) the bias
 * added to it (NULL: none);  bhn (H);  h_prev (H);  h (H) out.  With xp = x + b:
 * r = sigmoid(xp_r + gh_r),  z = sigmoid(xp_z + gh_z),  n = tanh(xp_n + r (gh_n + bhn)),
 * h_t = n + z (h_{t-1} - n). */
static inline void gru_row_(long H, const float *restrict gh, const float *restrict x,
                            const float *restrict b, const float *restrict bhn,
                            const float *restrict h_prev, float *restrict h) {
    for (long j = 0; j < H; j++) {
        float xr = x[j], xz = x[H + j], xn = x[2 * H + j];
        if (b) {
            xr += b[j];
            xz += b[H + j];
            xn += b[2 * H + j];
        }
        float rj = sigmoid_(xr + gh[j]);
        float zj = sigmoid_(xz + gh[H + j]);
        float nj = tanh_(xn + rj * (gh[2 * H + j] + bhn[j]));
        h[j] = nj + zj * (h_prev[j] - nj);
    }
}

/* cells.gru_step for n streams of H units: gh (n, 3H) h_{t-1} Wh;  xp (n, 3H);  bhn (H,);
 * h_prev (n, H);  h (n, H) out. */
void gru_step(long n, long H, const char *gh, const char *xp, const char *bhn,
              const char *h_prev, const char *h) {
    const float *pg = DATA(gh), *px = DATA(xp), *pb = DATA(bhn), *pp = DATA(h_prev);
    float *ph = DATA(h);
    for (long r = 0; r < n; r++)
        gru_row_(H, pg + r * 3 * H, px + r * 3 * H, NULL, pb, pp + r * H, ph + r * H);
}

/* ---- A language model's whole step, in one call (charrnn.nn.fused_step.stack_stepper) -------
 * Sampling one stream is a chain of matrix-vector products (h_{t-1} Wh per layer, x Wx above
 * layer 0, h Wy at the top), each reading a matrix of megabytes from the L3 cache or memory, with
 * little elementwise work between them. So here the whole step is one call: no Python, and no
 * leaving the kernels, between the products, which run off copies of the weights packed once per
 * stepper in panels of SW columns (pack_ above; the sampler makes its step once per sample):
 * each panel is one contiguous stream of K rows of SW floats, held in SV vector accumulators
 * while k runs, so a product reads its matrix front to back in one stream that the hardware
 * prefetcher follows, with SV independent multiply-add chains. (OpenBLAS's matrix-vector
 * product reads the unpacked rows, several streams 4H floats apart; this ran 8% faster at 512x2048
 * on an AVX-512 EPYC, docs/en/explanation/kernels.md.) Each output is the sum over k in order
 * 0..K-1, as in the time loops' multiply, so a stream's results do not depend on n; they differ
 * from OpenBLAS's in the last bits (its own order of sums). */

#if VW > 1
# define SV 8
#else
# define SV 16
#endif
#define SW (SV * VW)

long step_panel_width(void) { return SW; }

/* W (K, M), rows of M floats, into P: ceil(M / SW) panels of SW columns (step_panel_width). */
void pack_step_panels(long K, long M, const float *restrict W, float *restrict P) {
    pack_(SW, K, M, W, M, 1, NULL, P);
}

/* C (n, M) = A (n, K) W, P the step panels of W (K, M); each row of C on its own. */
static void step_multiply_(long n, long K, long M, const float *restrict A,
                           const float *restrict P, float *restrict C) {
    for (long j = 0; j * SW < M; j++) {
        const float *Pj = P + j * K * SW;
        const long ncols = M - j * SW < SW ? M - j * SW : SW;
        for (long r = 0; r < n; r++) {
            const float *a = A + r * K;
#if VW > 1
            vf acc[SV];
            for (int v = 0; v < SV; v++) acc[v] = (vf){0};
            for (long k = 0; k < K; k++) {
                vf x = (vf){0} + a[k];  /* broadcast */
                for (int v = 0; v < SV; v++) {
                    vf w;
                    memcpy(&w, Pj + k * SW + v * VW, sizeof w);
                    acc[v] += x * w;
                }
            }
#else
            float acc[SW] = {0};
            for (long k = 0; k < K; k++)
                for (long c = 0; c < SW; c++) acc[c] += a[k] * Pj[k * SW + c];
#endif
            float row[SW];
            memcpy(row, acc, sizeof row);
            memcpy(C + r * M + j * SW, row, ncols * sizeof(float));
        }
    }
}

/* step_multiply_ for the tests and the bench. */
void step_multiply(long n, long K, long M, const float *A, const float *P, float *C) {
    step_multiply_(n, K, M, A, P, C);
}

/* 0 if every one of the n ids is a row of a table of `rows` rows, else r + 1 for the first
 * row r whose id is not. */
static long check_ids(long n, const long *ids, long rows) {
    for (long r = 0; r < n; r++)
        if (ids[r] < -rows || ids[r] >= rows)
            return r + 1;
    return 0;
}

/* Where each layer's parameters sit in the table `w` that stack_step takes: layer k's at
 * w + k STEP_SLOTS; the output layer's (Wy's step panels, by (V,)) after the last layer's. */
enum { STEP_WH, STEP_WX, STEP_B, STEP_BHN, STEP_SLOTS };

/* One step of a stack of L layers of an LSTM (gates 4) or GRU (gates 3) of H units, for n
 * streams, then the output layer: what charrnn.models.lm.stepper computes, as
 *   x_0 = Wx_0[ids] + b_0,  x_k = h_{k-1} Wx_k + b_k (k > 0),  layer k's step (lstm_row_,
 *   gru_row_) on h_{t-1} Wh_k and x_k,  logits = h_{L-1} Wy + by.
 * w: per layer k (STEP_*): Wh_k's step panels (H, G); Wx_0 itself (V0, G) for k = 0, Wx_k's step
 * panels (H, G) above; b_k (G); bhn_k (H) for the GRU (unused for the LSTM); then Wy's step
 * panels (H, V) and by (V). ids (n,) intp: rows of Wx_0, a negative one counting from the end as
 * NumPy's indexing does. state_in, state_out (L, S, n, H), S = 2 for the LSTM (h, c), 1 for the
 * GRU (h); logits (n, V) out; scratch (2, n, G). Returns 0, or r + 1 when ids[r] is out of
 * range (then nothing is written). */
long stack_step(long gates, long n, long H, long L, long V0, long V, const float *const *w,
                const char *ids, const char *state_in, const char *state_out,
                const char *logits, const char *scratch) {
    const long G = gates * H, S = gates == 4 ? 2 : 1, layer = S * n * H;
    const long *pi = (const long *)array_data(ids);
    long bad = check_ids(n, pi, V0);
    if (bad)
        return bad;
    const float *in = DATA(state_in), *below = NULL;
    float *out = DATA(state_out), *a = DATA(scratch), *xp = a + n * G;
    for (long k = 0; k < L; k++, w += STEP_SLOTS) {
        const float *prev = in + k * layer;
        float *h = out + k * layer;
        step_multiply_(n, H, G, prev, w[STEP_WH], a);  /* h_{t-1} Wh */
        if (k)
            step_multiply_(n, H, G, below, w[STEP_WX], xp);  /* x Wx */
        for (long r = 0; r < n; r++) {
            const float *x = k ? xp + r * G : w[STEP_WX] + (pi[r] < 0 ? pi[r] + V0 : pi[r]) * G;
            if (S == 2)
                lstm_row_(H, a + r * G, x, w[STEP_B], prev + n * H + r * H, h + r * H,
                          h + n * H + r * H);
            else
                gru_row_(H, a + r * G, x, w[STEP_B], w[STEP_BHN], prev + r * H, h + r * H);
        }
        below = h;
    }
    float *z = DATA(logits);
    step_multiply_(n, H, V, below, w[0], z);  /* h Wy */
    for (long r = 0; r < n; r++)
        for (long j = 0; j < V; j++) z[r * V + j] += w[1][j];  /* + by */
    return 0;
}

/* ---- A sampler's draw (charrnn.infer.sample, through fused.drawer) -------------------------
 * The float64 arithmetic of the sampler's NumPy draw, operation for operation, so the same
 * uniform gives the same character: w = logits * inv_t, then w - max(w) (two statements, and
 * the maximum needs every product first, so no multiply-add can be fused), then NumPy's own exp
 * (called between these two, in place: its last bits are NumPy's, not the C library's), then the
 * running sum (left to right, as np.add.accumulate) and the search (np.searchsorted's "right"). */

/* w (V,) float64 out: logits (V,) float32 times inv_t, less the largest product. */
void softmax_shift(long V, const char *logits, double inv_t, const char *w) {
    const float *l = DATA(logits);
    double *pw = (double *)array_data(w), m = -__builtin_inf();
    for (long j = 0; j < V; j++) {
        pw[j] = (double)l[j] * inv_t;
        m = pw[j] > m ? pw[j] : m;
    }
    for (long j = 0; j < V; j++)
        pw[j] -= m;
}

/* cum (V,) out: the running sum of the weights w (V,) >= 0; returns the first j with
 * cum[j] > u * total (total = cum[V - 1]), or when u * total rounded up to total, the first with
 * cum[j] >= total; -1 when total is not finite (NaN weights). */
long cumulative_search(long V, const char *w, const char *cum, double u) {
    const double *pw = (const double *)array_data(w);
    double *c = (double *)array_data(cum), s = 0.0;
    for (long j = 0; j < V; j++)
        c[j] = s = (j ? s + pw[j] : pw[j]);
    double total = c[V - 1], v = u * total;
    if (!(total - total == 0.0))  /* NaN or infinite */
        return -1;
    long lo = 0, hi = V;  /* the first j with c[j] > v: c[lo - 1] <= v < c[hi] */
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (c[mid] > v) hi = mid; else lo = mid + 1;
    }
    if (lo < V)
        return lo;
    for (lo = 0, hi = V - 1; lo < hi;) {  /* the first j with c[j] >= total */
        long mid = lo + (hi - lo) / 2;
        if (c[mid] >= total) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* exp_ over an array, for the tests' check of its accuracy. */
void exp_array(long n, const float *restrict x, float *restrict y) {
    for (long j = 0; j < n; j++) y[j] = exp_(x[j]);
}

void tanh_array(long n, const float *restrict x, float *restrict y) {
    for (long j = 0; j < n; j++) y[j] = tanh_(x[j]);
}
