/* Times <prefix>_predict from C, as an application linking the library would call it.
   Built by bench/static_lib.py with -DHEADER, -DPREDICT, -DIN_SIZE, -DOUT_SIZE; prints JSON. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include HEADER

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Median of `rounds` timings of `repeat` calls, in microseconds per call. */
static double per_call(const float *in, float *out, size_t batch, int repeat, int rounds) {
    double times[64];
    for (int r = 0; r < rounds; ++r) {
        const double start = now();
        for (int i = 0; i < repeat; ++i) PREDICT(in, batch, out);
        times[r] = (now() - start) / repeat * 1e6;
    }
    for (int i = 1; i < rounds; ++i)
        for (int j = i; j > 0 && times[j] < times[j - 1]; --j) {
            const double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t;
        }
    return times[rounds / 2];
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 7;
    float *in = malloc(sizeof(float) * 64 * IN_SIZE), *out = malloc(sizeof(float) * 64 * OUT_SIZE);
    if (!in || !out || rounds < 1 || rounds > 64) return 2;
    for (size_t i = 0; i < 64 * (size_t)IN_SIZE; ++i) in[i] = (float)((i * 7919u) % 1000u) / 62.5f;
    const double one = per_call(in, out, 1, 2000, rounds), many = per_call(in, out, 64, 50, rounds);
    printf("{\"batch1_us\": %.3f, \"batch64_us\": %.3f}\n", one, many);
    free(in);
    free(out);
    return 0;
}
