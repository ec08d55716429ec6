/* The recurrent cells' elementwise work, fused: one pass per time step instead of a dozen
 * NumPy calls (charrnn/nn/fused.py compiles and loads this; charrnn/nn/cells.py calls it).
 *
 * float32 only. The matrix multiplies stay in NumPy (OpenBLAS); each function here is what one
 * time step of a cell does between two multiplies, with the same formulas, in the same layouts
 * (time-major; LSTM gate columns i, f, o, g; GRU r, z, n). For the LSTM's loops:
 *
 *   forward:  u_t = b_t - [xp_ifo, 2 xp_g]   (b: h_{t-1} Wh scaled by cells._gate_scale, -1
 *                                             for i f o and -2 for g, so u = -a, -2 a_g)
 *             s = 1 / (1 + exp(u_t))   [i f o] = s, g = 2 s - 1
 *             c_t = f c_{t-1} + i g,   tanh(c_t),   h_t = o tanh(c_t)
 *   backward: dh = dh + dhs_t,  dc = dc + dh o (1 - tanh(c_t)^2),
 *             da_t = [dc K_i, dc K_f, dh K_o, dc K_g] (the factors K of cells.lstm_backward,
 *             computed here from the cached activations),  dc = f_t dc
 *
 * Three kinds of entry point: the time loops' steps (lstm_, gru_, rnn_forward_step and
 * _backward_step), called once per step of a chunk with raw pointers that fused.py computes once
 * per chunk; the single steps lstm_step and gru_step (cells.lstm_step and gru_step: what
 * predict and beam search run, one call per layer and character) and lstm_layer_step and
 * gru_layer_step (the same with the input projection's row gather and bias: a sampler's layer,
 * fused.stack_stepper), which take the NumPy arrays themselves (see array_data); and exp_array,
 * tanh_array for the tests.
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
void lstm_forward_step(long n, long H, float *restrict a, const float *restrict b,
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
void lstm_backward_step(long n, long H, float *restrict da, const float *restrict dh,
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
void gru_forward_step(long n, long H, float *restrict a, const float *restrict gh,
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
void gru_backward_step(long n, long H, float *restrict dgh, float *restrict dxn,
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
void rnn_forward_step(long m, float *restrict a, const float *restrict b) {
    for (long j = 0; j < m; j++) a[j] = tanh_(a[j] + b[j]);
}

/* One vanilla RNN backward step (cells.rnn_backward), over the m = n H values of a step:
 * da (m): da_t out;  dh (m): da_{t+1} Wh^T (dh_T at the last step) in;  dhs (m): dL/dh_t from
 * above;  h (m): h_t.   da_t = (dh + dhs_t)(1 - h_t^2), tanh's derivative from its output. */
void rnn_backward_step(long m, float *restrict da, const float *restrict dh,
                       const float *restrict dhs, const float *restrict h) {
    for (long j = 0; j < m; j++) da[j] = (dh[j] + dhs[j]) * (1.0f - h[j] * h[j]);
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

/* Row r's input projection for the layer steps below: row ids[r] of the (rows, G) table x when
 * rows > 0 (layer 0 of a model fed ids: the rows of its Wx; a negative id counts from the end,
 * as NumPy's indexing does), else row r of the (n, G) array x. */
static inline const float *input_row(const float *x, const long *ids, long rows, long r, long G) {
    if (rows <= 0)
        return x + r * G;
    return x + (ids[r] < 0 ? ids[r] + rows : ids[r]) * G;
}

/* 0 if every one of the n ids is a row of a table of `rows` rows, else r + 1 for the first
 * row r whose id is not. */
static long check_ids(long n, const long *ids, long rows) {
    for (long r = 0; r < n; r++)
        if (ids[r] < -rows || ids[r] >= rows)
            return r + 1;
    return 0;
}

/* One step of one layer of a stack (charrnn.nn.fused.stack_stepper), the input projection and
 * its bias added here: lstm_step with row r's input projection input_row(x, ids, rows, r) + b,
 * b (4H). ids (n,) intp is read only when rows > 0. Returns 0, or r + 1 when ids[r] is out of
 * range (then nothing is written). */
long lstm_layer_step(long n, long H, long rows, const char *a, const char *x, const char *ids,
                     const char *b, const char *c_prev, const char *h, const char *c) {
    const long G = 4 * H;
    const long *pi = rows > 0 ? (const long *)array_data(ids) : NULL;
    const float *pa = DATA(a), *px = DATA(x), *pb = DATA(b), *pc = DATA(c_prev);
    float *ph = DATA(h), *pn = DATA(c);
    long bad = rows > 0 ? check_ids(n, pi, rows) : 0;
    if (bad)
        return bad;
    for (long r = 0; r < n; r++)
        lstm_row_(H, pa + r * G, input_row(px, pi, rows, r, G), pb, pc + r * H, ph + r * H,
                  pn + r * H);
    return 0;
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

/* gru_step as one layer of a stack (see lstm_layer_step): row r's input projection is
 * input_row(x, ids, rows, r) + b, b (3H). Returns 0, or r + 1 when ids[r] is out of range. */
long gru_layer_step(long n, long H, long rows, const char *gh, const char *x, const char *ids,
                    const char *b, const char *bhn, const char *h_prev, const char *h) {
    const long G = 3 * H;
    const long *pi = rows > 0 ? (const long *)array_data(ids) : NULL;
    const float *pg = DATA(gh), *px = DATA(x), *pb = DATA(b), *pn = DATA(bhn);
    const float *pp = DATA(h_prev);
    float *ph = DATA(h);
    long bad = rows > 0 ? check_ids(n, pi, rows) : 0;
    if (bad)
        return bad;
    for (long r = 0; r < n; r++)
        gru_row_(H, pg + r * G, input_row(px, pi, rows, r, G), pb, pn, pp + r * H, ph + r * H);
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
