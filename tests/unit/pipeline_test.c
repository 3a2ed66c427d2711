/* Reading pipeline files: a good one in full, and bad ones refused whole with file, line and
 * reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "plugin/loader.h"
#include "sl_fixture.h"
#include "sl_test.h"

static char *dir;

static char *write_file(const char *name, const char *text) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    SL_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads as 'sluice pipeline deploy' does: the file, then its plugins. */
static int load(const char *text, sl_pipeline **p, char *err, size_t errlen) {
    char *path = write_file("pipe.lua", text);
    int rc = sl_pipeline_load(path, NULL, SL_BUILD_PLUGIN_DIR, p, err, errlen);
    free(path);
    if (rc == 0 && (rc = sl_pipeline_check_plugins(*p, err, errlen)) != 0) {
        sl_pipeline_free(*p);
        *p = NULL;
    }
    return rc;
}

/* 'text' must be refused with a message containing ":<line>:" and 'why'. */
static void refused(const char *text, int line, const char *why) {
    sl_pipeline *p = NULL;
    char err[2048] = "", want[32];
    SL_FAIL(load(text, &p, err, sizeof(err)), SL_EINVAL);
    SL_TRUE(p == NULL);
    snprintf(want, sizeof(want), "pipe.lua:%d:", line);
    if (strstr(err, want) == NULL || strstr(err, why) == NULL)
        SL_TEST_FAIL_("\"%s\" lacks \"%s\" or \"%s\"", err, want, why);
}

static void a_good_pipeline_in_full(void) {
    char *handler = write_file("handler.lua", "function process(r, ctx) end\n");
    sl_pipeline *p;
    char err[2048] = "";
    int rc = load("return {\n"
                  "  name = 'shop',\n"
                  "  topics = { orders = { partitions = 6, config = { ['retention.ms'] = 1000 } },\n"
                  "             shipped = 2 },\n"
                  "  processors = {\n"
                  "    { name = 'ship', input = 'orders', output = 'shipped',\n"
                  "      script = 'handler.lua', instances = 3, config = { x = 1, y = true },\n"
                  "      retry = { delays = { '500ms', '30s', '1m' }, dlq = 'orders.dead' } },\n"
                  "    { name = 'up', input = 'orders', output = 'shipped', plugin = 'upper' },\n"
                  "    { name = 'big', input = 'orders', output = 'shipped',\n"
                  "      filter = '#record.value > 3' },\n"
                  "  },\n"
                  "}\n", &p, err, sizeof(err));
    if (rc)
        SL_TEST_FAIL_("%s", err);
    SL_STREQ(p->name, "shop");
    SL_EQ(p->nstages, 3);
    const sl_pl_stage *ship = sl_pipeline_stage(p, "ship");
    SL_TRUE(ship && ship->instances == 3 && ship->nretries == 3);
    SL_EQ(ship->retry_delays_ms[0], 500);
    SL_EQ(ship->retry_delays_ms[2], 60000);
    SL_STREQ(ship->dlq, "orders.dead");
    SL_EQ(ship->line, 6);
    SL_TRUE(strstr(ship->script, "/handler.lua") != NULL);
    SL_EQ(ship->nconfig, 2);
    const sl_pl_stage *up = sl_pipeline_stage(p, "up");
    SL_TRUE(up->plugin && strstr(up->plugin, "upper.so"));
    SL_STREQ(up->dlq, "orders.dlq");
    const sl_pl_stage *big = sl_pipeline_stage(p, "big");
    SL_TRUE(strstr(big->script, "/filter.lua") != NULL);
    SL_STREQ(big->config_keys[0], "expr");
    /* Declared topics (in either order), then orders.retry.1..3, orders.dead, orders.dlq. */
    SL_EQ(p->ntopics, 7);
    const sl_pl_topic *orders = &p->topics[strcmp(p->topics[0].name, "orders") ? 1 : 0];
    SL_STREQ(orders->name, "orders");
    SL_EQ(orders->partitions, 6);
    SL_STREQ(orders->configs[0], "retention.ms=1000");
    SL_STREQ(p->topics[2].name, "orders.retry.1");
    SL_EQ(p->topics[2].partitions, 0);
    SL_STREQ(p->topics[6].name, "orders.dlq");
    char group[256];
    sl_pipeline_group(p, ship, group, sizeof(group));
    SL_STREQ(group, "sluice.shop.ship");
    sl_pipeline_free(p);
    free(handler);
}

static void bad_files_are_refused_with_line_and_reason(void) {
    refused("return {\n  processors = {\n    { name = 'x', input = 'a' output = 'b' },\n", 3,
            "'}' expected");
    refused("return {\n  processors = {\n    { name = 'a', input = 'in', output = 'in',\n"
            "      plugin = 'upper' } } }\n", 3, "its own input");
    refused("return {\n  processors = {\n\n    { name = 'a', output = 'out', plugin = 'upper' },\n"
            "  } }\n", 4, "missing field 'input'");
    refused("return {\n  processors = {\n    { name = 'a', input = 'i', output = 'o',\n"
            "      plugin = 'no_such_plugin' } } }\n", 3, "no plugin named \"no_such_plugin\"");
    refused("return { sinks = { { name = 's', input = 'i', plugin = 'upper' } } }\n", 1,
            "is a processor, not a sink");
    refused("return {\n  processing_guarantee = 'exactly_twice',\n"
            "  processors = { { name = 'a', input = 'i', output = 'o', plugin = 'upper' } } }\n",
            2, "must be \"at_least_once\" (the default) or \"exactly_once\"");
    refused("return { processors = { { name = 'a', input = 'i', output = 'o', plugin = 'upper',\n"
            "  retry = { delays = { 'soon' } } } } }\n", 1, "\"soon\" is not a duration");
    refused("return { processors = { { name = 'a', input = 'i', output = 'o', plugin = 'upper',"
            " instanses = 2 } } }\n", 1, "unknown field 'instanses'");
    refused("return { processors = { { name = 'a', input = 'i', output = 'o', script = 'x.lua',"
            " plugin = 'upper' } } }\n", 1, "not both script and plugin");
    refused("return { processors = { { name = 'a', input = 'i', output = 'o',\n"
            " filter = 'record.value ==' } } }\n", 1, "does not compile");
    refused("return { processors = { { name = 'a', input = 'i', output = 'o',\n"
            " script = 'missing.lua' } } }\n", 1, "cannot be read");
    refused("return { processors = {\n { name = 'a', input = 'i', output = 'o', plugin = 'upper' },\n"
            " { name = 'a', input = 'i', output = 'p', plugin = 'upper' } } }\n", 2,
            "another stage has that name");
    refused("return { topics = { ['__x'] = 1 },\n processors = {} }\n", 1, "Sluice's");
    /* Hostile tables: metamethods are not called, memory is capped. */
    refused("return setmetatable({}, { __index = function() error('x') end })\n", 1,
            "has no sources, processors or sinks");
    refused("local s = string.rep('x', 1 << 30)\nreturn {}\n", 1, "more than 64 MiB");
    refused("while true do end\n", 1, "runs too long");
    refused("return 42\n", 1, "must return a table");
}

static void durations_parse(void) {
    int64_t ms;
    SL_PASS(sl_pipeline_parse_duration("250", &ms));
    SL_EQ(ms, 250);
    SL_PASS(sl_pipeline_parse_duration("1.5s", &ms));
    SL_EQ(ms, 1500);
    SL_PASS(sl_pipeline_parse_duration("2h", &ms));
    SL_EQ(ms, 7200000);
    SL_FAIL(sl_pipeline_parse_duration("-1s", &ms), SL_EINVAL);
    SL_FAIL(sl_pipeline_parse_duration("3 weeks", &ms), SL_EINVAL);
}

static void setup_and(void (*fn)(void)) {
    dir = sl_fixture_dir("sl_pipeline_test", "x");
    *strrchr(dir, '/') = '\0';
    fn();
    SL_PASS(sl_fs_remove_tree(dir));
    free(dir);
}

static void good(void) { setup_and(a_good_pipeline_in_full); }
static void bad(void) { setup_and(bad_files_are_refused_with_line_and_reason); }

SL_TESTS({"a good pipeline, in full", good},
         {"bad files are refused with line and reason", bad},
         {"durations parse", durations_parse})
