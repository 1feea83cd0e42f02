/* The host build of the harness: same C sources, no instruction counter. */
#include "kws_board.h"

uint32_t kws_instructions(void)
{
    return 0;
}
