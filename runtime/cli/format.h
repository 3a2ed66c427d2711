/* kcat-style output formats for `sluice consume --format`.
 *
 * Directives:  %t topic   %p partition   %o offset   %T timestamp (ms since the epoch)
 *              %k key (nothing for a null key)   %v value (nothing for a null value)
 *              %h headers as k=v,k2=v2 (a header with a null value is written as just k)
 *              %% a percent sign
 * Escapes, as the shell passes them (a backslash and a letter):  \n newline  \t tab
 *              \r carriage return  \\ backslash. Any other backslash is written as it is.
 * Keys, values and header values are written byte for byte, without quoting. */
#ifndef SL_CLI_FORMAT_H
#define SL_CLI_FORMAT_H

#include <stddef.h>
#include <stdio.h>

#include "sluice/client.h"

/* Checks 'fmt' before any record is read, so a typo is a usage error rather than a failure
 * half-way through the output. Returns 0, or SL_EINVAL with a sentence in errbuf naming the
 * bad directive. */
int sl_cli_format_check(const char *fmt, char *errbuf, size_t errlen);

/* Writes 'm' to 'out' as 'fmt' says. Returns 0, SL_EINVAL for a format sl_cli_format_check()
 * refuses (part of the record may have been written), or SL_EIO when 'out' has a write error. */
int sl_cli_format(FILE *out, const char *fmt, const sl_message *m);

#endif
