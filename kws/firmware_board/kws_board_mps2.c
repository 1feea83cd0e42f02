/* Start-up for QEMU's mps2-an386 (Cortex-M4F): vector table, FPU on, .data and .bss,
 * C/C++ constructors, main, exit through semihosting (QEMU's exit status is main's).
 * The instruction counter of kws_board.h reads SysTick. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kws_board.h"

#define CPACR (*(volatile uint32_t *)0xE000ED88)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define TICKS_MASK 0xFFFFFFu        /* SysTick counts down 24 bits */
#define INSTRUCTIONS_PER_TICK 40u /* 1 ns an instruction (-icount shift=0), 25 MHz clock */

extern uint32_t __data_start, __data_end, __data_load, __bss_start__, __bss_end__, __stack_top;
extern void __libc_init_array(void);
extern int main(void);
#ifdef KWS_SEMIHOSTING
extern void initialise_monitor_handles(void); /* newlib's librdimon: stdio over semihosting */
#endif

static uint32_t g_last_ticks, g_instructions;

uint32_t kws_instructions(void)
{
    uint32_t now = SYST_CVR;
    g_instructions += ((g_last_ticks - now) & TICKS_MASK) * INSTRUCTIONS_PER_TICK;
    g_last_ticks = now;
    return g_instructions;
}

/* newlib's __libc_init_array calls _init, which crti.o would bring; there is nothing to do. */
void _init(void) {}

static void fault(void)
{
    exit(3);
}

void kws_reset(void)
{
    CPACR |= 0xFu << 20; /* CP10 and CP11: the FPU, before any float instruction */
    __asm__ volatile("dsb\n\tisb");
    memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
    memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
    SYST_RVR = TICKS_MASK;
    SYST_CVR = 0;
    SYST_CSR = 5; /* enabled, processor clock, no interrupt */
    g_last_ticks = SYST_CVR;
#ifdef KWS_SEMIHOSTING
    initialise_monitor_handles();
#endif
    __libc_init_array();
    exit(main());
}

/* Initial stack pointer, reset, then every fault and interrupt to fault(). */
__attribute__((section(".vectors"), used)) static void (*const g_vectors[16])(void) = {
    (void (*)(void))&__stack_top, kws_reset, fault, fault, fault, fault, fault, fault,
    fault, fault, fault, fault, fault, fault, fault, fault,
};
