#include "cli/timeparse.h"

#include <stdbool.h>
#include <string.h>

#include "sluice/err.h"

#define MS_PER_SECOND INT64_C(1000)
#define MS_PER_MINUTE (60 * MS_PER_SECOND)
#define MS_PER_HOUR (60 * MS_PER_MINUTE)
#define MS_PER_DAY (24 * MS_PER_HOUR)

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Reads exactly 'count' decimal digits at *p and advances past them. */
static bool take_digits(const char **p, int count, int *out) {
    int value = 0;
    for (int i = 0; i < count; i++) {
        if (!is_digit((*p)[i]))
            return false;
        value = value * 10 + ((*p)[i] - '0');
    }
    *p += count;
    *out = value;
    return true;
}

/* Consumes 'c' if it is next. */
static bool take_char(const char **p, char c) {
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

/* Reads an unsigned decimal number that must fit an int64_t; 'end' is where it stopped. */
static bool take_number(const char *s, const char **end, int64_t *out) {
    int64_t value = 0;
    const char *p = s;
    for (; is_digit(*p); p++) {
        int digit = *p - '0';
        if (value > (INT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    if (p == s)
        return false;
    *end = p;
    *out = value;
    return true;
}

/* ---- calendar ---------------------------------------------------------------------------- */

static bool is_leap_year(int year) {
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap_year(year) ? 29 : days[month - 1];
}

/* Leap years in [1, year - 1]: the Gregorian rule counted over whole years, so that a date's
 * distance from the epoch needs no loop. Only valid for year >= 1. */
static int64_t leap_years_before(int year) {
    int64_t y = year - 1;
    return y / 4 - y / 100 + y / 400;
}

/* Days from 1970-01-01 to a valid Gregorian date (negative before it). */
static int64_t days_since_epoch(int year, int month, int day) {
    static const int days_before_month[12] = {0,   31,  59,  90,  120, 151,
                                              181, 212, 243, 273, 304, 334};
    int64_t days = INT64_C(365) * (year - 1970) + leap_years_before(year) - leap_years_before(1970);
    days += days_before_month[month - 1] + (month > 2 && is_leap_year(year) ? 1 : 0);
    return days + day - 1;
}

/* ---- ISO 8601 ---------------------------------------------------------------------------- */

/* YYYY-MM-DD, as days since the epoch. */
static bool take_date(const char **p, int64_t *days) {
    int year, month, day;
    if (!take_digits(p, 4, &year) || !take_char(p, '-') || !take_digits(p, 2, &month) ||
        !take_char(p, '-') || !take_digits(p, 2, &day))
        return false;
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
        return false;
    *days = days_since_epoch(year, month, day);
    return true;
}

/* Fraction of a second after '.' or ',': at least one digit; digits past ms are dropped. */
static bool take_fraction(const char **p, int64_t *ms) {
    int64_t scale = 100;
    *ms = 0;
    if (!is_digit(**p))
        return false;
    for (; is_digit(**p); (*p)++) {
        *ms += (**p - '0') * scale;
        scale /= 10;
    }
    return true;
}

/* HH:MM[:SS[.fff]], as ms since midnight. */
static bool take_clock(const char **p, int64_t *ms) {
    int hour, minute, second = 0;
    int64_t fraction_ms = 0;
    if (!take_digits(p, 2, &hour) || !take_char(p, ':') || !take_digits(p, 2, &minute))
        return false;
    if (take_char(p, ':')) {
        if (!take_digits(p, 2, &second))
            return false;
        if ((take_char(p, '.') || take_char(p, ',')) && !take_fraction(p, &fraction_ms))
            return false;
    }
    if (hour > 23 || minute > 59 || second > 59)
        return false;
    *ms = hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * MS_PER_SECOND + fraction_ms;
    return true;
}

/* Nothing (UTC), Z, or +HH:MM / -HH:MM / +HHMM / +HH: how far local time is ahead of UTC. */
static bool take_zone(const char **p, int64_t *offset_ms) {
    int sign, hours, minutes = 0;
    *offset_ms = 0;
    if (**p == '\0' || take_char(p, 'Z') || take_char(p, 'z'))
        return true;
    if (take_char(p, '+'))
        sign = 1;
    else if (take_char(p, '-'))
        sign = -1;
    else
        return false;
    if (!take_digits(p, 2, &hours))
        return false;
    if (**p != '\0') {
        take_char(p, ':');
        if (!take_digits(p, 2, &minutes))
            return false;
    }
    if (hours > 23 || minutes > 59)
        return false;
    *offset_ms = sign * (hours * MS_PER_HOUR + minutes * MS_PER_MINUTE);
    return true;
}

static bool parse_iso8601(const char *s, int64_t *out_ms) {
    const char *p = s;
    int64_t days, clock_ms = 0, zone_ms = 0;
    if (!take_date(&p, &days))
        return false;
    if (*p != '\0') {
        if (!take_char(&p, 'T') && !take_char(&p, 't') && !take_char(&p, ' '))
            return false;
        if (!take_clock(&p, &clock_ms) || !take_zone(&p, &zone_ms))
            return false;
    }
    if (*p != '\0')
        return false;
    *out_ms = days * MS_PER_DAY + clock_ms - zone_ms;
    return true;
}

/* ---- relative and epoch ------------------------------------------------------------------ */

/* The length of one unit: ms, s, m, h or d; 0 for anything else. */
static int64_t unit_ms(const char *unit) {
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {{"ms", 1},
                 {"s", MS_PER_SECOND},
                 {"m", MS_PER_MINUTE},
                 {"h", MS_PER_HOUR},
                 {"d", MS_PER_DAY}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(unit, units[i].name) == 0)
            return units[i].ms;
    return 0;
}

/* "-<count><unit>": that long before now. */
static bool parse_relative(const char *s, int64_t now_ms, int64_t *out_ms) {
    const char *unit;
    int64_t count, scale;
    if (!take_char(&s, '-') || !take_number(s, &unit, &count))
        return false;
    scale = unit_ms(unit);
    if (scale == 0 || count > INT64_MAX / scale)
        return false;
    if (now_ms < INT64_MIN + count * scale)
        return false;
    *out_ms = now_ms - count * scale;
    return true;
}

static bool parse_epoch_ms(const char *s, int64_t *out_ms) {
    const char *end;
    int64_t value;
    if (!take_number(s, &end, &value) || *end != '\0')
        return false;
    *out_ms = value;
    return true;
}

/* A date starts with four digits and a dash; a bare number never has the dash. */
static bool looks_like_date(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!is_digit(s[i]))
            return false;
    return s[4] == '-';
}

int sl_cli_parse_time(const char *s, int64_t now_ms, int64_t *out_ms) {
    bool ok;
    if (s == NULL || out_ms == NULL)
        return SL_EINVAL;
    if (s[0] == '-')
        ok = parse_relative(s, now_ms, out_ms);
    else if (looks_like_date(s))
        ok = parse_iso8601(s, out_ms);
    else
        ok = parse_epoch_ms(s, out_ms);
    return ok ? 0 : SL_EINVAL;
}
