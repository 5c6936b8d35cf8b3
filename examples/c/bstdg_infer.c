/*
 * bstdg_infer.c: portable C99 reference inference for a network exported with
 * `bstdg export --format c --out bstdg_model.h`.
 *
 *   cc -std=c99 -O2 -I DIR_OF_HEADER -o bstdg_infer bstdg_infer.c
 *   ./bstdg_infer samples.txt        (or - for standard input)
 *
 * (-DBSTDG_MODEL='"path/to/header.h"' includes a header of another name.)
 *
 * samples.txt: a first line "bstdg-samples 1 N_INPUTS T_MAX", then one sample per line:
 * N_INPUTS integers, the spike time of each input in 0..T_MAX-1, or T_MAX for no spike
 * (`bstdg.export.c_format.write_samples` writes it). Prints one predicted class per line.
 * Errors (a model that fails its CRC-32, samples for another model, a malformed file) are
 * one line on stderr and exit status 1.
 *
 * Semantics (docs/export.md): non-leaky integrate-and-fire neurons with +-1 weights and
 * integer thresholds, each fires at most once, at the first step where its potential is
 * >= its threshold; a spike is integrated by the next layer in the same step (no delay).
 * Prediction: the output that fires first; among outputs firing in that step the higher
 * potential, then the lower index; if no output fires, the highest potential at T_MAX
 * (then the lower index). Only additions, comparisons and bit tests: no multiplications
 * in the network itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BSTDG_MODEL
#define BSTDG_MODEL "bstdg_model.h"
#endif
#include BSTDG_MODEL

#if BSTDG_FORMAT_VERSION != 1
#error "this bstdg_infer.c reads header format version 1"
#endif

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

/* The CRC-32 of t_max, the sizes, then per layer the weight bytes and the thresholds
 * (int16 little-endian): must equal BSTDG_CRC32. */
static uint32_t model_crc(void)
{
    uint32_t crc = 0xFFFFFFFFUL;
    int l;
    long i, n;
    crc = crc_u32(crc, (uint32_t)BSTDG_T_MAX);
    for (l = 0; l <= BSTDG_N_LAYERS; l++)
        crc = crc_u32(crc, bstdg_sizes[l]);
    for (l = 0; l < BSTDG_N_LAYERS; l++) {
        n = (long)bstdg_sizes[l + 1] * (long)((bstdg_sizes[l] + 7) / 8);
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

/* One sample: input_time[i] in 0..T_MAX (T_MAX = no spike). Returns the predicted class. */
static int classify(void)
{
    int32_t t, i, j, k, l, n, m, off, best;
    int32_t *in = spikes_a, *out = spikes_b, *swap;

    /* inputs sorted by spike time (counting sort): inputs of step t are
       by_time[first_at[t] .. first_at[t+1]-1] */
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

    memset(potential, 0, sizeof potential);
    memset(fired, 0, sizeof fired);
    for (t = 0; t < BSTDG_T_MAX; t++) {
        n = first_at[t + 1] - first_at[t];
        if (n == 0)
            continue;  /* nothing arrives: no potential changes in this step */
        memcpy(in, by_time + first_at[t], (size_t)n * sizeof *in);
        off = 0;
        for (l = 0; l < BSTDG_N_LAYERS && n > 0; l++) {
            const int32_t n_out = (int32_t)bstdg_sizes[l + 1];
            const int32_t row = (int32_t)((bstdg_sizes[l] + 7) / 8);
            const uint8_t *w = bstdg_weights[l];
            const int16_t *theta = bstdg_thresholds[l];
            m = 0;
            for (j = 0; j < n_out; j++) {
                const uint8_t *r = w + (long)j * row;
                int32_t v = potential[off + j];
                for (k = 0; k < n; k++) {
                    i = in[k];
                    v += ((r[i >> 3] >> (7 - (i & 7))) & 1) ? 1 : -1;
                }
                potential[off + j] = v;
                if (!fired[off + j] && v >= theta[j]) {
                    fired[off + j] = 1;
                    out[m++] = j;  /* in index order */
                }
            }
            swap = in; in = out; out = swap;
            n = m;
            off += n_out;
        }
        if (l == BSTDG_N_LAYERS && n > 0) {  /* outputs fired in this step: decide */
            best = in[0];
            for (k = 1; k < n; k++)
                if (potential[off - BSTDG_N_OUTPUTS + in[k]] > potential[off - BSTDG_N_OUTPUTS + best])
                    best = in[k];
            return best;
        }
    }
    /* no output spike: highest potential at T_MAX, lower index on equality */
    off = BSTDG_N_NEURONS - BSTDG_N_OUTPUTS;
    best = 0;
    for (j = 1; j < BSTDG_N_OUTPUTS; j++)
        if (potential[off + j] > potential[off + best])
            best = j;
    return best;
}

int main(int argc, char **argv)
{
    FILE *f;
    int version;
    long n_inputs, t_max, value, sample = 0;
    int32_t i;
    int got;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SAMPLES_FILE   (- for standard input)\n", argv[0]);
        return 2;
    }
    if (model_crc() != (uint32_t)BSTDG_CRC32)
        fail("the model's weights and thresholds fail their CRC-32 check (corrupt header?)", 0, 0);
    f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "r");
    if (f == NULL) {
        fprintf(stderr, "bstdg_infer: error: cannot open %s\n", argv[1]);
        return 1;
    }
    if (fscanf(f, " bstdg-samples %d %ld %ld", &version, &n_inputs, &t_max) != 3 || version != 1)
        fail("the samples file does not start with \"bstdg-samples 1 N_INPUTS T_MAX\"", 0, 0);
    if (n_inputs != BSTDG_N_INPUTS)
        fail("the samples have %ld inputs, the model %ld", n_inputs, (long)BSTDG_N_INPUTS);
    if (t_max != BSTDG_T_MAX)
        fail("the samples are coded with t_max %ld, the model with %ld", t_max, (long)BSTDG_T_MAX);
    for (;;) {
        for (i = 0; i < BSTDG_N_INPUTS; i++) {
            got = fscanf(f, "%ld", &value);
            if (got != 1) {
                if (i == 0 && got == EOF)
                    break;
                fail("sample %ld is incomplete or not integers (input %ld)", sample, (long)i);
            }
            if (value < 0 || value > BSTDG_T_MAX)
                fail("sample %ld has a spike time outside 0..T_MAX (%ld)", sample, value);
            input_time[i] = (int32_t)value;
        }
        if (i == 0)
            break;
        printf("%d\n", classify());
        sample++;
    }
    if (f != stdin)
        fclose(f);
    return 0;
}
