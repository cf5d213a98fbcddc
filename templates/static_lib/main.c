/* Reads {{PREFIX}}_INPUT_SIZE numbers (one sample) from the file named first, prints the outputs. */
#include <stdio.h>
#include <stdlib.h>
#include "{{prefix}}.h"

int main(int argc, char **argv) {
    static float in[{{PREFIX}}_INPUT_SIZE], out[{{PREFIX}}_OUTPUT_SIZE];
    FILE *f = fopen(argc > 1 ? argv[1] : "example/sample.txt", "r");
    if (!f) { perror("sample"); return 2; }
    for (size_t i = 0; i < {{PREFIX}}_INPUT_SIZE; ++i)
        if (fscanf(f, "%f", &in[i]) != 1) { fprintf(stderr, "sample: expected %d numbers\n", {{PREFIX}}_INPUT_SIZE); return 2; }
    fclose(f);
    if ({{prefix}}_predict(in, 1, out) != 0) return 1;
    printf("%s %s\n", {{prefix}}_name(), {{prefix}}_version());
    for (size_t i = 0; i < {{PREFIX}}_OUTPUT_SIZE; ++i) printf("%.9g\n", out[i]);
    return 0;
}
