/* sl_cli_format: the kcat-style output of `sluice consume --format`. */
#include "cli/format.h"
#include "sl_test.h"

/* Formats 'm' into a string; the caller frees it. */
static char *formatted(const char *fmt, const sl_message *m, size_t *len) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    SL_TRUE(out != NULL);
    SL_PASS(sl_cli_format(out, fmt, m));
    SL_EQ(fclose(out), 0);
    if (len != NULL)
        *len = size;
    return text;
}

static void expect(const char *fmt, const sl_message *m, const char *want) {
    char *got = formatted(fmt, m, NULL);
    SL_STREQ(got, want);
    free(got);
}

static sl_message sample(void) {
    static const sl_header headers[] = {
        {"trace", "abc", 3},
        {"tenant", "7", 1},
    };
    sl_message m = {.topic = "orders",
                    .partition = 3,
                    .offset = 1234567890123,
                    .timestamp = 1795514400123,
                    .key = "user-1",
                    .key_len = 6,
                    .value = "hello world",
                    .value_len = 11,
                    .headers = headers,
                    .nheaders = 2};
    return m;
}

static void each_directive(void) {
    sl_message m = sample();
    expect("%t", &m, "orders");
    expect("%p", &m, "3");
    expect("%o", &m, "1234567890123");
    expect("%k", &m, "user-1");
    expect("%v", &m, "hello world");
    expect("%T", &m, "1795514400123");
    expect("%h", &m, "trace=abc,tenant=7");
    expect("%%", &m, "%");
}

static void default_and_mixed_formats(void) {
    sl_message m = sample();
    expect("%v\\n", &m, "hello world\n");
    expect("%t/%p@%o: %k=%v (%T) [%h]", &m,
           "orders/3@1234567890123: user-1=hello world (1795514400123) [trace=abc,tenant=7]");
    expect("100%% %k", &m, "100% user-1");
    expect("plain text only", &m, "plain text only");
    expect("", &m, "");
}

static void escapes_are_written_literally(void) {
    sl_message m = sample();
    expect("%k\\t%v\\n", &m, "user-1\thello world\n");
    expect("a\\\\b", &m, "a\\b");
    expect("\\r", &m, "\r");
    expect("\\q", &m, "\\q");     /* not an escape: kept as typed */
    expect("end\\", &m, "end\\"); /* a lone trailing backslash too */
    expect("\\\\n", &m, "\\n");   /* an escaped backslash, then a plain n */
}

static void null_key_and_value_print_nothing(void) {
    sl_message m = sample();
    m.key = NULL;
    m.key_len = 0;
    m.value = NULL;
    m.value_len = 0;
    expect("[%k][%v]", &m, "[][]");
}

static void headers_edge_cases(void) {
    static const sl_header odd[] = {
        {"null", NULL, 0},
        {"empty", "", 0},
        {"k", "v", 1},
    };
    sl_message m = sample();
    m.headers = NULL;
    m.nheaders = 0;
    expect("[%h]", &m, "[]");
    m.headers = odd;
    m.nheaders = 3;
    expect("%h", &m, "null,empty=,k=v");
}

static void binary_values_are_written_whole(void) {
    static const char bytes[] = {'a', '\0', 'b', '%', '\\'};
    sl_message m = sample();
    size_t len;
    m.value = bytes;
    m.value_len = sizeof(bytes);
    char *got = formatted("<%v>", &m, &len);
    SL_EQ(len, sizeof(bytes) + 2);
    SL_TRUE(memcmp(got, "<a\0b%\\>", len) == 0);
    free(got);
}

static void bad_directives_are_refused(void) {
    char errbuf[128];
    sl_message m = sample();
    SL_PASS(sl_cli_format_check("%t %p %o %k %v %T %h %% \\n \\x", errbuf, sizeof(errbuf)));
    SL_FAIL(sl_cli_format_check("%v %x", errbuf, sizeof(errbuf)), SL_EINVAL);
    SL_TRUE(strstr(errbuf, "\"%x\"") != NULL);
    SL_FAIL(sl_cli_format_check("%v%", errbuf, sizeof(errbuf)), SL_EINVAL);
    SL_TRUE(strstr(errbuf, "lone") != NULL);

    FILE *out = fopen("/dev/null", "w");
    SL_TRUE(out != NULL);
    SL_FAIL(sl_cli_format(out, "%v %x", &m), SL_EINVAL);
    SL_FAIL(sl_cli_format(out, "%", &m), SL_EINVAL);
    fclose(out);
}

static void write_errors_are_reported(void) {
    /* A stream that only reads: every write fails and sets the error flag. */
    char buf[16] = "";
    sl_message m = sample();
    FILE *out = fmemopen(buf, sizeof(buf), "r");
    SL_TRUE(out != NULL);
    SL_FAIL(sl_cli_format(out, "%v\\n", &m), SL_EIO);
    fclose(out);
}

SL_TESTS({"each directive writes its field", each_directive},
         {"directives mix with text and escapes", default_and_mixed_formats},
         {"backslash escapes from the shell become characters", escapes_are_written_literally},
         {"null key and value print nothing", null_key_and_value_print_nothing},
         {"headers: none, null value, empty value", headers_edge_cases},
         {"binary values are written byte for byte", binary_values_are_written_whole},
         {"unknown directives and a lone percent are refused", bad_directives_are_refused},
         {"a write error on the stream is reported", write_errors_are_reported})
