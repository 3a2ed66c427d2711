/* A small test harness: a test file defines test functions and lists them in SL_TESTS.
 *
 *   static void segment_rolls_at_size(void) { SL_PASS(sl_segment_open(...)); ... }
 *   SL_TESTS({"segment rolls at segment.bytes", segment_rolls_at_size}, ...)
 *
 * A failed check prints file, line, the expression and, for status checks, sl_strerror(), then
 * ends the test binary with status 1. */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"

struct sl_test_case {
    const char *name;
    void (*fn)(void);
};

#define SL_TEST_FAIL_(...)                                                                         \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

/* 'expr' must return 0. */
#define SL_PASS(expr)                                                                              \
    do {                                                                                           \
        int sl_rc_ = (expr);                                                                       \
        if (sl_rc_ != 0)                                                                           \
            SL_TEST_FAIL_("%s returned %d (%s)", #expr, sl_rc_, sl_strerror(sl_rc_));              \
    } while (0)

/* 'expr' must return exactly 'status'. */
#define SL_FAIL(expr, status)                                                                      \
    do {                                                                                           \
        int sl_rc_ = (expr);                                                                       \
        if (sl_rc_ != (status))                                                                    \
            SL_TEST_FAIL_("%s returned %d (%s), expected %s", #expr, sl_rc_, sl_errname(sl_rc_),   \
                          #status);                                                                \
    } while (0)

#define SL_TRUE(expr)                                                                              \
    do {                                                                                           \
        if (!(expr))                                                                               \
            SL_TEST_FAIL_("expected %s", #expr);                                                   \
    } while (0)

#define SL_EQ(a, b)                                                                                \
    do {                                                                                           \
        long long sl_a_ = (long long)(a), sl_b_ = (long long)(b);                                  \
        if (sl_a_ != sl_b_)                                                                        \
            SL_TEST_FAIL_("%s == %lld, expected %s == %lld", #a, sl_a_, #b, sl_b_);                \
    } while (0)

#define SL_STREQ(a, b)                                                                             \
    do {                                                                                           \
        const char *sl_a_ = (a), *sl_b_ = (b);                                                     \
        if (strcmp(sl_a_, sl_b_) != 0)                                                             \
            SL_TEST_FAIL_("%s == \"%s\", expected \"%s\"", #a, sl_a_, sl_b_);                      \
    } while (0)

#define SL_TESTS(...)                                                                              \
    int main(int argc, char **argv) {                                                              \
        static const struct sl_test_case cases[] = {__VA_ARGS__};                                 \
        size_t n = sizeof(cases) / sizeof(cases[0]);                                               \
        for (size_t i = 0; i < n; i++) {                                                           \
            if (argc > 1 && strstr(cases[i].name, argv[1]) == NULL)                                \
                continue;                                                                          \
            fprintf(stderr, "-- %s\n", cases[i].name);                                             \
            cases[i].fn();                                                                         \
        }                                                                                          \
        fprintf(stderr, "%zu tests passed\n", n);                                                  \
        return 0;                                                                                  \
    }

#endif
