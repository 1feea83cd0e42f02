/* Cross-compiled by tests/test_export.py: one instance of each state struct, so that
 * arm-none-eabi-nm gives their sizes on the target. */
#include "kws_frontend.h"
#include "kws_posterior.h"

KwsFrontend kws_probe_frontend;
KwsPosterior kws_probe_posterior;
