/* sl_cli_parse_time: the time forms `sluice consume --from-time` accepts and refuses. Expected
 * values were computed with `date -u -d <time> +%s`. */
#include "cli/timeparse.h"
#include "sl_test.h"

/* A fixed "now" so relative times have known answers: 2026-11-24T10:00:00Z. */
#define NOW_MS INT64_C(1795514400000)

static int64_t parsed(const char *text) {
    int64_t ms = 0;
    SL_PASS(sl_cli_parse_time(text, NOW_MS, &ms));
    return ms;
}

static void refused(const char *text) {
    int64_t ms = 42;
    if (sl_cli_parse_time(text, NOW_MS, &ms) != SL_EINVAL)
        SL_TEST_FAIL_("\"%s\" was accepted as %lld", text, (long long)ms);
    SL_EQ(ms, 42); /* a refusal leaves the output alone */
}

static void iso_utc_forms(void) {
    SL_EQ(parsed("2026-11-24T10:00:00Z"), INT64_C(1795514400000));
    SL_EQ(parsed("2026-11-24t10:00:00z"), INT64_C(1795514400000));
    SL_EQ(parsed("2026-11-24T10:00:00"), INT64_C(1795514400000));
    SL_EQ(parsed("2026-11-24 10:00:00"), INT64_C(1795514400000));
    SL_EQ(parsed("2026-11-24T10:00Z"), INT64_C(1795514400000));
    SL_EQ(parsed("2026-11-24"), INT64_C(1795478400000));
}

static void iso_fractions(void) {
    SL_EQ(parsed("2026-11-24T10:00:00.123Z"), INT64_C(1795514400123));
    SL_EQ(parsed("2026-11-24T10:00:00.1Z"), INT64_C(1795514400100));
    SL_EQ(parsed("2026-11-24T10:00:00,5Z"), INT64_C(1795514400500));
    SL_EQ(parsed("2026-11-24T10:00:00.123999Z"), INT64_C(1795514400123));
}

static void iso_zone_offsets(void) {
    SL_EQ(parsed("2026-11-24T10:00:00+01:00"), INT64_C(1795510800000));
    SL_EQ(parsed("2026-11-24T10:00:00+0100"), INT64_C(1795510800000));
    SL_EQ(parsed("2026-11-24T10:00:00+01"), INT64_C(1795510800000));
    SL_EQ(parsed("2026-11-24T10:00:00-05:30"), INT64_C(1795534200000));
    SL_EQ(parsed("2026-11-24T10:00:00.250+00:00"), INT64_C(1795514400250));
}

static void calendar_edges(void) {
    SL_EQ(parsed("1970-01-01"), 0);
    SL_EQ(parsed("1969-12-31"), INT64_C(-86400000));
    SL_EQ(parsed("2024-02-29T23:59:59Z"), INT64_C(1709251199000));
    SL_EQ(parsed("2000-03-01"), INT64_C(951868800000));
    SL_EQ(parsed("1900-03-01"), INT64_C(-2203891200000));
    SL_EQ(parsed("0001-01-01"), INT64_C(-62135596800000));
    SL_EQ(parsed("9999-12-31T23:59:59Z"), INT64_C(253402300799000));
}

static void epoch_milliseconds(void) {
    SL_EQ(parsed("0"), 0);
    SL_EQ(parsed("1795514400123"), INT64_C(1795514400123));
    SL_EQ(parsed("2026"), 2026); /* four digits without a dash are a number, not a year */
    SL_EQ(parsed("9223372036854775807"), INT64_MAX);
}

static void relative_times(void) {
    SL_EQ(parsed("-500ms"), NOW_MS - 500);
    SL_EQ(parsed("-10s"), NOW_MS - 10 * 1000);
    SL_EQ(parsed("-30m"), NOW_MS - 30 * 60 * 1000);
    SL_EQ(parsed("-5h"), NOW_MS - 5 * 3600 * 1000);
    SL_EQ(parsed("-2d"), NOW_MS - INT64_C(2) * 86400 * 1000);
    SL_EQ(parsed("-0s"), NOW_MS);
}

static void refuses_garbage(void) {
    refused("");
    refused("garbage");
    refused("yesterday");
    refused(" 2026-11-24");
    refused("2026-11-24 ");
    refused("12abc");
    refused("+5h");
    refused("1.5");
    refused("9223372036854775808"); /* one past INT64_MAX */
}

static void refuses_bad_relative(void) {
    refused("-5x");
    refused("-5");
    refused("-h");
    refused("-");
    refused("-5hours");
    refused("-5 h");
    refused("--5h");
    refused("-5H");
    refused("-9223372036854775807d"); /* overflows when scaled to ms */
}

static void refuses_bad_dates(void) {
    refused("2026-13-01");
    refused("2026-00-10");
    refused("2026-11-00");
    refused("2026-11-31");
    refused("2023-02-29");
    refused("1900-02-29");
    refused("0000-01-01");
    refused("2026-1-24");
    refused("2026-11-24T");
    refused("2026-11-24X10:00:00");
    refused("2026-11-24T24:00:00Z");
    refused("2026-11-24T10:60:00Z");
    refused("2026-11-24T10:00:60Z");
    refused("2026-11-24T10:00:00.Z");
    refused("2026-11-24T10Z");
    refused("2026-11-24T10:00:00+1:00");
    refused("2026-11-24T10:00:00+01:");
    refused("2026-11-24T10:00:00+24:00");
    refused("2026-11-24T10:00:00ZZ");
    refused("2026-11-24T10:00:00 UTC");
}

static void refuses_null(void) {
    int64_t ms;
    SL_FAIL(sl_cli_parse_time(NULL, NOW_MS, &ms), SL_EINVAL);
    SL_FAIL(sl_cli_parse_time("0", NOW_MS, NULL), SL_EINVAL);
}

SL_TESTS({"ISO 8601 in UTC, with T, space, no seconds or date only", iso_utc_forms},
         {"fractions of a second are cut to ms", iso_fractions},
         {"zone offsets move the time to UTC", iso_zone_offsets},
         {"leap years, dates before the epoch and the ends of the range", calendar_edges},
         {"a plain integer is ms since the epoch", epoch_milliseconds},
         {"relative times count back from now", relative_times},
         {"garbage, whitespace and empty text are refused", refuses_garbage},
         {"relative times need a count and a known unit", refuses_bad_relative},
         {"impossible dates, clocks and zones are refused", refuses_bad_dates},
         {"NULL arguments are refused", refuses_null})
