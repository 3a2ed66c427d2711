/* Fixtures shared by the storage tests: a partition directory inside a fresh temporary
 * directory, removed (and checked gone) afterwards, and a deterministic random number generator,
 * so that a failure reproduces. */
#ifndef SL_FIXTURE_H
#define SL_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "sl_test.h"

/* "/tmp/<prefix>.XXXXXX/<leaf>", malloc'd; the partition directory itself is not created (the
 * log creates it). */
static inline char *sl_fixture_dir(const char *prefix, const char *leaf) {
    char tmpl[256];
    snprintf(tmpl, sizeof(tmpl), "/tmp/%s.XXXXXX", prefix);
    SL_TRUE(mkdtemp(tmpl) != NULL);
    char *d = malloc(strlen(tmpl) + strlen(leaf) + 2);
    SL_TRUE(d != NULL);
    sprintf(d, "%s/%s", tmpl, leaf);
    return d;
}

/* Removes the temporary directory around 'dir' and frees 'dir'. */
static inline void sl_fixture_drop_dir(char *dir) {
    *strrchr(dir, '/') = '\0';
    SL_PASS(sl_fs_remove_tree(dir));
    struct stat st;
    SL_TRUE(stat(dir, &st) != 0);
    free(dir);
}

/* xorshift64*, seeded by the test. */
typedef struct sl_rng {
    uint64_t state;
} sl_rng;

static inline uint64_t sl_rng_next(sl_rng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 0x2545f4914f6cdd1dull;
}

#endif
