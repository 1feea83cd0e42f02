/* What the emulated board gives the harness: an instruction counter. */
#ifndef KWS_BOARD_H
#define KWS_BOARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Instructions executed so far, modulo 2^32 (subtract two readings, unsigned), or always
 * 0 off the board. On QEMU with -icount shift=0 every instruction advances the clock by
 * 1 ns and SysTick counts the 25 MHz system clock, so one tick is 40 instructions: a
 * reading is exact to 40 instructions. Call it at least every 0.6 s of emulated time
 * (SysTick's 24 bits wrap every 671 M instructions). */
uint32_t kws_instructions(void);

#ifdef __cplusplus
}
#endif

#endif /* KWS_BOARD_H */
