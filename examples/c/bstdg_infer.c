/*
 * bstdg_infer.c: portable C99 reference inference for a network exported with
 * `bstdg export --format c --out bstdg_model.h`.
 *
 *   cc -std=c99 -O2 -I DIR_OF_HEADER -o bstdg_infer bstdg_infer.c
 *   ./bstdg_infer [-d] samples.txt   (or - for standard input)
 *
 * (-DBSTDG_MODEL='"path/to/header.h"' includes a header of another name.)
 *
 * samples.txt, format 2 (any input code; `bstdg.export.c_format.write_event_samples`):
 * a first line "bstdg-samples 2 N_INPUTS T_MAX", then per sample (one per line) the
 * number of input spikes E followed by E pairs "time unit" in time order: times
 * 0..T_MAX-1, non-decreasing; units 0..N_INPUTS-1. A unit may spike any number of times,
 * several times in one step too (each spike adds its weights).
 * Format 1 (at most one spike per input, the latency code; `write_samples`): a first line
 * "bstdg-samples 1 N_INPUTS T_MAX", then per sample N_INPUTS integers, the spike time of
 * each input in 0..T_MAX-1, or T_MAX for no spike.
 *
 * Prints one predicted class per line; with -d, "class tie time": tie is 1 when equal
 * potentials were decided by the lower index, time is the step of the first output spike
 * (T_MAX when no output fired). Errors (a model that fails its CRC-32, samples for another
 * model, a malformed file) are one line on stderr and exit status 1.
 *
 * Semantics (docs/export.md): non-leaky integrate-and-fire neurons with +-1 weights and
 * integer thresholds, each fires at most once, at the first step where its potential is
 * >= its threshold; every input spike of a step is added before any threshold is compared;
 * a spike is integrated by the next layer in the same step (no delay). Header version 1
 * holds fc layers; version 2 (docs/export.md, "Conv networks") also conv layers (+-1
 * kernels, stride, zero padding) and earliest-spike pooling (an output fires at the first
 * spike of its window, once), image tensors channel-first.
 * Prediction: the output that fires first; among outputs firing in that step the higher
 * potential, then the lower index; if no output fires, the highest potential after the
 * last input spike (then the lower index). Only additions, comparisons and bit tests: no
 * multiplications in the network itself, no dynamic memory; input spikes are processed as
 * they are read, so a sample may have any number of them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BSTDG_MODEL
#define BSTDG_MODEL "bstdg_model.h"
#endif
#include BSTDG_MODEL

#if BSTDG_FORMAT_VERSION != 1 && BSTDG_FORMAT_VERSION != 2
#error "this bstdg_infer.c reads header format versions 1 (fc) and 2 (layered: conv, pool, fc)"
#endif

/* Layer geometry, BSTDG_GEOM_COLS values per layer: kind (0 fc, 1 conv, 2 pool), c_in,
 * h_in, w_in, c_out, h_out, w_out, k (kernel or pool size), s (stride), p (padding). Image
 * tensors are channel-first: unit (c, y, x) of a layer is number (c * h + y) * w + x. A
 * version 1 header (fc only) has no table: main() fills one (c_in = n_in, c_out = n_out). */
#define BSTDG_GEOM_COLS 10
#define KIND_FC 0
#define KIND_CONV 1
#define KIND_POOL 2
#if BSTDG_FORMAT_VERSION == 1
static uint32_t bstdg_geometry[BSTDG_N_LAYERS * BSTDG_GEOM_COLS];
static void fc_geometry(void)
{
    int l;
    for (l = 0; l < BSTDG_N_LAYERS; l++) {
        uint32_t *g = bstdg_geometry + l * BSTDG_GEOM_COLS;
        memset(g, 0, BSTDG_GEOM_COLS * sizeof *g);
        g[1] = bstdg_sizes[l];
        g[2] = g[3] = g[5] = g[6] = 1;
        g[4] = bstdg_sizes[l + 1];
    }
}
#endif
#define G(l, col) ((int32_t)bstdg_geometry[(l) * BSTDG_GEOM_COLS + (col)])

static void fail(const char *message, long a, long b)
{
    fprintf(stderr, "bstdg_infer: error: ");
    fprintf(stderr, message, a, b);
    fprintf(stderr, "\n");
    exit(1);
}

/* CRC-32 (IEEE 802.3, reflected, as zlib), fed byte by byte. */
static uint32_t crc_byte(uint32_t crc, uint8_t byte)
{
    int k;
    crc ^= byte;
    for (k = 0; k < 8; k++)
        crc = (crc >> 1) ^ (0xEDB88320UL & (0UL - (crc & 1UL)));
    return crc;
}

static uint32_t crc_u32(uint32_t crc, uint32_t v)
{
    int k;
    for (k = 0; k < 4; k++)
        crc = crc_byte(crc, (uint8_t)(v >> (8 * k)));
    return crc;
}

/* Bytes per weight row: one row per fc neuron (n_in bits) or conv output channel
 * (c_in * k * k bits, in (ci, ky, kx) order), padded to whole bytes. */
static long row_bytes(int l)
{
    long bits = G(l, 0) == KIND_CONV ? (long)G(l, 1) * G(l, 7) * G(l, 7) : (long)G(l, 1) * G(l, 2) * G(l, 3);
    return (bits + 7) / 8;
}

/* The CRC-32 of t_max, the sizes (version 2: then the geometry table), then per layer the weight bytes and the thresholds
 * (int16 little-endian): must equal BSTDG_CRC32. */
static uint32_t model_crc(void)
{
    uint32_t crc = 0xFFFFFFFFUL;
    int l;
    long i, n;
    crc = crc_u32(crc, (uint32_t)BSTDG_T_MAX);
    for (l = 0; l <= BSTDG_N_LAYERS; l++)
        crc = crc_u32(crc, bstdg_sizes[l]);
#if BSTDG_FORMAT_VERSION == 2
    for (i = 0; i < BSTDG_N_LAYERS * BSTDG_GEOM_COLS; i++)
        crc = crc_u32(crc, bstdg_geometry[i]);
#endif
    for (l = 0; l < BSTDG_N_LAYERS; l++) {
        if (G(l, 0) == KIND_POOL)
            continue;  /* no weights, no thresholds */
        n = (long)G(l, 4) * row_bytes(l);
        for (i = 0; i < n; i++)
            crc = crc_byte(crc, bstdg_weights[l][i]);
        for (i = 0; i < (long)bstdg_sizes[l + 1]; i++) {
            uint16_t t = (uint16_t)bstdg_thresholds[l][i];
            crc = crc_byte(crc, (uint8_t)(t & 0xFFu));
            crc = crc_byte(crc, (uint8_t)(t >> 8));
        }
    }
    return crc ^ 0xFFFFFFFFUL;
}

static int32_t potential[BSTDG_N_NEURONS];
static uint8_t fired[BSTDG_N_NEURONS];
static int32_t spikes_a[BSTDG_MAX_WIDTH], spikes_b[BSTDG_MAX_WIDTH];
static int32_t input_time[BSTDG_N_INPUTS];
static int32_t by_time[BSTDG_N_INPUTS];
static int32_t first_at[BSTDG_T_MAX + 2];

/* The decision of the current sample, once made. */
static int decided;
static int32_t result_class, result_tie, result_time;

static void start_sample(void)
{
    memset(potential, 0, sizeof potential);
    memset(fired, 0, sizeof fired);
    decided = 0;
}

static int32_t layer_offset[BSTDG_N_LAYERS + 1];

/* A spike of unit i (channel-first index of layer l's input) reaches layer l: fc adds bit
 * i of every neuron's row; conv adds, for every output position whose receptive field
 * holds the unit, the kernel sign of every output channel; pool counts the spike in its
 * window's output (partial windows are dropped). Thresholds are compared by end_step. */
static void add_spike(int l, int32_t i)
{
    int32_t *v = potential + layer_offset[l];
    const uint8_t *w = bstdg_weights[l];
    const int32_t kind = G(l, 0), h_in = G(l, 2), w_in = G(l, 3);
    const int32_t c_out = G(l, 4), h_out = G(l, 5), w_out = G(l, 6), k = G(l, 7), st = G(l, 8), pad = G(l, 9);
    const long row = kind == KIND_POOL ? 0 : row_bytes(l);
    int32_t j, c, y, x, ky, kx, a, b, oy, ox, bit;

    if (kind == KIND_FC) {
        const uint8_t *col = w + (i >> 3);
        const int shift = 7 - (i & 7);
        for (j = 0; j < c_out; j++)
            v[j] += ((col[(long)j * row] >> shift) & 1) ? 1 : -1;
        return;
    }
    c = i / (h_in * w_in);
    y = (i - c * h_in * w_in) / w_in;
    x = i - (c * h_in + y) * w_in;
    if (kind == KIND_POOL) {
        oy = y / k;
        ox = x / k;
        if (oy < h_out && ox < w_out)
            v[(c * h_out + oy) * w_out + ox] += 1;
        return;
    }
    for (ky = 0; ky < k; ky++) {
        a = y + pad - ky;  /* = oy * st for the output row oy that sees this unit at ky */
        if (a < 0 || a % st != 0 || (oy = a / st) >= h_out)
            continue;
        for (kx = 0; kx < k; kx++) {
            b = x + pad - kx;
            if (b < 0 || b % st != 0 || (ox = b / st) >= w_out)
                continue;
            bit = (c * k + ky) * k + kx;
            for (j = 0; j < c_out; j++)
                v[(j * h_out + oy) * w_out + ox] += ((w[(long)j * row + (bit >> 3)] >> (7 - (bit & 7))) & 1) ? 1 : -1;
        }
    }
}

/* Input i spikes in the current step (the thresholds are compared at the end of the step). */
static void add_input(int32_t i)
{
    add_spike(0, i);
}

/* The prediction rule among the candidates cand[0..n-1] (output indices, ascending): the
 * higher potential, then the lower index (a tie). */
static void decide(const int32_t *cand, int32_t n, int32_t t)
{
    const int32_t *v = potential + (BSTDG_N_NEURONS - BSTDG_N_OUTPUTS);
    int32_t k, best = cand[0], equal = 1;
    for (k = 1; k < n; k++) {
        if (v[cand[k]] > v[best]) {
            best = cand[k];
            equal = 1;
        } else if (v[cand[k]] == v[best]) {
            equal++;
        }
    }
    decided = 1;
    result_class = best;
    result_tie = equal > 1;
    result_time = t;
}

/* End of step t (layer 0 holds every input spike of the step): fire layer 0's neurons
 * that reach their threshold (pool outputs: 1), feed the spikes through the deeper layers
 * in the same step, and decide when outputs fire. */
static void end_step(int32_t t)
{
    int32_t j, k, l, n = 0, m;
    int32_t *in = spikes_a, *out = spikes_b, *swap;

    for (l = 0; l < BSTDG_N_LAYERS && (l == 0 || n > 0); l++) {
        const int32_t off = layer_offset[l], n_out = (int32_t)bstdg_sizes[l + 1];
        const int pool = G(l, 0) == KIND_POOL;
        const int16_t *theta = bstdg_thresholds[l];
        for (k = 0; k < n; k++)  /* layer 0's inputs were added by add_input */
            add_spike(l, in[k]);
        m = 0;
        for (j = 0; j < n_out; j++) {
            if (!fired[off + j] && potential[off + j] >= (pool ? 1 : theta[j])) {
                fired[off + j] = 1;
                out[m++] = j;  /* in index order */
            }
        }
        swap = in; in = out; out = swap;
        n = m;
    }
    if (l == BSTDG_N_LAYERS && n > 0)  /* outputs fired in this step: decide */
        decide(in, n, t);
}

/* No output fired: every output is a candidate, with its potential after the last input. */
static void finish_sample(void)
{
    int32_t j;
    if (decided)
        return;
    for (j = 0; j < BSTDG_N_OUTPUTS; j++)
        spikes_a[j] = j;
    decide(spikes_a, BSTDG_N_OUTPUTS, BSTDG_T_MAX);
}

/* Format 1: input_time[i] in 0..T_MAX (T_MAX = no spike), inputs taken in time order
 * (counting sort: the inputs of step t are by_time[first_at[t] .. first_at[t+1]-1]). */
static void classify_times(void)
{
    int32_t t, i;

    memset(first_at, 0, sizeof first_at);
    for (i = 0; i < BSTDG_N_INPUTS; i++)
        first_at[input_time[i] + 1]++;
    for (t = 0; t <= BSTDG_T_MAX; t++)
        first_at[t + 1] += first_at[t];
    for (i = 0; i < BSTDG_N_INPUTS; i++)
        by_time[first_at[input_time[i]]++] = i;
    for (t = BSTDG_T_MAX; t > 0; t--)
        first_at[t] = first_at[t - 1];
    first_at[0] = 0;

    start_sample();
    for (t = 0; t < BSTDG_T_MAX && !decided; t++) {
        if (first_at[t + 1] == first_at[t])
            continue;  /* nothing arrives: no potential changes in this step */
        for (i = first_at[t]; i < first_at[t + 1]; i++)
            add_input(by_time[i]);
        end_step(t);
    }
    finish_sample();
}

/* Format 1: one sample per line, N_INPUTS spike times. Returns 0 at the end of the file. */
static int read_times(FILE *f, long sample)
{
    long value;
    int32_t i;
    int got;
    for (i = 0; i < BSTDG_N_INPUTS; i++) {
        got = fscanf(f, "%ld", &value);
        if (got != 1) {
            if (i == 0 && got == EOF)
                return 0;
            fail("sample %ld is incomplete or not integers (input %ld)", sample, (long)i);
        }
        if (value < 0 || value > BSTDG_T_MAX)
            fail("sample %ld has a spike time outside 0..T_MAX (%ld)", sample, value);
        input_time[i] = (int32_t)value;
    }
    classify_times();
    return 1;
}

/* Format 2: the spike count, then "time unit" pairs in time order, processed as they are
 * read (the rest of a sample is read and checked, not simulated, once it is decided).
 * Returns 0 at the end of the file. */
static int read_events(FILE *f, long sample)
{
    long count, e, t, unit, step = -1;
    int got = fscanf(f, "%ld", &count);
    if (got == EOF)
        return 0;
    if (got != 1 || count < 0)
        fail("sample %ld does not start with its number of input spikes", sample, 0);
    start_sample();
    for (e = 0; e < count; e++) {
        if (fscanf(f, "%ld %ld", &t, &unit) != 2)
            fail("sample %ld is incomplete or not integers (spike %ld)", sample, e);
        if (t < 0 || t >= BSTDG_T_MAX)
            fail("sample %ld has a spike time outside 0..T_MAX-1 (%ld)", sample, t);
        if (unit < 0 || unit >= BSTDG_N_INPUTS)
            fail("sample %ld has an input unit outside 0..N_INPUTS-1 (%ld)", sample, unit);
        if (t < step)
            fail("sample %ld has spike times out of time order (at spike %ld)", sample, e);
        if (decided)
            continue;
        if (t != step) {
            if (step >= 0)
                end_step((int32_t)step);
            step = t;
            if (decided)
                continue;
        }
        add_input((int32_t)unit);
    }
    if (step >= 0 && !decided)
        end_step((int32_t)step);
    finish_sample();
    return 1;
}

int main(int argc, char **argv)
{
    FILE *f;
    const char *path;
    int version, detail = 0;
    long n_inputs, t_max, sample = 0;

    if (argc == 3 && strcmp(argv[1], "-d") == 0)
        detail = 1;
    if (argc != 2 + detail) {
        fprintf(stderr, "usage: %s [-d] SAMPLES_FILE   (- for standard input; -d: print "
                "\"class tie time\")\n", argv[0]);
        return 2;
    }
    path = argv[1 + detail];
#if BSTDG_FORMAT_VERSION == 1
    fc_geometry();
#endif
    for (sample = 0; sample < BSTDG_N_LAYERS; sample++)
        layer_offset[sample + 1] = layer_offset[sample] + (int32_t)bstdg_sizes[sample + 1];
    sample = 0;
    if (model_crc() != (uint32_t)BSTDG_CRC32)
        fail("the model's weights and thresholds fail their CRC-32 check (corrupt header?)", 0, 0);
    f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "bstdg_infer: error: cannot open %s\n", path);
        return 1;
    }
    if (fscanf(f, " bstdg-samples %d %ld %ld", &version, &n_inputs, &t_max) != 3
            || (version != 1 && version != 2))
        fail("the samples file does not start with \"bstdg-samples 1|2 N_INPUTS T_MAX\"", 0, 0);
    if (n_inputs != BSTDG_N_INPUTS)
        fail("the samples have %ld inputs, the model %ld", n_inputs, (long)BSTDG_N_INPUTS);
    if (t_max != BSTDG_T_MAX)
        fail("the samples are coded with t_max %ld, the model with %ld", t_max, (long)BSTDG_T_MAX);
    while (version == 1 ? read_times(f, sample) : read_events(f, sample)) {
        if (detail)
            printf("%ld %ld %ld\n", (long)result_class, (long)result_tie, (long)result_time);
        else
            printf("%ld\n", (long)result_class);
        sample++;
    }
    if (f != stdin)
        fclose(f);
    return 0;
}
