/* libFuzzer target: the supervisor parses pipeline files it reads back from __pipelines. Any
 * text must end as a pipeline or a refusal with a message, never a crash, a hang or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    sl_pipeline *p = NULL;
    char err[1024];
    /* No plugin path: the structure only, nothing looked up on disk. */
    if (sl_pipeline_load("/fuzz/pipeline.lua", text, NULL, &p, err, sizeof(err)) == 0)
        sl_pipeline_free(p);
    free(text);
    return 0;
}
