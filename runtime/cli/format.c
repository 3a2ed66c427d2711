#include "cli/format.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "sluice/err.h"

static bool is_directive(char c) {
    return c != '\0' && strchr("tpokvTh%", c) != NULL;
}

int sl_cli_format_check(const char *fmt, char *errbuf, size_t errlen) {
    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p != '%')
            continue;
        p++;
        if (*p == '\0') {
            snprintf(errbuf, errlen,
                     "format ends with a lone \"%%\" (write %%%% for a percent sign)");
            return SL_EINVAL;
        }
        if (!is_directive(*p)) {
            snprintf(errbuf, errlen,
                     "unknown format directive \"%%%c\" (known: %%t %%p %%o %%k %%v %%T %%h %%%%)",
                     *p);
            return SL_EINVAL;
        }
    }
    return 0;
}

/* Writes bytes that may be absent (a null key or value): absent and empty look the same. */
static void write_bytes(FILE *out, const void *data, size_t len) {
    if (data != NULL && len > 0)
        fwrite(data, 1, len, out);
}

static void write_headers(FILE *out, const sl_header *headers, size_t nheaders) {
    for (size_t i = 0; i < nheaders; i++) {
        if (i > 0)
            fputc(',', out);
        fputs(headers[i].key, out);
        if (headers[i].value == NULL)
            continue;
        fputc('=', out);
        write_bytes(out, headers[i].value, headers[i].value_len);
    }
}

/* Writes what one directive stands for. */
static int write_directive(FILE *out, char directive, const sl_message *m) {
    switch (directive) {
    case 't':
        fputs(m->topic != NULL ? m->topic : "", out);
        return 0;
    case 'p':
        fprintf(out, "%" PRId32, m->partition);
        return 0;
    case 'o':
        fprintf(out, "%" PRId64, m->offset);
        return 0;
    case 'T':
        fprintf(out, "%" PRId64, m->timestamp);
        return 0;
    case 'k':
        write_bytes(out, m->key, m->key_len);
        return 0;
    case 'v':
        write_bytes(out, m->value, m->value_len);
        return 0;
    case 'h':
        write_headers(out, m->headers, m->nheaders);
        return 0;
    case '%':
        fputc('%', out);
        return 0;
    default:
        return SL_EINVAL;
    }
}

/* The character a backslash escape stands for, or 0 when the pair is not an escape. */
static char escaped_char(char c) {
    switch (c) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    case '\\':
        return '\\';
    default:
        return 0;
    }
}

int sl_cli_format(FILE *out, const char *fmt, const sl_message *m) {
    const char *p = fmt;
    while (*p != '\0') {
        /* Copy plain text in runs rather than a character at a time. */
        size_t plain = strcspn(p, "%\\");
        fwrite(p, 1, plain, out);
        p += plain;
        if (*p == '%') {
            if (write_directive(out, p[1], m) != 0)
                return SL_EINVAL;
            p += 2;
        } else if (*p == '\\') {
            char c = escaped_char(p[1]);
            if (c != 0) {
                fputc(c, out);
                p += 2;
            } else {
                fputc('\\', out);
                p++;
            }
        }
    }
    return ferror(out) ? SL_EIO : 0;
}
