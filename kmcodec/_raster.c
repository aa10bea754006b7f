/* kmcodec._raster: coding 1, method 3 (spec/kmq.md §11.15) in C.

   The range-coded part R of one stripe (the stream is the method byte 3, the stripe
   count S, S - 1 part lengths, then the parts; raster_coding.py splits it), the
   stripe coded as an image of its own:

     pixels in raster order; for pixel (x, y) the neighbours W, N, NE, NW,
     absent outside the stripe
     history     two tables of 2^18 labels (or empty), long and short; a pixel's
                 slot is an FNV-1a hash of the labels + 1 (0 absent) of 10 pixels
                 around it (long) or of the first 3 (short); once the label is
                 known it goes into both slots. P1, P2: the labels in the slots.
     candidates  the distinct labels of the present neighbours, most held first,
                 ties in neighbour order (m0 = 0 ... 4, 0 only at (0, 0)); then
                 P1, then P2, each when there and new; m = 0 ... 6 in all
     context t   bits 0-5 pairs agree (W N, W NE, W NW, N NE, N NW, NE NW),
                 6-9 W N NE NW absent, 10 (x-2, y) agrees with W, 11 (x, y-2)
                 with N, 12-14 m, 15-17 a1, 18-20 a2 (where P1, P2 went:
                 0 missing, i + 1 candidate i, 5 or 6 appended)
     m >= 1      a symbol s of choice table t (m + 1 symbols): s < m takes
                 candidate s, s = m escapes
     escape      a token of escape table m (Z = 1 + token(K - 1) symbols), then
                 its extra bits (fixed table 1:1, most significant first);
                 r = token below 8, else 2^g + j 2^(g-1) + extra; the label is
                 entry r of the palette ordered by distance from ref, ties by
                 index, without the candidates; ref = the entry nearest the mean
                 colour of the present neighbours (0 at pixel (0, 0))
     tables      every frequency starts at 16, grows by 24 when coded; above a
                 total of 8192 all halve, rounding up
     coder       range 2^32 - 1, code = bytes 1-4 of R (byte 0 must be 0); a
                 symbol: q = range / T, v = code / q (v >= T is invalid), then
                 code -= q c(s), range = q f(s), one byte in while range < 2^24
     end         every byte of R read, code 0

   encode() writes R as the spec's non-normative encoder does (LZMA's carry
   scheme); decode() reports the first failure in decoding order as
   (kind, pixel, a, b), which kmcodec/raster_coding.py turns into the §7 error.
   The pixel loops run without the GIL. Every allocation is set by K, C and the
   image's width, never by a byte of R. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOP (1u << 24)        /* the coder renormalises below 2^24 */
#define START 16              /* adaptive tables: first frequency */
#define STEP 24               /*   growth of a coded symbol */
#define LIMIT 8192            /*   halve when the total is above this */
#define MAX_K 256
#define MAX_Z 18              /* 1 + token(255) */
#define MAX_M 6               /* 4 neighbour candidates and 2 predictions */
#define SLOT_BITS 18          /* history tables: 2^18 entries each (2^20 cost 30% more time at K = 256 in cache misses, for 0.4% in size) */
#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u
#define NOT_LABEL (-2)        /* an unused candidate slot: equals no label */
#define PAD_LEFT 3            /* rows hold label + 1, 0 = absent, from x - 3 ... */
#define PAD_RIGHT 2           /* ... to x + 2 */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)(address))  /* MSVC and others: a hint only, so none */
#endif

typedef struct { uint16_t f[MAX_M + 1]; uint16_t total; } Choice;  /* totals stay <= 8192 + 24 */
typedef struct { uint16_t f[MAX_Z]; uint16_t total; } Escape;

/* Candidates of every neighbourhood, by bits 0-9 of t: the neighbour (0 W, 1 N, 2 NE,
   3 NW, 4 none) holding neighbour candidate s in bits 3s..3s+2, and m0 in bits 12-14.
   Then the 52 neighbourhoods that labels can make, numbered, so that the choice tables
   are one array by (neighbourhood, bits 10-11, a1, a2), and m follows from those: bits
   12-14 of t add nothing. Filled once at import. */
static uint16_t CANDIDATES[1024];
static uint16_t NEIGHBOURHOOD[1024];
static uint8_t NEIGHBOURHOOD_M0[1024];
static int NEIGHBOURHOODS;
#define CHOICE_TABLES (NEIGHBOURHOODS * 4 * 6 * 7)

static const char *const KIND_NAMES[] = {NULL, "first_byte", "value", "past_end", "left_over", "code", "rank"};
enum { OK, FIRST_BYTE, VALUE, PAST_END, LEFT_OVER, CODE, RANK, NO_MEMORY, BAD_LABEL };

typedef struct { int kind; size_t pixel; uint64_t a, b; } Fault;

static const int PAIRS[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};

static unsigned key_of(const int *nb)  /* bits 0-9 of t for neighbours W, N, NE, NW (-1 absent) */
{
    unsigned key = 0;
    for (int b = 0; b < 6; b++)
        key |= (unsigned)(nb[PAIRS[b][0]] == nb[PAIRS[b][1]]) << b;
    for (int i = 0; i < 4; i++)
        key |= (unsigned)(nb[i] < 0) << (6 + i);
    return key;
}

static void fill_tables(void)
{
    for (unsigned key = 0; key < 1024; key++) {
        int same[4][4] = {{0}}, count[4] = {0}, m = 0;
        unsigned word = 0;
        for (int b = 0; b < 6; b++)
            same[PAIRS[b][0]][PAIRS[b][1]] = same[PAIRS[b][1]][PAIRS[b][0]] = (key >> b) & 1;
        for (int i = 0; i < 4; i++) {
            int first = !((key >> (6 + i)) & 1);
            for (int j = 0; j < i; j++)
                first &= !(same[j][i] && !((key >> (6 + j)) & 1));
            if (!first)
                continue;
            count[i] = 1;
            for (int j = i + 1; j < 4; j++)
                count[i] += same[i][j] && !((key >> (6 + j)) & 1);
        }
        for (int c = 4; c >= 1; c--)      /* most held first, then neighbour order */
            for (int i = 0; i < 4; i++)
                if (count[i] == c)
                    word |= (unsigned)i << (3 * m++);
        for (int s = m; s < 4; s++)
            word |= 4u << (3 * s);
        CANDIDATES[key] = (uint16_t)(word | (unsigned)m << 12);
        NEIGHBOURHOOD_M0[key] = (uint8_t)m;
    }
    memset(NEIGHBOURHOOD, 0xFF, sizeof NEIGHBOURHOOD);
    NEIGHBOURHOODS = 0;
    for (int code = 0; code < 625; code++) {  /* W, N, NE, NW each absent or one of 4 labels */
        int nb[4] = {code % 5 - 1, code / 5 % 5 - 1, code / 25 % 5 - 1, code / 125 - 1};
        unsigned key = key_of(nb);
        if (NEIGHBOURHOOD[key] == 0xFFFF)
            NEIGHBOURHOOD[key] = (uint16_t)NEIGHBOURHOODS++;
    }
}

static int token_of(unsigned r, int *nbits, unsigned *extra)
{
    int g = 0;
    if (r < 8) {
        *nbits = 0;
        *extra = 0;
        return (int)r;
    }
    while (r >> (g + 1))
        g++;
    *nbits = g - 1;
    *extra = r & ((1u << (g - 1)) - 1);
    return 8 + 2 * (g - 3) + (int)((r >> (g - 1)) & 1);
}

static inline void adapt(uint16_t *f, uint16_t *total, int n, int s)
{
    f[s] += STEP;
    *total += STEP;
    if (*total > LIMIT) {
        unsigned sum = 0;
        for (int i = 0; i < n; i++) {
            f[i] = (uint16_t)((f[i] + 1) >> 1);
            sum += f[i];
        }
        *total = (uint16_t)sum;
    }
}

/* ---- the model both directions share --------------------------------------------- */

#define CACHE_BITS 12          /* nearest entries of the last mean colours met: 32 kB */
#define MAX_SUM (4 * 255)

typedef struct {
    int k, channels, z;
    const uint8_t *palette;
    Choice *choice;            /* CHOICE_TABLES, by Near.context */
    Escape escape[MAX_M + 1];  /* by m */
    uint8_t *history;          /* long table, then short: (label + 1) mod 256, 0 = empty or 255 */
    uint8_t *is_255;           /* a bit per entry: 1 when its 0 means label 255 (only K = 256 writes it) */
    uint8_t *order;            /* row a: all entries by distance from a, ties by index */
    uint8_t *built;            /* whether row a of order is filled (rows are made on first use) */
    uint64_t *cache;           /* by hash of a mean colour: colour | (nearest + 1) << 32; 0 = empty */
    uint16_t *rows;            /* three rows of label + 1 (0 = absent), padded with 0s */
    uint64_t colour[MAX_K + 1];/* entry l's channels in 16-bit lanes at l + 1; [0] = 0 for absent */
    uint8_t by_sum[MAX_K];     /* entries by the sum of their channels, ties by index */
    int16_t sum_of[MAX_K];     /* that sum, in by_sum's order */
    uint16_t first_at[MAX_SUM + 2]; /* the first place in by_sum with a sum >= s */
} Model;

static void model_free(Model *md)
{
    free(md->choice);
    free(md->history);
    free(md->is_255);
    free(md->order);
    free(md->built);
    free(md->cache);
    free(md->rows);
}

static int model_init(Model *md, int k, int channels, const uint8_t *palette, size_t width)
{
    int nbits, sums[MAX_K];
    unsigned extra, count[MAX_SUM + 2] = {0};
    memset(md, 0, sizeof *md);
    md->k = k;
    md->channels = channels;
    md->palette = palette;
    md->z = 1 + token_of((unsigned)(k - 1), &nbits, &extra);
    md->choice = malloc(sizeof(Choice) * (size_t)CHOICE_TABLES);
    md->history = calloc((size_t)2 << SLOT_BITS, 1);  /* a byte an entry: half the cache misses of two */
    md->is_255 = calloc((size_t)2 << SLOT_BITS >> 3, 1);
    md->order = malloc((size_t)k * (size_t)k);
    md->built = calloc((size_t)k, 1);
    md->cache = calloc((size_t)1 << CACHE_BITS, sizeof(uint64_t));
    md->rows = calloc(3 * (width + PAD_LEFT + PAD_RIGHT), sizeof(uint16_t));
    if (!md->choice || !md->history || !md->is_255 || !md->order || !md->built || !md->cache || !md->rows) {
        model_free(md);
        return -1;
    }
    for (unsigned key = 0; key < 1024; key++) {
        if (NEIGHBOURHOOD[key] == 0xFFFF)
            continue;
        for (int i = 0; i < 4 * 6 * 7; i++) {  /* bits 10-11, a1, a2 */
            int a1 = i / 7 % 6, a2 = i % 7, n = NEIGHBOURHOOD_M0[key] + (a1 == 5) + (a2 == 6) + 1;
            Choice *table = &md->choice[NEIGHBOURHOOD[key] * 4 * 6 * 7 + i];
            for (int s = 0; s <= MAX_M; s++)
                table->f[s] = s < n ? START : 0;
            table->total = (uint16_t)(START * n);
        }
    }
    for (int m = 0; m <= MAX_M; m++) {
        for (int s = 0; s < MAX_Z; s++)
            md->escape[m].f[s] = s < md->z ? START : 0;
        md->escape[m].total = (uint16_t)(START * md->z);
    }
    for (int l = 0; l < k; l++) {
        const uint8_t *p = palette + (size_t)l * channels;
        uint64_t packed = 0;
        sums[l] = 0;
        for (int c = 0; c < channels; c++) {
            packed |= (uint64_t)p[c] << (16 * c);
            sums[l] += p[c];
        }
        md->colour[l + 1] = packed;
        count[sums[l] + 1]++;
    }
    for (int s = 0; s <= MAX_SUM; s++)  /* a counting sort: stable, so ties stay by index */
        count[s + 1] += count[s];
    for (int s = 0; s <= MAX_SUM + 1; s++)
        md->first_at[s] = (uint16_t)count[s];
    for (int l = 0; l < k; l++) {
        unsigned place = count[sums[l]]++;
        md->by_sum[place] = (uint8_t)l;
        md->sum_of[place] = (int16_t)sums[l];
    }
    return 0;
}

static unsigned distance(const uint8_t *p, const int *colour, int channels)
{
    unsigned d = 0;
    for (int c = 0; c < channels; c++) {
        int v = (int)p[c] - colour[c];
        d += (unsigned)(v * v);
    }
    return d;
}

/* Row `ref` of the order table, made on its first use: a stable radix sort by
   distance (< 2^18, two passes of 9 bits) of the entries in index order. */
static const uint8_t *order_from(Model *md, int ref)
{
    uint8_t *row = md->order + (size_t)ref * md->k;
    if (!md->built[ref]) {
        uint32_t d[MAX_K];
        uint8_t tmp[MAX_K];
        int colour[4], k = md->k;
        const uint8_t *p = md->palette + (size_t)ref * md->channels;
        for (int c = 0; c < md->channels; c++)
            colour[c] = p[c];
        for (int e = 0; e < k; e++)
            d[e] = distance(md->palette + (size_t)e * md->channels, colour, md->channels);
        for (int pass = 0; pass < 2; pass++) {
            unsigned start[513] = {0};
            int shift = 9 * pass;
            uint8_t *to = pass ? row : tmp;
            for (int i = 0; i < k; i++) {
                int e = pass ? tmp[i] : i;
                start[(d[e] >> shift & 511) + 1]++;
            }
            for (int b = 0; b < 512; b++)
                start[b + 1] += start[b];
            for (int i = 0; i < k; i++) {
                int e = pass ? tmp[i] : i;
                to[start[d[e] >> shift & 511]++] = (uint8_t)e;
            }
        }
        md->built[ref] = 1;
    }
    return row;
}

/* The entry nearest `mean`, ties to the lower index. Entries are visited by how far
   their channel sum lies from the mean's, nearest first; since (sum difference)^2 <= C d,
   the search stops once that bound exceeds the best distance found. */
static int nearest_entry(const Model *md, const int *mean, int sum)
{
    int up = md->first_at[sum], down = up - 1, best = 0;
    uint64_t best_d = UINT64_MAX / 8;
    for (;;) {
        int du = up < md->k ? md->sum_of[up] - sum : 4 * MAX_SUM, dd = down >= 0 ? sum - md->sum_of[down] : 4 * MAX_SUM;
        int place, gap;
        if (du <= dd) {
            place = up++;
            gap = du;
        } else {
            place = down--;
            gap = dd;
        }
        if ((uint64_t)gap * (uint64_t)gap > (uint64_t)md->channels * best_d || gap == 4 * MAX_SUM)
            return best;
        int e = md->by_sum[place];
        uint64_t d = distance(md->palette + (size_t)e * md->channels, mean, md->channels);
        if (d < best_d || (d == best_d && e < best)) {
            best_d = d;
            best = e;
        }
    }
}

/* The entry nearest the mean colour of the present neighbours (§11.13), for m >= 2. */
static int mean_reference(Model *md, const int *nb)
{
    uint64_t sum = md->colour[nb[0] + 1] + md->colour[nb[1] + 1] + md->colour[nb[2] + 1] + md->colour[nb[3] + 1];
    unsigned q = (unsigned)((nb[0] >= 0) + (nb[1] >= 0) + (nb[2] >= 0) + (nb[3] >= 0));  /* present neighbours */
    int mean[4], total = 0;
    uint32_t key = 0;
    for (int c = 0; c < md->channels; c++) {
        unsigned s = (unsigned)(sum >> (16 * c)) & 0xFFFF;
        mean[c] = (int)((2 * s + q) / (2 * q));  /* rounded half up */
        total += mean[c];
        key = key << 8 | (uint32_t)mean[c];
    }
    uint64_t *slot = &md->cache[(key * 0x9E3779B1u) >> (32 - CACHE_BITS)];
    if ((uint32_t)*slot == key && *slot >> 32)
        return (int)(*slot >> 32) - 1;
    int best = nearest_entry(md, mean, total);
    *slot = key | (uint64_t)(best + 1) << 32;
    return best;
}

/* ref of an escape: entry 0 with no neighbour; the one neighbour candidate when all present
   neighbours agree (their mean is its colour, and the nearest entry, the lowest of that
   colour, orders the palette as it does: §11.13); else the mean's nearest. */
static inline int reference(Model *md, const int *nb, int m0, int first)
{
    if (m0 == 0)
        return 0;
    if (m0 == 1)
        return first;
    return mean_reference(md, nb);
}


/* One pixel's neighbourhood, from the rows above (up2, up) and its own row (row), which
   hold label + 1 (0 = absent); the history slots it reads are those it will set. */
typedef struct {
    int nb[5];             /* labels of W, N, NE, NW (-1 absent), and NOT_LABEL */
    int cand[MAX_M];       /* NOT_LABEL past m */
    int m0, m;
    size_t context;        /* the choice table's index */
    size_t long_slot, short_slot;  /* in md->history */
} Near;

/* The label in a history entry, or -1 when it is empty. */
static inline int recalled(const Model *md, size_t at)
{
    unsigned b = md->history[at];
    if (b)
        return (int)b - 1;
    return md->is_255[at >> 3] >> (at & 7) & 1 ? 255 : -1;
}

static inline void remember(Model *md, size_t at, int label)
{
    md->history[at] = (uint8_t)(label + 1);
    if (label == 255)
        md->is_255[at >> 3] |= (uint8_t)(1u << (at & 7));
}

/* The long and short hashes of pixel x (§11.15), given its W as label + 1 (0 absent). */
typedef struct { uint32_t whole, first; } Hashes;

static inline Hashes hashes_of(const uint16_t *up2, const uint16_t *up, const uint16_t *row, size_t x, unsigned w)
{
    uint32_t h = FNV_BASIS;
    Hashes out;
    h = (h ^ w) * FNV_PRIME;  /* the long list: (x-1, y) (x, y-1) (x-1, y-1), the short one's end, */
    h = (h ^ up[x]) * FNV_PRIME;
    h = (h ^ up[x - 1]) * FNV_PRIME;
    out.first = h;
    h = (h ^ up[x + 1]) * FNV_PRIME;  /* then (x+1, y-1) (x-2, y) (x, y-2) (x+1, y-2) (x-1, y-2) (x-3, y) (x+2, y-1) */
    h = (h ^ row[x - 2]) * FNV_PRIME;
    h = (h ^ up2[x]) * FNV_PRIME;
    h = (h ^ up2[x + 1]) * FNV_PRIME;
    h = (h ^ up2[x - 1]) * FNV_PRIME;
    h = (h ^ row[x - 3]) * FNV_PRIME;
    h = (h ^ up[x + 2]) * FNV_PRIME;
    out.whole = h;
    return out;
}

static inline size_t long_slot(Hashes h)
{
    return (h.whole ^ h.whole >> 15) & ((1u << SLOT_BITS) - 1);
}

static inline size_t short_slot(Hashes h)
{
    return ((size_t)1 << SLOT_BITS) + ((h.first ^ h.first >> 15) & ((1u << SLOT_BITS) - 1));
}

/* w is row[x - 1]; `hashes` are pixel x's, from hashes_of(): the decoder works them out
   a pixel early. */
static inline void near_of(Model *md, const uint16_t *up2, const uint16_t *up, const uint16_t *row, size_t x, unsigned w, Hashes hashes, Near *p)
{
    unsigned n = up[x], ne = up[x + 1], nw = up[x - 1];
    unsigned key = (unsigned)(w == n) | (unsigned)(w == ne) << 1 | (unsigned)(w == nw) << 2
                 | (unsigned)(n == ne) << 3 | (unsigned)(n == nw) << 4 | (unsigned)(ne == nw) << 5
                 | (unsigned)(w == 0) << 6 | (unsigned)(n == 0) << 7 | (unsigned)(ne == 0) << 8 | (unsigned)(nw == 0) << 9;
    unsigned word = CANDIDATES[key], a1 = 0, a2 = 0;
    int m;
    p->long_slot = long_slot(hashes);
    p->short_slot = short_slot(hashes);
    p->nb[0] = (int)w - 1;
    p->nb[1] = (int)n - 1;
    p->nb[2] = (int)ne - 1;
    p->nb[3] = (int)nw - 1;
    p->nb[4] = NOT_LABEL;
    p->cand[0] = p->nb[word & 7];
    p->cand[1] = p->nb[word >> 3 & 7];
    p->cand[2] = p->nb[word >> 6 & 7];
    p->cand[3] = p->nb[word >> 9 & 7];
    p->cand[4] = p->cand[5] = NOT_LABEL;
    p->m0 = m = (int)(word >> 12);
    int label = recalled(md, p->long_slot);
    if (label >= 0) {  /* P1: neighbour candidate i gives a1 = i + 1; else appended, 5 */
        while (a1 < 4 && p->cand[a1] != label)
            a1++;
        if (a1 == 4)
            p->cand[m++] = label;
        a1++;
    }
    label = recalled(md, p->short_slot);
    if (label >= 0) {  /* P2: candidate i (of up to 5) gives a2 = i + 1; else appended, 6 */
        while (a2 < 5 && p->cand[a2] != label)
            a2++;
        if (a2 == 5)
            p->cand[m++] = label;
        a2++;
    }
    p->m = m;
    p->context = (((size_t)NEIGHBOURHOOD[key] * 4 + (row[x - 2] == w) + 2 * (up2[x] == n)) * 6 + a1) * 7 + a2;
}

static inline int is_candidate(const Near *p, int e)
{
    return (e == p->cand[0]) | (e == p->cand[1]) | (e == p->cand[2]) | (e == p->cand[3]) | (e == p->cand[4]) | (e == p->cand[5]);
}

/* The three rows around row y in md->rows, each with PAD_LEFT absent pixels before x = 0. */
static inline uint16_t *row_at(Model *md, size_t width, size_t y)
{
    return md->rows + (y % 3) * (width + PAD_LEFT + PAD_RIGHT) + PAD_LEFT;
}

/* ---- decoding ---------------------------------------------------------------------- */

typedef struct {
    uint32_t range, code;
    const uint8_t *in;
    size_t pos, n;
} Decoder;

static inline int fill(Decoder *d)
{
    while (d->range < TOP) {
        if (d->pos == d->n)
            return PAST_END;
        d->code = d->code << 8 | d->in[d->pos++];
        d->range <<= 8;
    }
    return OK;
}

/* A symbol of an adaptive table (f, total, n symbols), then the table's update. The
   symbol is found by comparing code with q c(s), which needs no second division. */
static inline int decode_symbol(Decoder *d, uint16_t *f, uint16_t *total, int n, int *symbol, Fault *fault)
{
    uint32_t q = d->range / *total, cum = 0, next;
    int s = 0;
    if (d->code >= q * (uint64_t)*total) {  /* v = code / q >= T */
        fault->kind = VALUE;
        fault->a = d->code / q;
        fault->b = *total;
        return VALUE;
    }
    while ((next = cum + f[s]) * q <= d->code)  /* q T <= range < 2^32: no overflow */
        cum = next, s++;
    d->code -= q * cum;
    d->range = q * f[s];
    adapt(f, total, n, s);
    *symbol = s;
    return fill(d);
}

static inline int decode_bit(Decoder *d, int *bit, Fault *fault)
{
    uint32_t q = d->range >> 1;
    if (d->code >= 2 * (uint64_t)q) {
        fault->kind = VALUE;
        fault->a = d->code / q;
        fault->b = 2;
        return VALUE;
    }
    *bit = d->code >= q;
    d->code -= q & (uint32_t)-*bit;
    d->range = q;
    return fill(d);
}

static int decode_escape(Model *md, Decoder *d, const Near *p, int *label, Fault *fault)
{
    Escape *table = &md->escape[p->m];
    int tok, status = decode_symbol(d, table->f, &table->total, md->z, &tok, fault);
    unsigned r = (unsigned)tok;
    if (status)
        return status;
    if (tok >= 8) {
        int g = (tok - 8) / 2 + 3;
        unsigned extra = 0;
        for (int b = 0; b < g - 1; b++) {
            int bit;
            if ((status = decode_bit(d, &bit, fault)))
                return status;
            extra = extra << 1 | (unsigned)bit;
        }
        r = 1u << g | (unsigned)((tok - 8) & 1) << (g - 1) | extra;
    }
    if (r >= (unsigned)(md->k - p->m)) {
        fault->a = r;
        fault->b = (uint64_t)(md->k - p->m);
        return RANK;
    }
    const uint8_t *order = order_from(md, reference(md, p->nb, p->m0, p->cand[0]));
    for (int i = 0;; i++) {  /* r < K - m: entry r of the non-candidates exists */
        if (is_candidate(p, order[i]))
            continue;
        if (r-- == 0) {
            *label = order[i];
            return OK;
        }
    }
}

static int decode_pixels(Model *md, Decoder *d, uint8_t *out, size_t width, size_t height, Fault *fault)
{
    for (size_t y = 0; y < height; y++) {
        uint16_t *row = row_at(md, width, y), *up = row_at(md, width, y + 2), *up2 = row_at(md, width, y + 1);
        unsigned w = 0, guess = 0;  /* W (label + 1), and the W that `ahead` assumed; at x = 0, W is absent */
        Hashes ahead = hashes_of(up2, up, row, 0, 0);
        for (size_t x = 0; x < width; x++) {
            Near p;
            int label, status = OK;
            near_of(md, up2, up, row, x, w, w == guess ? ahead : hashes_of(up2, up, row, x, w), &p);
            if (x + 1 < width) {  /* the next pixel's hashes, guessing x repeats its W: off the critical path */
                guess = w;
                ahead = hashes_of(up2, up, row, x + 1, guess);
                PREFETCH(md->history + long_slot(ahead));
                PREFETCH(md->history + short_slot(ahead));
            }
            if (p.m) {
                Choice *table = &md->choice[p.context];
                int s = 0;
                status = decode_symbol(d, table->f, &table->total, p.m + 1, &s, fault);
                label = p.cand[s < MAX_M ? s : 0];
                if (!status && s == p.m)
                    status = decode_escape(md, d, &p, &label, fault);
            } else {
                status = decode_escape(md, d, &p, &label, fault);
            }
            if (status) {
                fault->kind = status;
                fault->pixel = y * width + x;
                return status;
            }
            w = (unsigned)(label + 1);
            row[x] = (uint16_t)w;
            remember(md, p.long_slot, label);
            remember(md, p.short_slot, label);
            out[y * width + x] = (uint8_t)label;
        }
    }
    fault->pixel = width * height;
    if (d->pos != d->n) {
        fault->a = d->pos;
        fault->b = d->n;
        return fault->kind = LEFT_OVER;
    }
    if (d->code) {
        fault->a = d->code;
        fault->b = 0;
        return fault->kind = CODE;
    }
    return OK;
}

static int decode_stream(const uint8_t *in, size_t n, size_t width, size_t height, const uint8_t *palette,
                         int k, int channels, uint8_t *out, Fault *fault)
{
    Decoder d = {0xFFFFFFFFu, 0, in, 0, n};
    Model md;
    int status;
    fault->pixel = 0;
    fault->a = n;  /* for past_end */
    fault->b = 0;
    if (n == 0)
        return fault->kind = PAST_END;
    if (in[0] != 0) {
        fault->a = in[0];
        return fault->kind = FIRST_BYTE;
    }
    if (n < 5)
        return fault->kind = PAST_END;
    d.code = (uint32_t)in[1] << 24 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 8 | in[4];
    d.pos = 5;
    if (model_init(&md, k, channels, palette, width))
        return NO_MEMORY;
    status = decode_pixels(&md, &d, out, width, height, fault);
    if (status == PAST_END)
        fault->a = n, fault->b = 0;
    model_free(&md);
    return status;
}

/* ---- encoding (§11.15, non-normative: LZMA's range encoder) ----------------------- */

typedef struct {
    uint64_t low, pending;   /* low: 33 bits; pending: held-back bytes, the cache and 0xFFs */
    uint32_t range;
    uint8_t cache;
    uint8_t *out;
    size_t len, cap;
    int failed;
} Encoder;

static void shift_low(Encoder *e)
{
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32)) {
        uint8_t carry = (uint8_t)(e->low >> 32), byte = e->cache;
        if (e->len + e->pending > e->cap) {
            size_t cap = 2 * e->cap + (size_t)e->pending;
            uint8_t *grown = e->failed ? NULL : realloc(e->out, cap);
            if (grown) {
                e->out = grown;
                e->cap = cap;
            } else {
                e->failed = 1;
            }
        }
        do {
            if (!e->failed)
                e->out[e->len++] = (uint8_t)(byte + carry);
            byte = 0xFF;
        } while (--e->pending);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static inline void put(Encoder *e, uint32_t cum, uint32_t f, uint32_t total)
{
    uint32_t q = e->range / total;
    e->low += (uint64_t)q * cum;
    e->range = q * f;
    while (e->range < TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

static inline void encode_symbol(Encoder *e, uint16_t *f, uint16_t *total, int n, int s)
{
    uint32_t cum = 0;
    for (int i = 0; i < s; i++)
        cum += f[i];
    put(e, cum, f[s], *total);
    adapt(f, total, n, s);
}

static void encode_escape(Model *md, Encoder *e, const Near *p, int label)
{
    const uint8_t *order = order_from(md, reference(md, p->nb, p->m0, p->cand[0]));
    unsigned r = 0;
    int nbits;
    unsigned extra;
    for (int i = 0; order[i] != label; i++)
        r += !is_candidate(p, order[i]);
    Escape *table = &md->escape[p->m];
    encode_symbol(e, table->f, &table->total, md->z, token_of(r, &nbits, &extra));
    for (int b = nbits - 1; b >= 0; b--)
        put(e, extra >> b & 1, 1, 2);
}

static int encode_pixels(Model *md, Encoder *e, const uint8_t *labels, size_t width, size_t height, Fault *fault)
{
    for (size_t y = 0; y < height; y++) {
        const uint8_t *in = labels + y * width;
        uint16_t *row = row_at(md, width, y), *up = row_at(md, width, y + 2), *up2 = row_at(md, width, y + 1);
        for (size_t x = 0; x < width; x++) {
            if (in[x] >= md->k) {
                fault->pixel = y * width + x;
                fault->a = in[x];
                return BAD_LABEL;
            }
            row[x] = (uint16_t)(in[x] + 1);
        }
        for (size_t x = 0; x < width; x++) {
            Near p;
            int v = in[x], s = 0;
            near_of(md, up2, up, row, x, row[x - 1], hashes_of(up2, up, row, x, row[x - 1]), &p);
            remember(md, p.long_slot, v);  /* read above; set for the pixels after */
            remember(md, p.short_slot, v);
            if (p.m) {
                while (s < p.m && p.cand[s] != v)
                    s++;
                encode_symbol(e, md->choice[p.context].f, &md->choice[p.context].total, p.m + 1, s);
                if (s < p.m)
                    continue;
            }
            encode_escape(md, e, &p, v);
        }
    }
    for (int i = 0; i < 5; i++)
        shift_low(e);
    return e->failed ? NO_MEMORY : OK;
}

/* ---- Python interface --------------------------------------------------------------- */

/* A C-contiguous buffer of `expected` bytes (or any length when expected < 0). */
static int get_bytes(PyObject *obj, Py_buffer *view, int writable, const char *name, Py_ssize_t expected)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        if (writable && PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s must be a writable buffer, got a read-only %s", name, Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    const char *format = view->format ? view->format : "B";
    if (*format == '@' || *format == '=' || *format == '<' || *format == '>' || *format == '!')
        format++;
    if (view->itemsize != 1 || strcmp(format, "B") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must hold uint8 (format 'B'), got format '%s' of %zd bytes an item",
                     name, view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    if (expected >= 0 && view->len != expected) {
        PyErr_Format(PyExc_ValueError, "%s must have %zd bytes, got %zd", name, expected, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Checks width, height, k, channels; sets *pixels = width * height. */
static int check_shape(Py_ssize_t width, Py_ssize_t height, int k, int channels, Py_ssize_t *pixels)
{
    if (width < 1 || height < 1) {
        PyErr_Format(PyExc_ValueError, "width and height must be at least 1, got %zd x %zd", width, height);
        return -1;
    }
    if (width > (PY_SSIZE_T_MAX - 3) / 6 || height > PY_SSIZE_T_MAX / width) {
        PyErr_Format(PyExc_ValueError, "%zd x %zd pixels do not fit in memory", width, height);
        return -1;
    }
    if (k < 1 || k > MAX_K) {
        PyErr_Format(PyExc_ValueError, "method 3 needs 1 <= k <= %d, got %d", MAX_K, k);
        return -1;
    }
    if (channels != 1 && channels != 3 && channels != 4) {
        PyErr_Format(PyExc_ValueError, "channels must be 1, 3 or 4, got %d", channels);
        return -1;
    }
    *pixels = width * height;
    return 0;
}

PyDoc_STRVAR(encode_doc,
"encode(labels, width, height, palette, k, channels) -> bytes\n\n"
"R, the range-coded part of one stripe of a method-3 label stream (spec section\n"
"11.15), coded as an image of its own. labels: width * height uint8 labels in\n"
"raster order; palette: k * channels uint8 values, entry i at i * channels.");

static PyObject *encode(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"labels", "width", "height", "palette", "k", "channels", NULL};
    PyObject *labels_obj, *palette_obj, *result = NULL;
    Py_ssize_t width, height, pixels;
    int k, channels, status;
    Py_buffer labels, palette;
    Model md;
    Encoder e = {0, 1, 0xFFFFFFFFu, 0, NULL, 0, 0, 0};
    Fault fault = {0, 0, 0, 0};
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OnnOii:encode", names, &labels_obj, &width, &height,
                                     &palette_obj, &k, &channels))
        return NULL;
    if (check_shape(width, height, k, channels, &pixels) < 0)
        return NULL;
    if (get_bytes(labels_obj, &labels, 0, "labels", pixels) < 0)
        return NULL;
    if (get_bytes(palette_obj, &palette, 0, "palette", (Py_ssize_t)k * channels) < 0) {
        PyBuffer_Release(&labels);
        return NULL;
    }
    e.cap = (size_t)pixels / 4 + 64;
    e.out = malloc(e.cap);
    if (!e.out || model_init(&md, k, channels, palette.buf, (size_t)width)) {
        free(e.out);
        PyBuffer_Release(&labels);
        PyBuffer_Release(&palette);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    status = encode_pixels(&md, &e, labels.buf, (size_t)width, (size_t)height, &fault);
    Py_END_ALLOW_THREADS
    model_free(&md);
    PyBuffer_Release(&labels);
    PyBuffer_Release(&palette);
    if (status == OK)
        result = PyBytes_FromStringAndSize((const char *)e.out, (Py_ssize_t)e.len);
    else if (status == BAD_LABEL)
        PyErr_Format(PyExc_ValueError, "label %d at pixel %zu is not below k = %d", (int)fault.a, fault.pixel, k);
    else
        PyErr_NoMemory();
    free(e.out);
    return result;
}

PyDoc_STRVAR(decode_doc,
"decode(data, width, height, palette, k, channels, out) -> None | (kind, pixel, a, b)\n\n"
"Decodes R (one stripe's range-coded part of a method-3 stream) into out, a writable\n"
"buffer of width * height uint8. Returns None, or the first failure in decoding\n"
"order: kind is first_byte, value, past_end, left_over, code or rank; pixel is the\n"
"raster index of the pixel being decoded (width * height for the end checks).");

static PyObject *decode(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"data", "width", "height", "palette", "k", "channels", "out", NULL};
    PyObject *data_obj, *palette_obj, *out_obj;
    Py_ssize_t width, height, pixels;
    int k, channels, status;
    Py_buffer data, palette, out;
    Fault fault = {0, 0, 0, 0};
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OnnOiiO:decode", names, &data_obj, &width, &height,
                                     &palette_obj, &k, &channels, &out_obj))
        return NULL;
    if (check_shape(width, height, k, channels, &pixels) < 0)
        return NULL;
    if (get_bytes(data_obj, &data, 0, "data", -1) < 0)
        return NULL;
    if (get_bytes(palette_obj, &palette, 0, "palette", (Py_ssize_t)k * channels) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (get_bytes(out_obj, &out, 1, "out", pixels) < 0) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&palette);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    status = decode_stream(data.buf, (size_t)data.len, (size_t)width, (size_t)height, palette.buf, k, channels,
                           out.buf, &fault);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&palette);
    PyBuffer_Release(&out);
    if (status == OK)
        Py_RETURN_NONE;
    if (status == NO_MEMORY)
        return PyErr_NoMemory();
    return Py_BuildValue("(snKK)", KIND_NAMES[fault.kind], (Py_ssize_t)fault.pixel,
                         (unsigned long long)fault.a, (unsigned long long)fault.b);
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_VARARGS | METH_KEYWORDS, encode_doc},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_VARARGS | METH_KEYWORDS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kmcodec._raster",
    "Coding 1, method 3 (spec section 11.15): the range-coded raster scan, encoder and decoder.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__raster(void)
{
    fill_tables();
    return PyModule_Create(&module);
}
