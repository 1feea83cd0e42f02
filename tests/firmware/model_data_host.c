/* Host harness for tests/test_export.py: writes the exported model array to stdout, and
 * its address modulo 16 to stderr. */
#include <stdint.h>
#include <stdio.h>

#include "model_data.h"

int main(void)
{
    fwrite(kws_model_data, 1, kws_model_data_len, stdout);
    fprintf(stderr, "%u\n", (unsigned)((uintptr_t)kws_model_data % 16));
    return 0;
}
