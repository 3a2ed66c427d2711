/* A library with the entry symbol but a descriptor that is not ours: refused by its magic. */
#include "sluice/plugin.h"

static const uint32_t not_a_descriptor[16] = {0xdeadbeef, 1, 64, 1};

SL_PLUGIN_EXPORT const void *sluice_plugin(void) {
    return not_a_descriptor;
}
