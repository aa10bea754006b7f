/* bench/raster_model.py: a raster-order candidate model with adaptive counts and a range coder.
   A measurement prototype for a possible coding-1 method 3 (bench/README.md), not part of the format. */
#include <stdint.h>
#include <stdlib.h>

#define TOP (1u << 24)
#define INC 24
#define LIMIT (1 << 13)
#define NTOK 20

typedef struct { uint64_t low; uint32_t range; uint8_t cache; uint64_t csize; uint8_t *out; size_t pos; } Enc;
typedef struct { uint32_t code, range; const uint8_t *in; size_t pos, n; } Dec;

static void shift_low(Enc *e) {
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32)) {
        uint8_t carry = (uint8_t)(e->low >> 32), t = e->cache;
        do { e->out[e->pos++] = (uint8_t)(t + carry); t = 0xFF; } while (--e->csize);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->csize++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}
static void enc_put(Enc *e, uint32_t cum, uint32_t f, uint32_t tot) {
    uint32_t r = e->range / tot; e->low += (uint64_t)r * cum; e->range = r * f;
    while (e->range < TOP) { e->range <<= 8; shift_low(e); }
}
static uint8_t din(Dec *d) { return d->pos < d->n ? d->in[d->pos++] : 0; }
static uint32_t dec_get(Dec *d, uint32_t tot, uint32_t *r) {
    *r = d->range / tot; uint32_t v = d->code / *r; return v < tot ? v : tot - 1;
}
static void dec_take(Dec *d, uint32_t r, uint32_t cum, uint32_t f) {
    d->code -= r * cum; d->range = r * f;
    while (d->range < TOP) { d->code = (d->code << 8) | din(d); d->range <<= 8; }
}

typedef struct { uint16_t f[NTOK]; uint32_t tot; } Tab;
static void tab_init(Tab *t, int n) { for (int i = 0; i < NTOK; i++) t->f[i] = i < n ? 16 : 0; t->tot = 16 * n; }
static void tab_up(Tab *t, int s, int n) {
    t->f[s] += INC; t->tot += INC;
    if (t->tot > LIMIT) { t->tot = 0; for (int i = 0; i < n; i++) { t->f[i] = (t->f[i] + 1) >> 1; t->tot += t->f[i]; } }
}

/* Model state shared by encoder and decoder. */
typedef struct { int K, C; const uint8_t *pal; Tab *choice; Tab *esc; uint16_t *order; uint16_t *pos; uint8_t *near; } Model;

static int token_of(int r, int *nb, int *extra) {
    if (r < 8) { *nb = 0; *extra = 0; return r; }
    int lg = 31 - __builtin_clz(r);         /* >= 3 */
    *nb = lg - 1; *extra = r & ((1 << (lg - 1)) - 1);
    return 8 + 2 * (lg - 3) + ((r >> (lg - 1)) & 1);
}
static int from_token(int t, int extra) {
    if (t < 8) return t;
    int lg = (t - 8) / 2 + 3, hi = (t - 8) & 1;
    return (1 << lg) | (hi << (lg - 1)) | extra;
}

static int nearest(Model *m, const int *col) {
    uint32_t key = 0; for (int c = 0; c < m->C; c++) key = (key << 8) | (uint32_t)col[c];
    if (m->near && m->near[key]) return m->near[key] - 1;
    int best = 0; long bd = -1;
    for (int i = 0; i < m->K; i++) {
        long d = 0; for (int c = 0; c < m->C; c++) { long v = (long)m->pal[i * m->C + c] - col[c]; d += v * v; }
        if (bd < 0 || d < bd) { bd = d; best = i; }
    }
    if (m->near && best < 255) m->near[key] = (uint8_t)(best + 1);
    return best;
}

/* Context of one pixel: candidates (count desc, ties W,N,NE,NW), m, key. */
static inline int prepare(const int32_t *lab, int W, int y, int x, int *cand, int *nbv) {
    int nb[4];
    nb[0] = x > 0 ? lab[y * W + x - 1] : -1;
    nb[1] = y > 0 ? lab[(y - 1) * W + x] : -1;
    nb[2] = (y > 0 && x + 1 < W) ? lab[(y - 1) * W + x + 1] : -1;
    nb[3] = (y > 0 && x > 0) ? lab[(y - 1) * W + x - 1] : -1;
    int key = 0, b = 0;
    for (int i = 0; i < 4; i++) for (int j = i + 1; j < 4; j++, b++) key |= (nb[i] == nb[j]) << b;
    for (int i = 0; i < 4; i++) key |= (nb[i] < 0) << (6 + i);
    int ww = x > 1 ? lab[y * W + x - 2] : -1, nn = y > 1 ? lab[(y - 2) * W + x] : -1;
    key |= (ww == nb[0]) << 10; key |= (nn == nb[1]) << 11;
    int cnt[4], m = 0;
    for (int i = 0; i < 4; i++) {
        cnt[i] = 0; if (nb[i] < 0) continue;
        int first = 1; for (int j = 0; j < i; j++) if (nb[j] == nb[i]) first = 0;
        if (!first) continue;
        for (int j = i; j < 4; j++) cnt[i] += nb[j] == nb[i];
    }
    /* order by count desc, then position */
    for (int c = 4; c >= 1; c--) for (int i = 0; i < 4; i++) if (cnt[i] == c) cand[m++] = nb[i];
    for (int i = 0; i < 4; i++) nbv[i] = nb[i];
    return key | (m << 12);
}

static int mean_ref(Model *m, const int *nb) {
    int col[4] = {0, 0, 0, 0}, n = 0;
    for (int i = 0; i < 4; i++) if (nb[i] >= 0) { n++; for (int c = 0; c < m->C; c++) col[c] += m->pal[nb[i] * m->C + c]; }
    if (!n) return 0;
    for (int c = 0; c < m->C; c++) col[c] = (2 * col[c] + n) / (2 * n);
    return nearest(m, col);
}

static void model_init(Model *m, int K, int C, const uint8_t *pal) {
    m->K = K; m->C = C; m->pal = pal;
    m->choice = malloc(sizeof(Tab) * (1 << 15));
    for (int i = 0; i < (1 << 15); i++) tab_init(&m->choice[i], (i >> 12) + 1);
    m->esc = malloc(sizeof(Tab) * 8);
    for (int i = 0; i < 8; i++) tab_init(&m->esc[i], NTOK);
    m->order = malloc(2 * K * K); m->pos = malloc(2 * K * K);
    long *dist = malloc(sizeof(long) * K);
    for (int a = 0; a < K; a++) {
        for (int b = 0; b < K; b++) { long d = 0; for (int c = 0; c < C; c++) { long v = (long)pal[a * C + c] - pal[b * C + c]; d += v * v; } dist[b] = d * K + b; }
        /* every entry by distance from a, ties to the lower index (insertion sort) */
        uint16_t *o = m->order + a * K;
        for (int b = 0; b < K; b++) o[b] = b;
        for (int i = 1; i < K; i++) { uint16_t v = o[i]; int j = i - 1; while (j >= 0 && dist[o[j]] > dist[v]) { o[j + 1] = o[j]; j--; } o[j + 1] = v; }
        for (int b = 0; b < K; b++) m->pos[a * K + o[b]] = b;
    }
    free(dist);
    m->near = C <= 3 ? calloc(1u << (8 * C), 1) : NULL;
}
static void model_free(Model *m) { free(m->choice); free(m->esc); free(m->order); free(m->pos); free(m->near); }

size_t encode(const int32_t *lab, int H, int W, int K, int C, const uint8_t *pal, uint8_t *out) {
    Model m; model_init(&m, K, C, pal);
    Enc e = {0, 0xFFFFFFFFu, 0, 1, out, 0};
    int cand[4], nb[4];
    for (int y = 0; y < H; y++) for (int x = 0; x < W; x++) {
        int ctx = prepare(lab, W, y, x, cand, nb), mm = ctx >> 12, v = lab[y * W + x];
        int s = mm;
        for (int i = 0; i < mm; i++) if (cand[i] == v) { s = i; break; }
        Tab *t = &m.choice[ctx];
        if (mm) { uint32_t cum = 0; for (int i = 0; i < s; i++) cum += t->f[i]; enc_put(&e, cum, t->f[s], t->tot); tab_up(t, s, mm + 1); }
        if (s == mm) {
            int ref = mm ? mean_ref(&m, nb) : 0;
            int p = m.pos[ref * K + v], before = 0;
            for (int i = 0; i < mm; i++) before += m.pos[ref * K + cand[i]] < p;
            int r = p - before, nbits, extra, tk = token_of(r, &nbits, &extra);
            Tab *te = &m.esc[mm];
            uint32_t cum = 0; for (int i = 0; i < tk; i++) cum += te->f[i];
            enc_put(&e, cum, te->f[tk], te->tot); tab_up(te, tk, NTOK);
            for (int b = nbits - 1; b >= 0; b--) enc_put(&e, (extra >> b) & 1, 1, 2);
        }
    }
    for (int i = 0; i < 5; i++) shift_low(&e);
    model_free(&m);
    return e.pos;
}

int decode(const uint8_t *in, size_t n, int H, int W, int K, int C, const uint8_t *pal, int32_t *lab) {
    Model m; model_init(&m, K, C, pal);
    Dec d = {0, 0xFFFFFFFFu, in, 0, n};
    for (int i = 0; i < 5; i++) d.code = (d.code << 8) | din(&d);
    int cand[4], nb[4];
    for (int y = 0; y < H; y++) for (int x = 0; x < W; x++) {
        int ctx = prepare(lab, W, y, x, cand, nb), mm = ctx >> 12, s = 0;
        if (mm) {
            Tab *t = &m.choice[ctx]; uint32_t r, v = dec_get(&d, t->tot, &r), cum = 0;
            while (cum + t->f[s] <= v) cum += t->f[s++];
            dec_take(&d, r, cum, t->f[s]); tab_up(t, s, mm + 1);
        }
        int label;
        if (s < mm) label = cand[s];
        else {
            int ref = mm ? mean_ref(&m, nb) : 0;
            Tab *te = &m.esc[mm]; uint32_t r, v = dec_get(&d, te->tot, &r), cum = 0; int tk = 0;
            while (cum + te->f[tk] <= v) cum += te->f[tk++];
            dec_take(&d, r, cum, te->f[tk]); tab_up(te, tk, NTOK);
            int nbits = tk < 8 ? 0 : (tk - 8) / 2 + 2, extra = 0;
            for (int b = 0; b < nbits; b++) { uint32_t rr, bit = dec_get(&d, 2, &rr); dec_take(&d, rr, bit, 1); extra = (extra << 1) | bit; }
            int rank = from_token(tk, extra);
            /* rank among non-candidates in order from ref */
            int p = 0, skip = 0;
            for (p = 0; p < K; p++) {
                int e = m.order[ref * K + p], isc = 0;
                for (int i = 0; i < mm; i++) isc |= cand[i] == e;
                if (isc) continue;
                if (skip++ == rank) break;
            }
            if (p >= K) { model_free(&m); return -1; }
            label = m.order[ref * K + p];
        }
        lab[y * W + x] = label;
    }
    model_free(&m);
    return 0;
}
