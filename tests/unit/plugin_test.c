/* The plugin loader and the Lua host, against real .so files and real scripts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin/loader.h"
#include "plugin/lua_host.h"
#include "sl_fixture.h"
#include "sl_test.h"

/* ---- the loader ---- */

static void load_expect_refused(const char *file, const char *why) {
    char path[1024], err[1024] = "";
    snprintf(path, sizeof(path), "%s/%s", SL_TEST_PLUGIN_DIR, file);
    sl_plugin_lib *lib = NULL;
    SL_TRUE(sl_plugin_load(path, &lib, err, sizeof(err)) != 0);
    SL_TRUE(lib == NULL);
    if (strstr(err, why) == NULL || strstr(err, path) == NULL)
        SL_TEST_FAIL_("message \"%s\" lacks \"%s\" or the file name", err, why);
}

static void current_plugin_loads(void) {
    char path[1024], err[1024];
    SL_PASS(sl_plugin_locate(SL_BUILD_PLUGIN_DIR, "upper", path, sizeof(path), err,
                             sizeof(err)));
    sl_plugin_lib *lib;
    SL_PASS(sl_plugin_load(path, &lib, err, sizeof(err)));
    SL_STREQ(lib->desc.name, "upper");
    SL_EQ(lib->desc.kind, SL_PLUGIN_PROCESSOR);
    SL_EQ(lib->desc.struct_size, sizeof(sl_plugin_descriptor));
    sl_plugin_unload(lib);
}

static void old_sized_descriptor_loads(void) {
    char path[1024], err[1024];
    snprintf(path, sizeof(path), "%s/old_abi.so", SL_TEST_PLUGIN_DIR);
    sl_plugin_lib *lib;
    SL_PASS(sl_plugin_load(path, &lib, err, sizeof(err)));
    SL_STREQ(lib->desc.name, "old_abi");
    SL_EQ(lib->desc.struct_size, SL_PLUGIN_DESCRIPTOR_MIN_SIZE);
    SL_TRUE(lib->desc.process != NULL);
    SL_TRUE(lib->desc.process_batch == NULL); /* beyond its size: absent, not garbage */
    sl_plugin_unload(lib);
}

static void foreign_libraries_are_refused(void) {
    load_expect_refused("bad_magic.so", "magic 0xdeadbeef");
    load_expect_refused("no_entry.so", "exports no sluice_plugin()");
}

static void missing_plugin_names_the_search_path(void) {
    char path[1024], err[1024];
    SL_FAIL(sl_plugin_locate("/nonexistent:/also-not", "nope", path, sizeof(path), err,
                             sizeof(err)), SL_ENOENT);
    SL_TRUE(strstr(err, "nope.so") && strstr(err, "/also-not"));
}

static void not_a_shared_object_is_refused(void) {
    char dir[] = "/tmp/sl_plugin_test.XXXXXX", path[256], err[1024];
    SL_TRUE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/text.so", dir);
    FILE *f = fopen(path, "w");
    SL_TRUE(f != NULL);
    fputs("not an ELF file\n", f);
    fclose(f);
    sl_plugin_lib *lib;
    SL_TRUE(sl_plugin_load(path, &lib, err, sizeof(err)) != 0);
    SL_TRUE(strstr(err, "cannot load plugin") != NULL);
    SL_PASS(sl_fs_remove_tree(dir));
}

/* ---- the Lua host, with a host that records what is emitted ---- */

struct sl_plugin_ctx {
    int emitted;
    char last_topic[64], last_value[256], last_header[64];
};

static int fake_emit(sl_plugin_ctx *c, const sl_plugin_record *r) {
    c->emitted++;
    snprintf(c->last_topic, sizeof(c->last_topic), "%s", r->topic ? r->topic : "(default)");
    snprintf(c->last_value, sizeof(c->last_value), "%.*s", (int)r->value_len,
             r->value ? (const char *)r->value : "");
    c->last_header[0] = '\0';
    if (r->nheaders)
        snprintf(c->last_header, sizeof(c->last_header), "%s=%.*s", r->headers[0].key,
                 (int)r->headers[0].value_len, (const char *)r->headers[0].value);
    return 0;
}

static void fake_log(sl_plugin_ctx *c, sl_plugin_log_level l, const char *fmt, ...) {
    (void)c;
    (void)l;
    (void)fmt;
}

static int fake_get(sl_plugin_ctx *c, const void *k, size_t kl, const void **v, size_t *vl) {
    (void)c, (void)k, (void)kl, (void)v, (void)vl;
    return SL_ENOENT;
}

static int fake_put(sl_plugin_ctx *c, const void *k, size_t kl, const void *v, size_t vl) {
    (void)c, (void)k, (void)kl, (void)v, (void)vl;
    return 0;
}

static int fake_get_partition(sl_plugin_ctx *c, int32_t p, const void *k, size_t kl,
                              const void **v, size_t *vl) {
    (void)p;
    return fake_get(c, k, kl, v, vl);
}

static int fake_put_partition(sl_plugin_ctx *c, int32_t p, const void *k, size_t kl,
                              const void *v, size_t vl) {
    (void)p;
    return fake_put(c, k, kl, v, vl);
}

static void fake_metric(sl_plugin_ctx *c, const char *name, int64_t delta) {
    (void)c, (void)name, (void)delta;
}

static const sl_plugin_host fake_host = {.struct_size = sizeof(sl_plugin_host),
                                         .emit = fake_emit, .log = fake_log,
                                         .state_get = fake_get, .state_put = fake_put,
                                         .metric_add = fake_metric,
                                         .state_get_partition = fake_get_partition,
                                         .state_put_partition = fake_put_partition};

static char *script(const char *text) {
    char *dir = sl_fixture_dir("sl_lua_test", "script.lua");
    *strrchr(dir, '/') = '\0';
    char *path = malloc(strlen(dir) + 16);
    sprintf(path, "%s/script.lua", dir);
    free(dir);
    FILE *f = fopen(path, "w");
    SL_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

static sl_lua_proc *start(const char *text, sl_plugin_ctx *ctx, int64_t memory) {
    char *path = script(text);
    sl_lua_settings s = {.script_path = path, .max_instructions = 1000000, .max_memory = memory};
    sl_lua_proc *lp = NULL;
    char err[1024] = "";
    int rc = sl_lua_proc_new(&s, &fake_host, ctx, &lp, err, sizeof(err));
    if (rc)
        SL_TEST_FAIL_("script did not start: %s", err);
    sl_fixture_drop_dir(path);
    return lp;
}

static const sl_plugin_record sample = {"in", 2, 41, 1000, "k", 1, "hello", 5, NULL, 0};

static int run(sl_lua_proc *lp, char *err, char *tb) {
    return sl_lua_proc_process(lp, &sample, err, 1024, tb, 4096);
}

static void lua_emits_and_returns_records(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("function process(r, ctx)\n"
                            "  ctx.emit('out', r.key, r.value:upper() .. r.offset, {h = r.topic})\n"
                            "  return { { value = 'a' }, { value = json.encode({n = 1}) } }\n"
                            "end\n", &c, 0);
    char err[1024], tb[4096];
    SL_PASS(run(lp, err, tb));
    SL_EQ(c.emitted, 3);
    SL_STREQ(c.last_value, "{\"n\":1}");
    SL_STREQ(c.last_topic, "(default)");
    sl_lua_proc_free(lp);
    c = (sl_plugin_ctx){0};
    lp = start("function process(r, ctx) ctx.emit('out', r.key, r.value:upper() .. r.offset, "
               "{h = r.topic}) end", &c, 0);
    SL_PASS(run(lp, err, tb));
    SL_STREQ(c.last_topic, "out");
    SL_STREQ(c.last_value, "HELLO41");
    SL_STREQ(c.last_header, "h=in");
    sl_lua_proc_free(lp);
}

static void lua_error_has_message_and_traceback(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("local function deep() error('no such customer') end\n"
                            "function process(r, ctx) deep() end\n", &c, 0);
    char err[1024], tb[4096];
    SL_FAIL(run(lp, err, tb), SL_EINVAL);
    SL_TRUE(strstr(err, "no such customer") != NULL);
    SL_TRUE(strstr(err, "script.lua:1") != NULL);
    SL_TRUE(strstr(tb, "deep") != NULL);
    /* The state is still usable after a failure. */
    SL_FAIL(run(lp, err, tb), SL_EINVAL);
    sl_lua_proc_free(lp);
}

static void endless_loop_hits_the_budget(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("calls = 0\n"
                            "function process(r, ctx)\n"
                            "  calls = calls + 1\n"
                            "  if calls == 1 then while true do end end\n"
                            "  ctx.emit(nil, nil, 'fine')\n"
                            "end\n", &c, 0);
    char err[1024], tb[4096];
    SL_FAIL(run(lp, err, tb), SL_EINVAL);
    if (strstr(err, "instruction budget") == NULL)
        SL_TEST_FAIL_("%s", err);
    SL_PASS(run(lp, err, tb)); /* the next call has a fresh budget */
    SL_EQ(c.emitted, 1);
    sl_lua_proc_free(lp);
}

static void memory_bomb_hits_the_limit(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("function process(r, ctx)\n"
                            "  if r.value == 'hello' then\n"
                            "    local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 100000) .. i end\n"
                            "  end\n"
                            "end\n", &c, 4 << 20);
    char err[1024], tb[4096];
    SL_FAIL(sl_lua_proc_process(lp, &sample, err, sizeof(err), tb, sizeof(tb)), SL_EINVAL);
    SL_TRUE(strstr(err, "memory limit of 4194304 bytes") != NULL);
    SL_TRUE(sl_lua_proc_memory(lp) <= 4 << 20);
    sl_lua_proc_free(lp);
}

static void a_record_too_big_for_the_state_fails_cleanly(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("function process(r, ctx) ctx.emit(nil, nil, 'x', { n = 42 }) end",
                            &c, 1 << 20);
    size_t big = 3 << 20;
    char *value = malloc(big);
    SL_TRUE(value != NULL);
    memset(value, 'v', big);
    sl_plugin_record rec = sample;
    rec.value = value;
    rec.value_len = big;
    char err[1024], tb[4096];
    SL_FAIL(sl_lua_proc_process(lp, &rec, err, sizeof(err), tb, sizeof(tb)), SL_EINVAL);
    SL_TRUE(strstr(err, "memory limit") != NULL);
    free(value);
    SL_PASS(run(lp, err, tb)); /* the next record is fine, and numbers make string headers */
    SL_STREQ(c.last_header, "n=42");
    sl_lua_proc_free(lp);
}

static void sandbox_has_no_os_io_or_foreign_require(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("function process(r, ctx)\n"
                            "  ctx.emit(nil, nil, tostring(os == nil and io == nil and "
                            "not pcall(require, 'os') and not pcall(require, '../x') and "
                            "dofile == nil and loadfile == nil))\n"
                            "  assert(load('return 1')() == 1)\n"
                            "  assert(load(string.dump(function() end)) == nil)\n"
                            "end\n", &c, 0);
    char err[1024], tb[4096];
    int rc = run(lp, err, tb);
    if (rc)
        SL_TEST_FAIL_("%s", err);
    SL_STREQ(c.last_value, "true");
    sl_lua_proc_free(lp);
}

/* process_batch gets columns; ctx.dead_letter marks records; require finds a library beside
 * the script. */
static void batches_dead_letters_and_libraries(void) {
    char *dir = sl_fixture_dir("sl_lua_test", "script.lua");
    *strrchr(dir, '/') = '\0';
    char path[4096];
    snprintf(path, sizeof(path), "%s/twice.lua", dir);
    FILE *f = fopen(path, "w");
    SL_TRUE(f != NULL);
    fputs("local M = {}\nfunction M.twice(s) return s .. s end\nreturn M\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/loop.lua", dir);
    f = fopen(path, "w");
    SL_TRUE(f != NULL);
    fputs("return require('loop')\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/script.lua", dir);
    f = fopen(path, "w");
    SL_TRUE(f != NULL);
    fputs("local lib = require('twice')\n"
          "assert(require('twice') == lib)\n"
          "local ok, err = pcall(require, 'loop')\n"
          "assert(not ok and err:find('cycle'), err)\n"
          "function process_batch(b, ctx)\n"
          "  for i = 1, b.n do\n"
          "    if b.value[i] == 'bad' then ctx.dead_letter(i, 'bad value at ' .. b.offset[i])\n"
          "    else ctx.emit(b.topic[i], b.key[i], lib.twice(b.value[i]) .. b.partition[i]) end\n"
          "  end\n"
          "  ctx.metric('seen', b.n)\n"
          "  ctx.put('k', 'v', 4)\n"
          "end\n", f);
    fclose(f);
    sl_lua_settings s = {.script_path = path, .max_instructions = 1000000};
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = NULL;
    char err[1024] = "", tb[4096];
    SL_PASS(sl_lua_proc_new(&s, &fake_host, &c, &lp, err, sizeof(err)));
    SL_TRUE(sl_lua_proc_has_batch(lp));
    sl_plugin_record recs[3] = {{"in", 1, 10, 1000, "a", 1, "x", 1, NULL, 0},
                                {"in", 1, 11, 1000, "b", 1, "bad", 3, NULL, 0},
                                {"in2", 0, 12, 1000, NULL, 0, "yz", 2, NULL, 0}};
    const sl_lua_dead_letter *dead;
    size_t ndead;
    int rc = sl_lua_proc_process_batch(lp, recs, 3, &dead, &ndead, err, sizeof(err), tb,
                                       sizeof(tb));
    if (rc)
        SL_TEST_FAIL_("process_batch: %s", err);
    SL_EQ(c.emitted, 2);
    SL_STREQ(c.last_topic, "in2");
    SL_STREQ(c.last_value, "yzyz0");
    SL_EQ(ndead, 1);
    SL_EQ(dead[0].index, 1);
    SL_STREQ(dead[0].reason, "bad value at 11");
    /* Outside a batch there is nothing to dead-letter, and put needs a partition. */
    SL_PASS(sl_lua_proc_restore(lp, 3, NULL, 0, err, sizeof(err)));
    sl_lua_proc_free(lp);
    sl_fixture_drop_dir(strdup(path));
    free(dir);
}

/* json.field reads one member without decoding the rest, and agrees with json.decode. */
static void json_field_reads_one_member(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start(
        "function process(r, ctx)\n"
        "  local f = json.field\n"
        "  local click = '{\"ad_id\":\"a17\",\"n\":[1,{\"x\":\"}\"}],\"ts\":1700000000123}'\n"
        "  assert(f(click, 'ts') == 1700000000123 and math.type(f(click, 'ts')) == 'integer')\n"
        "  assert(f(click, 'ad_id') == 'a17')\n"
        "  assert(f(click, 'n') == nil and f(click, 'missing') == nil)\n"
        "  assert(f(' { \"a\" : 1.5e3 , \"b\":true, \"c\":null } ', 'a') == 1500)\n"
        "  assert(f('{\"b\":true}', 'b') == true)\n"
        "  assert(f('{\"a\":1,\"a\":2}', 'a') == 2)             -- the last one, as decode\n"
        "  assert(f('{\"s\":\"q\\\\\"t\"}', 's') == 'q\"t')      -- escapes: the decoder\n"
        "  assert(f('{\"\\\\u0074s\":5}', 'ts') == 5)\n"
        "  assert(f('[1,2]', 'a') == nil)\n"
        "  for _, bad in ipairs({'', 'x', '{\"a\"', '{\"a\":}', '{\"a\":1 \"b\":2}', '{\"a\":tru}'}) do\n"
        "    assert(not pcall(f, bad, 'a'), bad)\n"
        "  end\n"
        "  ctx.emit(nil, nil, 'ok')\n"
        "end\n", &c, 0);
    char err[1024], tb[4096];
    int rc = run(lp, err, tb);
    if (rc)
        SL_TEST_FAIL_("%s\n%s", err, tb);
    SL_STREQ(c.last_value, "ok");
    sl_lua_proc_free(lp);
}

static void codecs_round_trip(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("function process(r, ctx)\n"
                            "  local v = { a = 1, b = { 1, 2, 'x' }, c = 'é' }\n"
                            "  local m = msgpack.unpack(msgpack.pack(v))\n"
                            "  assert(m.a == 1 and m.b[3] == 'x' and m.c == 'é')\n"
                            "  local j = json.decode(json.encode(v))\n"
                            "  assert(j.b[2] == 2)\n"
                            "  assert(not pcall(msgpack.unpack, '\\xdd\\xff\\xff\\xff\\xff'))\n"
                            "  local cyc = {} cyc.self = cyc\n"
                            "  assert(not pcall(msgpack.pack, cyc))\n"
                            "  local dag = { 1 } for i = 1, 40 do dag = { dag, dag } end\n"
                            "  assert(not pcall(msgpack.pack, dag))\n"
                            "  ctx.emit(nil, nil, 'ok')\n"
                            "end\n", &c, 0);
    char err[1024], tb[4096];
    int rc = run(lp, err, tb);
    if (rc)
        SL_TEST_FAIL_("%s", err);
    SL_STREQ(c.last_value, "ok");
    sl_lua_proc_free(lp);
}

static void reject_and_retry_verdicts(void) {
    sl_plugin_ctx c = {0};
    sl_lua_proc *lp = start("function process(r, ctx)\n"
                            "  if r.offset == 41 then ctx.reject('bad amount') end\n"
                            "end\n", &c, 0);
    char err[1024], tb[4096];
    SL_FAIL(run(lp, err, tb), SL_EREJECT);
    SL_TRUE(strstr(err, "bad amount") != NULL);
    sl_lua_proc_free(lp);
    lp = start("function process(r, ctx) ctx.retry('database busy') end", &c, 0);
    SL_FAIL(run(lp, err, tb), SL_ERETRY);
    sl_lua_proc_free(lp);
}

static void bad_scripts_do_not_start(void) {
    sl_plugin_ctx c = {0};
    const char *bad[][2] = {{"function process(r, ctx)\n  if then end\nend\n", ":2:"},
                            {"x = 1\n", "defines no process"},
                            {"error('at load')\n", "at load"}};
    for (size_t i = 0; i < 3; i++) {
        char *path = script(bad[i][0]);
        sl_lua_settings s = {.script_path = path};
        sl_lua_proc *lp = NULL;
        char err[1024] = "";
        SL_TRUE(sl_lua_proc_new(&s, &fake_host, &c, &lp, err, sizeof(err)) != 0);
        SL_TRUE(lp == NULL);
        if (strstr(err, bad[i][1]) == NULL)
            SL_TEST_FAIL_("\"%s\" lacks \"%s\"", err, bad[i][1]);
        sl_fixture_drop_dir(path);
    }
}

SL_TESTS({"a current plugin loads", current_plugin_loads},
         {"an old-sized descriptor loads", old_sized_descriptor_loads},
         {"foreign libraries are refused", foreign_libraries_are_refused},
         {"a missing plugin names the search path", missing_plugin_names_the_search_path},
         {"a file that is not a shared object is refused", not_a_shared_object_is_refused},
         {"lua emits and returns records", lua_emits_and_returns_records},
         {"a lua error has its message and traceback", lua_error_has_message_and_traceback},
         {"an endless loop hits the instruction budget", endless_loop_hits_the_budget},
         {"a memory bomb hits the memory limit", memory_bomb_hits_the_limit},
         {"a record too big for the state fails cleanly",
          a_record_too_big_for_the_state_fails_cleanly},
         {"the sandbox has no os, io or foreign require", sandbox_has_no_os_io_or_foreign_require},
         {"batches, dead letters and libraries", batches_dead_letters_and_libraries},
         {"json.field reads one member", json_field_reads_one_member},
         {"json and msgpack round trip", codecs_round_trip},
         {"reject and retry verdicts", reject_and_retry_verdicts},
         {"bad scripts do not start", bad_scripts_do_not_start})
