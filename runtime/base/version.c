#include "sluice/client.h"

const char *sl_version(void) {
    return "0.1.0";
}
