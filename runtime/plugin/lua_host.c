/* The Lua host. Each instance owns one lua_State, created with an allocator that enforces the
 * memory limit and a count hook that enforces the instruction budget; both turn into ordinary
 * Lua errors, so a runaway script fails its record and the state stays usable. */
#include "plugin/lua_host.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/lua_codec.h"
#include "plugin/lua_json_field.h"

#define HOOK_EVERY 1000 /* instructions between budget checks */
#define MAX_HEADERS 64

struct sl_lua_proc {
    lua_State *L;
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    int64_t max_instructions;
    int64_t max_memory;
    int64_t memory;
    int64_t steps;           /* instructions run in the current call */
    bool memory_hit;         /* the memory limit was hit in the current call */
    bool budget_hit;         /* the instruction budget was hit in the current call */
    int verdict;             /* SL_EREJECT or SL_ERETRY when the script asked for it */
    int process_ref;         /* registry refs */
    int ctx_ref;
    bool has_batch;          /* the script defines process_batch */
    size_t batch_n;          /* records of the batch call under way (0: none) */
    sl_lua_dead_letter *dead; /* ctx.dead_letter calls of the current batch */
    size_t ndead, capdead;
    char script_dir[1024];
    char lib_dirs[2048];
    char traceback[4096];
};

static sl_lua_proc *proc_of(lua_State *L) {
    return *(sl_lua_proc **)lua_getextraspace(L);
}

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    sl_lua_proc *lp = ud;
    if (ptr == NULL)
        osize = 0; /* osize then encodes the kind of object, not a size */
    if (nsize == 0) {
        free(ptr);
        lp->memory -= (int64_t)osize;
        return NULL;
    }
    if (nsize > osize && lp->memory + (int64_t)(nsize - osize) > lp->max_memory) {
        lp->memory_hit = true;
        return NULL; /* Lua raises a memory error */
    }
    void *p = realloc(ptr, nsize);
    if (p)
        lp->memory += (int64_t)nsize - (int64_t)osize;
    return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    sl_lua_proc *lp = proc_of(L);
    lp->steps += HOOK_EVERY;
    if (lp->steps > lp->max_instructions) {
        lp->budget_hit = true; /* sticky: a pcall in the script does not make it go away */
        luaL_error(L, "instruction budget exceeded (%I instructions in one call)",
                   (lua_Integer)lp->max_instructions);
    }
}

/* The message handler of every call: keeps the traceback where the error happened. */
static int traceback_handler(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, NULL, 1);
    snprintf(lp->traceback, sizeof(lp->traceback), "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    if (msg == NULL)
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

/* ---- the ctx table ---- */

static const char *opt_string(lua_State *L, int idx, size_t *len, const char *what) {
    if (lua_isnoneornil(L, idx)) {
        *len = 0;
        return NULL;
    }
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "%s must be a string or nil, not a %s (json.encode makes a string of a "
                   "table)", what, luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

/* Emits the record whose topic, key, value and headers are at the given stack indexes (0: absent). */
static void emit_at(lua_State *L, int topic_i, int key_i, int value_i, int headers_i,
                    int64_t timestamp) {
    sl_lua_proc *lp = proc_of(L);
    sl_plugin_record r = {0};
    size_t n;
    r.partition = -1;
    r.timestamp = timestamp;
    r.topic = topic_i ? opt_string(L, topic_i, &n, "the topic") : NULL;
    r.key = key_i ? opt_string(L, key_i, &r.key_len, "the key") : NULL;
    r.value = value_i ? opt_string(L, value_i, &r.value_len, "the value") : NULL;
    sl_plugin_header hs[MAX_HEADERS];
    if (headers_i && !lua_isnoneornil(L, headers_i)) {
        luaL_checktype(L, headers_i, LUA_TTABLE);
        /* Numbers become strings in a table of their own: a string only on the stack would be
         * freed once popped, and the header would point at it. */
        lua_createtable(L, 0, 0);
        int converted = lua_gettop(L);
        lua_Integer nconverted = 0;
        lua_pushnil(L);
        while (lua_next(L, headers_i) != 0) {
            if (r.nheaders == MAX_HEADERS)
                luaL_error(L, "more than %d headers", MAX_HEADERS);
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "header names must be strings");
            hs[r.nheaders].key = lua_tostring(L, -2);
            if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
                hs[r.nheaders].value = NULL; /* false: a null value, as process() receives it */
            } else if (lua_type(L, -1) == LUA_TNUMBER) {
                lua_pushvalue(L, -1);
                hs[r.nheaders].value = lua_tolstring(L, -1, &hs[r.nheaders].value_len);
                lua_rawseti(L, converted, ++nconverted);
            } else {
                hs[r.nheaders].value =
                    opt_string(L, -1, &hs[r.nheaders].value_len, "a header value");
            }
            r.nheaders++;
            lua_pop(L, 1); /* the value stays referenced by the table */
        }
        r.headers = hs;
    }
    int rc = lp->host->emit(lp->ctx, &r);
    if (rc != 0)
        luaL_error(L, "emit to %s failed: %s", r.topic ? r.topic : "the output topic",
                   sl_strerror(rc));
}

/* ctx.emit(topic, key, value, headers, timestamp): nil topic is the stage's output, nil
 * timestamp is now. */
static int l_emit(lua_State *L) {
    emit_at(L, 1, 2, 3, 4, (int64_t)luaL_optinteger(L, 5, 0));
    return 0;
}

static int l_log(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    const char *msg = luaL_tolstring(L, 1, NULL);
    lp->host->log(lp->ctx, SL_PLUGIN_LOG_INFO, "%s", msg);
    return 0;
}

static int verdict(lua_State *L, int status, const char *what) {
    sl_lua_proc *lp = proc_of(L);
    lp->verdict = status;
    const char *reason = luaL_optstring(L, 1, what);
    return luaL_error(L, "%s", reason);
}

static int l_reject(lua_State *L) { return verdict(L, SL_EREJECT, "rejected by the script"); }
static int l_retry(lua_State *L) { return verdict(L, SL_ERETRY, "the script asked to retry"); }

/* The partition argument at idx: a whole number in an int32 (not silently truncated). */
static int32_t partition_arg(lua_State *L, int idx) {
    lua_Integer p = luaL_checkinteger(L, idx);
    luaL_argcheck(L, p >= 0 && p <= INT32_MAX, idx, "not a partition number");
    return (int32_t)p;
}

/* ctx.get(key[, partition]): without a partition, the current record's. */
static int l_get(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    size_t klen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const void *v;
    size_t vlen;
    int rc = lua_isnoneornil(L, 2)
                 ? lp->host->state_get(lp->ctx, key, klen, &v, &vlen)
                 : lp->host->state_get_partition(lp->ctx, partition_arg(L, 2), key,
                                                 klen, &v, &vlen);
    if (rc == SL_EINVAL && lua_isnoneornil(L, 2))
        return luaL_error(L, "ctx.get outside process needs a partition: ctx.get(key, p)");
    if (rc == SL_EINVAL)
        return luaL_error(L, "ctx.get: partition %d is not one of this instance's",
                          (int)luaL_checkinteger(L, 2));
    if (rc == SL_ENOENT) {
        lua_pushnil(L);
        return 1;
    }
    if (rc != 0)
        return luaL_error(L, "state get failed: %s", sl_strerror(rc));
    lua_pushlstring(L, v, vlen);
    return 1;
}

static int l_put(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    size_t klen, vlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *v = opt_string(L, 2, &vlen, "a state value");
    int rc = lua_isnoneornil(L, 3)
                 ? lp->host->state_put(lp->ctx, key, klen, v, vlen)
                 : lp->host->state_put_partition(lp->ctx, partition_arg(L, 3), key,
                                                 klen, v, vlen);
    if (rc == SL_EINVAL && lua_isnoneornil(L, 3))
        return luaL_error(L, "ctx.put outside process needs a partition: ctx.put(key, value, p)");
    if (rc == SL_EINVAL)
        return luaL_error(L, "ctx.put: partition %d is not one of this instance's",
                          (int)luaL_checkinteger(L, 3));
    if (rc == SL_ETOOLARGE)
        return luaL_error(L, "ctx.put: a key over %d or a value over %d bytes",
                          16 << 10, 512 << 10);
    if (rc != 0)
        return luaL_error(L, "state put failed: %s", sl_strerror(rc));
    return 0;
}

static int l_metric(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    const char *name = luaL_checkstring(L, 1);
    lp->host->metric_add(lp->ctx, name, (int64_t)luaL_optinteger(L, 2, 1));
    return 0;
}

/* ctx.dead_letter(i, reason): record i of the batch under way goes to the dead-letter topic. */
static int l_dead_letter(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    lua_Integer i = luaL_checkinteger(L, 1);
    const char *reason = luaL_optstring(L, 2, "dead-lettered by the script");
    if (lp->batch_n == 0 || i < 1 || (size_t)i > lp->batch_n)
        return luaL_error(L, "ctx.dead_letter(%I): no such record in the batch under way", i);
    if (lp->ndead == lp->capdead) {
        size_t cap = lp->capdead ? lp->capdead * 2 : 16;
        sl_lua_dead_letter *d = realloc(lp->dead, cap * sizeof(*d));
        if (d == NULL)
            return luaL_error(L, "not enough memory");
        lp->dead = d;
        lp->capdead = cap;
    }
    sl_lua_dead_letter *d = &lp->dead[lp->ndead++];
    d->index = (size_t)i - 1;
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    return 0;
}

static void push_ctx(lua_State *L, const sl_lua_settings *s) {
    static const luaL_Reg fns[] = {{"emit", l_emit},     {"log", l_log},
                                   {"reject", l_reject}, {"retry", l_retry},
                                   {"get", l_get},       {"put", l_put},
                                   {"metric", l_metric}, {"dead_letter", l_dead_letter},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_createtable(L, 0, (int)s->nconfig);
    for (size_t i = 0; i < s->nconfig; i++) {
        lua_pushstring(L, s->config_values[i]);
        lua_setfield(L, -2, s->config_keys[i]);
    }
    lua_setfield(L, -2, "config");
    int count = 1, index = 0;
    sl_lua_proc *lp = proc_of(L);
    if (lp->host->instance)
        index = lp->host->instance(lp->ctx, &count);
    lua_pushinteger(L, index);
    lua_setfield(L, -2, "instance");
    lua_pushinteger(L, count);
    lua_setfield(L, -2, "instances");
}

/* ---- require: library scripts beside the script or shipped in the scripts folders ---- */

static bool library_name_ok(const char *name) {
    if (*name == '\0' || strlen(name) > 64)
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return false;
    return true;
}

/* require(name): loads <dir>/<name>.lua from the script's folder, then the shipped scripts
 * folders, once per state, as text, in the script's own (sandboxed) globals. */
/* Loads <dir>/<name>.lua if it exists: 1 with the module on the stack, 0 when there is none. */
static int require_from(lua_State *L, const char *dir, const char *name, int loaded) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.lua", dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    fclose(f);
    if (luaL_loadfilex(L, path, "t") != LUA_OK)
        return lua_error(L);
    lua_pushboolean(L, 0); /* loading: a cycle finds this instead of recursing */
    lua_setfield(L, loaded, name);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, loaded, name);
    return 1;
}

static int l_require(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    const char *name = luaL_checkstring(L, 1);
    if (!library_name_ok(name))
        return luaL_error(L, "require(\"%s\"): a library name is [a-z0-9_]+", name);
    lua_getfield(L, LUA_REGISTRYINDEX, "sluice.loaded");
    int loaded = lua_gettop(L);
    int t = lua_getfield(L, loaded, name);
    if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))
        return luaL_error(L, "require(\"%s\"): a cycle (it requires itself, through others)",
                          name);
    if (t != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    /* The script's own folder first (its name may hold a ':'), then the shipped folders. */
    if (require_from(L, lp->script_dir, name, loaded))
        return 1;
    char dirs[sizeof(lp->lib_dirs)];
    snprintf(dirs, sizeof(dirs), "%s", lp->lib_dirs);
    for (char *save = NULL, *dir = strtok_r(dirs, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save))
        if (require_from(L, dir, name, loaded))
            return 1;
    return luaL_error(L, "require(\"%s\"): no %s.lua in %s or %s", name, name,
                      lp->script_dir, lp->lib_dirs);
}

/* ---- the state ---- */

static void open_sandboxed(lua_State *L) {
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},          {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
                                    {LUA_UTF8LIBNAME, luaopen_utf8},    {LUA_COLIBNAME, luaopen_coroutine},
                                    {NULL, NULL}};
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    /* No files from a script, and no precompiled chunks: text only. */
    static const char *const removed[] = {"dofile", "loadfile", NULL};
    for (const char *const *name = removed; *name; name++) {
        lua_pushnil(L);
        lua_setglobal(L, *name);
    }
    luaL_dostring(L, "local load = load\n"
                     "_G.load = function(chunk, name, mode, env)\n"
                     "  return load(chunk, name, 't', env or _G)\n"
                     "end");
}

static int call(sl_lua_proc *lp, int nargs, int nresults, char *errbuf, size_t errlen) {
    lua_State *L = lp->L;
    int base = lua_gettop(L) - nargs + 1; /* 'nargs' counts the function too */
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, base);
    lp->steps = 0;
    lp->memory_hit = lp->budget_hit = false;
    lp->verdict = 0;
    lp->traceback[0] = '\0';
    int rc = lua_pcall(L, nargs - 1, nresults, base);
    lua_remove(L, base);
    if (rc == LUA_OK && (lp->budget_hit || lp->memory_hit)) {
        /* The script caught the error (a pcall per record, say) and went on: the call still
         * failed, or every record after the one that hit the limit would fail quietly. */
        lua_settop(L, base - 1);
        if (lp->budget_hit)
            snprintf(errbuf, errlen, "instruction budget exceeded (%lld instructions in one "
                     "call; the script caught the error)", (long long)lp->max_instructions);
        else
            snprintf(errbuf, errlen, "memory limit of %lld bytes exceeded (the script caught "
                     "the error)", (long long)lp->max_memory);
        return SL_EINVAL;
    }
    if (rc == LUA_OK)
        return 0;
    const char *msg = lua_tostring(L, -1);
    if (rc == LUA_ERRMEM)
        snprintf(errbuf, errlen, "memory limit of %lld bytes exceeded",
                 (long long)lp->max_memory);
    else
        snprintf(errbuf, errlen, "%s", msg ? msg : "error");
    lua_pop(L, 1);
    return lp->verdict ? lp->verdict : SL_EINVAL;
}

/* Everything that builds the state runs under lua_pcall: with a small memory limit any of it
 * may fail, and outside a protected call Lua would abort the process. */
static int protected_start(lua_State *L) {
    const sl_lua_settings *s = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (s->unsandboxed)
        luaL_openlibs(L);
    else
        open_sandboxed(L);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "sluice.loaded");
    if (!s->unsandboxed) {
        lua_pushcfunction(L, l_require);
        lua_setglobal(L, "require");
    }
    luaopen_cjson(L);
    sl_lua_add_json_field(L);
    lua_setglobal(L, "json");
    sl_lua_open_msgpack(L);
    lua_setglobal(L, "msgpack");
    if (luaL_loadfilex(L, s->script_path, "t") != LUA_OK)
        return lua_error(L); /* the message names file and line */
    lua_call(L, 0, 0);
    sl_lua_proc *lp = proc_of(L);
    lp->has_batch = lua_getglobal(L, "process_batch") == LUA_TFUNCTION;
    lua_pop(L, 1);
    if (lua_getglobal(L, "process") != LUA_TFUNCTION && !lp->has_batch)
        return luaL_error(L, "%s defines no process(record, ctx) or process_batch(batch, ctx) "
                          "function", s->script_path);
    lp->process_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    push_ctx(L, s);
    lp->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int sl_lua_proc_new(const sl_lua_settings *s, const sl_plugin_host *host, sl_plugin_ctx *ctx,
                    sl_lua_proc **out, char *errbuf, size_t errlen) {
    sl_lua_proc *lp = calloc(1, sizeof(*lp));
    if (lp == NULL)
        return SL_ENOMEM;
    lp->host = host;
    lp->ctx = ctx;
    lp->max_instructions = s->max_instructions > 0 ? s->max_instructions
                                                    : SL_LUA_DEFAULT_INSTRUCTIONS;
    lp->max_memory = s->max_memory > 0 ? s->max_memory : SL_LUA_DEFAULT_MEMORY;
    if (lp->max_memory < SL_LUA_MIN_MEMORY)
        lp->max_memory = SL_LUA_MIN_MEMORY;
    lp->process_ref = lp->ctx_ref = LUA_NOREF;
    snprintf(lp->lib_dirs, sizeof(lp->lib_dirs), "%s", s->lib_dirs ? s->lib_dirs : "");
    snprintf(lp->script_dir, sizeof(lp->script_dir), "%s", s->script_path);
    char *slash = strrchr(lp->script_dir, '/');
    if (slash)
        slash[slash == lp->script_dir ? 1 : 0] = '\0'; /* "/x.lua" is in "/" */
    else
        snprintf(lp->script_dir, sizeof(lp->script_dir), ".");
    lua_State *L = lp->L = lua_newstate(limited_alloc, lp);
    if (L == NULL) {
        snprintf(errbuf, errlen, "cannot create a Lua state (memory limit %lld bytes)",
                 (long long)lp->max_memory);
        free(lp);
        return SL_ENOMEM;
    }
    *(sl_lua_proc **)lua_getextraspace(L) = lp;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_pushcfunction(L, protected_start);
    lua_pushlightuserdata(L, (void *)s);
    int rc = call(lp, 2, 0, errbuf, errlen);
    if (rc) {
        sl_lua_proc_free(lp);
        return rc;
    }
    lua_settop(L, 0);
    *out = lp;
    return 0;
}

static void push_record(lua_State *L, const sl_plugin_record *r) {
    lua_createtable(L, 0, 7);
    if (r->key) {
        lua_pushlstring(L, r->key, r->key_len);
        lua_setfield(L, -2, "key");
    }
    if (r->value) {
        lua_pushlstring(L, r->value, r->value_len);
        lua_setfield(L, -2, "value");
    }
    lua_createtable(L, 0, (int)r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        if (r->headers[i].value)
            lua_pushlstring(L, r->headers[i].value, r->headers[i].value_len);
        else
            lua_pushboolean(L, 0); /* a null header value: present, but not a string */
        lua_setfield(L, -2, r->headers[i].key);
    }
    lua_setfield(L, -2, "headers");
    lua_pushinteger(L, r->timestamp);
    lua_setfield(L, -2, "timestamp");
    if (r->topic) {
        lua_pushstring(L, r->topic);
        lua_setfield(L, -2, "topic");
    }
    lua_pushinteger(L, r->partition);
    lua_setfield(L, -2, "partition");
    lua_pushinteger(L, r->offset);
    lua_setfield(L, -2, "offset");
}

/* Emits the returned record table at 1 (fields topic, key, value, headers, timestamp). */
static int emit_returned(lua_State *L) {
    int t = 1;
    luaL_checktype(L, t, LUA_TTABLE);
    lua_getfield(L, t, "topic");
    lua_getfield(L, t, "key");
    lua_getfield(L, t, "value");
    lua_getfield(L, t, "headers");
    lua_getfield(L, t, "timestamp");
    int64_t ts = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    emit_at(L, 2, 3, 4, 5, ts);
    return 0;
}

static int emit_results(lua_State *L) {
    /* 1: what process returned. A record has a value or key field; otherwise a list of them. */
    if (lua_isnoneornil(L, 1) || lua_type(L, 1) == LUA_TBOOLEAN)
        return 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "value");
    lua_getfield(L, 1, "key");
    bool single = !lua_isnil(L, -1) || !lua_isnil(L, -2);
    lua_pop(L, 2);
    lua_pushcfunction(L, emit_returned);
    if (single) {
        lua_pushvalue(L, 1);
        lua_call(L, 1, 0);
        return 0;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_pushvalue(L, -1);
        lua_rawgeti(L, 1, i);
        lua_call(L, 1, 0);
    }
    return 0;
}

/* The whole call, building the record table included, under the one lua_pcall: a record too
 * big for the memory limit fails like any other error instead of aborting the process. */
static int protected_process(lua_State *L) {
    const sl_plugin_record *rec = lua_touserdata(L, 1);
    sl_lua_proc *lp = proc_of(L);
    lua_settop(L, 0);
    lua_pushcfunction(L, emit_results);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->process_ref);
    push_record(L, rec);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->ctx_ref);
    lua_call(L, 2, 1);
    lua_call(L, 1, 0); /* emit_results(what process returned) */
    return 0;
}

int sl_lua_proc_process(sl_lua_proc *lp, const sl_plugin_record *rec, char *errbuf,
                        size_t errlen, char *tb, size_t tblen) {
    lua_State *L = lp->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, protected_process);
    lua_pushlightuserdata(L, (void *)rec);
    int rc = call(lp, 2, 0, errbuf, errlen);
    if (rc != 0 && tb)
        snprintf(tb, tblen, "%s", lp->traceback);
    lua_settop(L, 0);
    return rc;
}

/* ---- batches, partitions and time ---- */

typedef struct batch_call {
    const sl_plugin_record *recs;
    size_t n;
} batch_call;

/* A new array as field 'name' of the table at 'batch', left on the stack. */
static void push_column(lua_State *L, int batch, const char *name, size_t n) {
    lua_createtable(L, (int)n, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, batch, name);
}

/* The batch as columns (batch.key[i], batch.value[i], ...): six tables per call instead of two
 * per record. */
static int protected_batch(lua_State *L) {
    const batch_call *bc = lua_touserdata(L, 1);
    sl_lua_proc *lp = proc_of(L);
    lua_settop(L, 0);
    lua_getglobal(L, "process_batch");
    lua_createtable(L, 0, 7); /* 2: the batch */
    lua_pushinteger(L, (lua_Integer)bc->n);
    lua_setfield(L, 2, "n");
    static const char *const columns[] = {"key", "value", "timestamp", "partition", "offset",
                                          "topic"};
    for (int c = 0; c < 6; c++)
        push_column(L, 2, columns[c], bc->n); /* 3 .. 8 */
    const char *last_topic = NULL;
    bool have_topic = false;
    for (size_t i = 0; i < bc->n; i++) {
        const sl_plugin_record *r = &bc->recs[i];
        lua_Integer at = (lua_Integer)i + 1;
        if (r->key) {
            lua_pushlstring(L, r->key, r->key_len);
            lua_rawseti(L, 3, at);
        }
        if (r->value) {
            lua_pushlstring(L, r->value, r->value_len);
            lua_rawseti(L, 4, at);
        }
        lua_pushinteger(L, r->timestamp);
        lua_rawseti(L, 5, at);
        lua_pushinteger(L, r->partition);
        lua_rawseti(L, 6, at);
        lua_pushinteger(L, r->offset);
        lua_rawseti(L, 7, at);
        if (!have_topic || r->topic != last_topic) { /* batches hold one or two topics */
            lua_settop(L, 8);
            lua_pushstring(L, r->topic ? r->topic : "");
            last_topic = r->topic;
            have_topic = true;
        }
        lua_pushvalue(L, 9);
        lua_rawseti(L, 8, at);
    }
    lua_settop(L, 2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->ctx_ref);
    lua_call(L, 2, 0);
    return 0;
}

bool sl_lua_proc_has_batch(const sl_lua_proc *lp) {
    return lp->has_batch;
}

int sl_lua_proc_process_batch(sl_lua_proc *lp, const sl_plugin_record *recs, size_t n,
                              const sl_lua_dead_letter **dead, size_t *ndead, char *errbuf,
                              size_t errlen, char *tb, size_t tblen) {
    lua_State *L = lp->L;
    batch_call bc = {recs, n};
    int64_t budget = lp->max_instructions;
    /* The budget once per record, up to a cap; never less than one call's (no overflow: both
     * factors are bounded, the budget by SL_LUA_MAX_INSTRUCTIONS). */
    int64_t cap = budget > SL_LUA_BATCH_INSTRUCTIONS ? budget : SL_LUA_BATCH_INSTRUCTIONS;
    lp->max_instructions = n > 0 && budget > cap / (int64_t)n ? cap : budget * (int64_t)n;
    if (lp->max_instructions < budget)
        lp->max_instructions = budget;
    lp->batch_n = n;
    lp->ndead = 0;
    lua_settop(L, 0);
    lua_pushcfunction(L, protected_batch);
    lua_pushlightuserdata(L, &bc);
    int rc = call(lp, 2, 0, errbuf, errlen);
    if (rc != 0 && tb)
        snprintf(tb, tblen, "%s", lp->traceback);
    lua_settop(L, 0);
    lp->batch_n = 0;
    lp->max_instructions = budget;
    *dead = lp->dead;
    *ndead = rc == 0 ? lp->ndead : 0;
    return rc;
}

typedef struct partition_call {
    const char *fn;
    int32_t partition;
    bool with_entries;               /* restore: a table of the entries is the second argument */
    const sl_plugin_record *entries; /* their key and value; NULL when there are none */
    size_t n;
} partition_call;

static int protected_partition(lua_State *L) {
    const partition_call *pc = lua_touserdata(L, 1);
    sl_lua_proc *lp = proc_of(L);
    lua_settop(L, 0);
    if (lua_getglobal(L, pc->fn) != LUA_TFUNCTION)
        return 0;
    lua_pushinteger(L, pc->partition);
    int nargs = 2;
    if (pc->with_entries) {
        lua_createtable(L, 0, (int)pc->n);
        for (size_t i = 0; i < pc->n; i++) {
            lua_pushlstring(L, pc->entries[i].key, pc->entries[i].key_len);
            lua_pushlstring(L, pc->entries[i].value, pc->entries[i].value_len);
            lua_rawset(L, -3);
        }
        nargs = 3;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->ctx_ref);
    lua_call(L, nargs, 0);
    return 0;
}

static int partition_callback(sl_lua_proc *lp, const partition_call *pc, char *errbuf,
                              size_t errlen) {
    lua_State *L = lp->L;
    int64_t budget = lp->max_instructions;
    if (pc->with_entries) { /* rebuilding from many entries is work in proportion to them */
        size_t n = pc->n < 1000000000 ? pc->n : 1000000000;
        lp->max_instructions = budget + (int64_t)n * 1000;
    }
    lua_settop(L, 0);
    lua_pushcfunction(L, protected_partition);
    lua_pushlightuserdata(L, (void *)pc);
    int rc = call(lp, 2, 0, errbuf, errlen);
    lua_settop(L, 0);
    lp->max_instructions = budget;
    return rc;
}

int sl_lua_proc_restore(sl_lua_proc *lp, int32_t partition, const sl_plugin_record *entries,
                        size_t n, char *errbuf, size_t errlen) {
    partition_call pc = {"restore", partition, true, entries, entries ? n : 0};
    return partition_callback(lp, &pc, errbuf, errlen);
}

int sl_lua_proc_revoke(sl_lua_proc *lp, int32_t partition, char *errbuf, size_t errlen) {
    partition_call pc = {"revoke", partition, false, NULL, 0};
    return partition_callback(lp, &pc, errbuf, errlen);
}

static int protected_tick(lua_State *L) {
    int64_t now = *(const int64_t *)lua_touserdata(L, 1);
    sl_lua_proc *lp = proc_of(L);
    lua_settop(L, 0);
    if (lua_getglobal(L, "tick") != LUA_TFUNCTION)
        return 0;
    lua_pushinteger(L, now);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->ctx_ref);
    lua_call(L, 2, 0);
    return 0;
}

int sl_lua_proc_tick(sl_lua_proc *lp, int64_t now_ms, char *errbuf, size_t errlen) {
    lua_State *L = lp->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, protected_tick);
    lua_pushlightuserdata(L, &now_ms);
    int rc = call(lp, 2, 0, errbuf, errlen);
    lua_settop(L, 0);
    return rc;
}

static int protected_flush(lua_State *L) {
    sl_lua_proc *lp = proc_of(L);
    if (lua_getglobal(L, "flush") != LUA_TFUNCTION)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->ctx_ref);
    lua_call(L, 1, 0);
    return 0;
}

int sl_lua_proc_flush(sl_lua_proc *lp, char *errbuf, size_t errlen) {
    lua_State *L = lp->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, protected_flush);
    int rc = call(lp, 1, 0, errbuf, errlen);
    lua_settop(L, 0);
    return rc;
}

int64_t sl_lua_proc_memory(const sl_lua_proc *lp) {
    return lp->memory;
}

void sl_lua_proc_free(sl_lua_proc *lp) {
    if (lp == NULL)
        return;
    if (lp->L)
        lua_close(lp->L);
    free(lp->dead);
    free(lp);
}
