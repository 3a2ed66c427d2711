/* Reading a pipeline file. The file runs in a bare Lua state (no os, io or require, and an
 * instruction budget) and the table it returns is checked field by field; unknown fields are
 * errors, so a typo is caught at deploy time instead of silently ignored. Lua does not keep
 * lines for table fields, so an error is placed at the line where the stage's or topic's name
 * is written. */
#include "pipeline/pipeline.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin/loader.h"
#include "plugin/lua_host.h"

#ifndef SL_SCRIPT_DIRS
#define SL_SCRIPT_DIRS ""
#endif

#define PARSE_BUDGET 10000000 /* instructions: a pipeline file is a table, not a program */
#define PARSE_MEMORY (64 << 20) /* bytes the parse state may hold */

typedef struct parse {
    lua_State *L;
    const char *file;
    const char *source;
    char dir[PATH_MAX];
    const char *plugin_path;
    char *err;
    size_t errlen;
    sl_pipeline *p;
    int rc; /* what walk() found */
} parse;

static int fail(parse *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parse *ps, int line, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s:%d: %s", ps->file, line > 0 ? line : 1, msg);
    return SL_EINVAL;
}

/* The line where "word" (quoted) or word = first appears, for error messages. */
static int line_of(const parse *ps, const char *word) {
    if (word == NULL || ps->source == NULL)
        return 1;
    size_t wl = strlen(word);
    int line = 1;
    for (const char *c = ps->source; *c; c++) {
        if (*c == '\n')
            line++;
        else if ((*c == '"' || *c == '\'') && strncmp(c + 1, word, wl) == 0 && c[wl + 1] == *c)
            return line;
    }
    line = 1;
    for (const char *c = ps->source; *c; c++) {
        if (*c == '\n')
            line++;
        else if (strncmp(c, word, wl) == 0 && (c == ps->source || !isalnum((unsigned char)c[-1])))
            return line;
    }
    return 1;
}

int sl_pipeline_parse_duration(const char *text, int64_t *ms) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || v < 0)
        return SL_EINVAL;
    double unit;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else
        return SL_EINVAL;
    if (v * unit > 9.2e15)
        return SL_EINVAL;
    *ms = (int64_t)(v * unit);
    return 0;
}

static bool valid_name(const char *s) {
    if (*s == '\0' || strlen(s) > 200)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

static void free_strv(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int push_str(char ***v, size_t *n, const char *s) {
    char **nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (nv == NULL)
        return SL_ENOMEM;
    *v = nv;
    if ((nv[*n] = strdup(s)) == NULL)
        return SL_ENOMEM;
    (*n)++;
    return 0;
}

/* t[k] of the table at the top, pushed, without metamethods: a pipeline file's table may carry
 * an __index that errs, loops or hands out fresh strings, and the broker reads these files. */
static int rawfield(lua_State *L, const char *k) {
    lua_pushstring(L, k);
    return lua_rawget(L, -2);
}

/* A string or number at the top of the stack as a string; NULL for anything else. */
static const char *scalar(lua_State *L, int idx) {
    int t = lua_type(L, idx);
    if (t == LUA_TBOOLEAN)
        return lua_toboolean(L, idx) ? "true" : "false";
    return t == LUA_TSTRING || t == LUA_TNUMBER ? lua_tostring(L, idx) : NULL;
}

/* Checks that the table at the top has only 'allowed' string keys. */
static int only_fields(parse *ps, int line, const char *what, const char *const *allowed) {
    lua_State *L = ps->L;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return fail(ps, line, "%s: fields must be named (key = value)", what);
        }
        const char *k = lua_tostring(L, -1);
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, k) == 0;
        if (!ok) {
            char list[256] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         a == allowed ? "" : ", ", *a);
            int rc = fail(ps, line, "%s: unknown field '%s' (known: %s)", what, k, list);
            lua_pop(L, 1);
            return rc;
        }
    }
    return 0;
}

/* A config table (string keys, scalar values) at the top into "key=value" strings or into
 * parallel key and value arrays. */
static int read_config(parse *ps, int line, const char *what, char ***kv, size_t *nkv,
                       char ***values) {
    lua_State *L = ps->L;
    if (!lua_istable(L, -1))
        return fail(ps, line, "%s: config must be a table of key = value", what);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        const char *v = scalar(L, -1);
        if (lua_type(L, -2) != LUA_TSTRING || v == NULL) {
            lua_pop(L, 2);
            return fail(ps, line, "%s: config must map names to strings, numbers or booleans",
                        what);
        }
        const char *k = lua_tostring(L, -2);
        int rc;
        if (values) {
            size_t nv = *nkv;
            rc = push_str(kv, nkv, k);
            if (rc == 0 && (rc = push_str(values, &nv, v)) != 0)
                (*nkv)--; /* keep the two arrays the same length */
        } else {
            char pair[1024];
            snprintf(pair, sizeof(pair), "%s=%s", k, v);
            rc = push_str(kv, nkv, pair);
        }
        lua_pop(L, 1);
        if (rc) {
            lua_pop(L, 1);
            return rc;
        }
    }
    return 0;
}

static int add_topic(sl_pipeline *p, const char *name, int32_t partitions, sl_pl_topic **out) {
    for (size_t i = 0; i < p->ntopics; i++)
        if (strcmp(p->topics[i].name, name) == 0) {
            *out = &p->topics[i];
            return SL_EEXIST;
        }
    sl_pl_topic *nt = realloc(p->topics, (p->ntopics + 1) * sizeof(*nt));
    if (nt == NULL)
        return SL_ENOMEM;
    p->topics = nt;
    sl_pl_topic *t = &nt[p->ntopics];
    *t = (sl_pl_topic){strdup(name), partitions, NULL, 0};
    if (t->name == NULL)
        return SL_ENOMEM;
    p->ntopics++;
    *out = t;
    return 0;
}

static int read_topic(parse *ps, const char *name) {
    lua_State *L = ps->L;
    int line = line_of(ps, name);
    if (!valid_name(name))
        return fail(ps, line, "topic name \"%s\" must be letters, digits, '.', '_' or '-'", name);
    if (strncmp(name, "__", 2) == 0)
        return fail(ps, line, "topic \"%s\": names starting with \"__\" are Sluice's", name);
    static const char *const fields[] = {"name", "partitions", "config", NULL};
    char what[300];
    snprintf(what, sizeof(what), "topic \"%s\"", name);
    int rc;
    if ((rc = only_fields(ps, line, what, fields)) != 0)
        return rc;
    rawfield(L, "partitions");
    lua_Integer parts = 1;
    if (!lua_isnil(L, -1)) {
        int isnum;
        parts = lua_tointegerx(L, -1, &isnum);
        if (!isnum || parts < 1 || parts > 10000) {
            lua_pop(L, 1);
            return fail(ps, line, "%s: partitions must be a whole number from 1 to 10000", what);
        }
    }
    lua_pop(L, 1);
    sl_pl_topic *t;
    if ((rc = add_topic(ps->p, name, (int32_t)parts, &t)) == SL_EEXIST)
        return fail(ps, line, "%s is declared twice", what);
    if (rc)
        return rc;
    rawfield(L, "config");
    if (!lua_isnil(L, -1))
        rc = read_config(ps, line, what, &t->configs, &t->nconfigs, NULL);
    lua_pop(L, 1);
    return rc;
}

static int read_topics(parse *ps) {
    lua_State *L = ps->L;
    rawfield(L, "topics");
    int rc = 0;
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return fail(ps, line_of(ps, "topics"), "topics must be a table");
    }
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2) != 0) {
        /* Either topics = { name = {...} } or topics = { { name = "..", ... } }. */
        const char *name = NULL;
        if (lua_type(L, -2) == LUA_TSTRING) {
            name = lua_tostring(L, -2);
            if (lua_isinteger(L, -1)) { /* orders = 6: six partitions */
                lua_Integer n = lua_tointeger(L, -1);
                lua_pop(L, 1);
                lua_createtable(L, 0, 1);
                lua_pushinteger(L, n);
                lua_setfield(L, -2, "partitions");
            }
        } else if (lua_istable(L, -1)) {
            rawfield(L, "name");
            name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            lua_pop(L, 1); /* the string stays referenced by the table */
        }
        if (name == NULL || !lua_istable(L, -1))
            rc = fail(ps, line_of(ps, "topics"),
                      "each topic is name = { partitions = N, config = {...} }");
        else
            rc = read_topic(ps, name);
        lua_pop(L, 1);
    }
    if (rc)
        lua_pop(L, 1); /* the key lua_next left */
    lua_pop(L, 1);
    return rc;
}

/* A string or a list of strings at the top into v. */
static int read_names(parse *ps, int line, const char *what, const char *field, char ***v,
                      size_t *n) {
    lua_State *L = ps->L;
    rawfield(L, field);
    int rc = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
        rc = push_str(v, n, lua_tostring(L, -1));
    } else if (lua_istable(L, -1)) {
        lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; rc == 0 && i <= len; i++) {
            lua_rawgeti(L, -1, i);
            if (lua_type(L, -1) != LUA_TSTRING)
                rc = fail(ps, line, "%s: %s must be a topic name or a list of them", what, field);
            else
                rc = push_str(v, n, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        rc = fail(ps, line, "%s: %s must be a topic name or a list of them", what, field);
    }
    lua_pop(L, 1);
    for (size_t i = 0; rc == 0 && i < *n; i++)
        if (!valid_name((*v)[i]) || strncmp((*v)[i], "__", 2) == 0)
            rc = fail(ps, line, "%s: \"%s\" is not a usable topic name", what, (*v)[i]);
    return rc;
}

static bool readable(const char *path) {
    return access(path, R_OK) == 0;
}

/* A script named in a stage: a path (relative to the pipeline's folder) or the name of a
 * shipped script ("filter" -> <scripts>/filter.lua). */
static int resolve_script(parse *ps, int line, const char *what, const char *name, char **out) {
    if (ps->plugin_path == NULL) /* structure only: nothing is looked up */
        return (*out = strdup(name)) ? 0 : SL_ENOMEM;
    char path[PATH_MAX];
    bool is_path = strchr(name, '/') != NULL || strstr(name, ".lua") != NULL;
    if (is_path) {
        if (name[0] == '/')
            snprintf(path, sizeof(path), "%s", name);
        else
            snprintf(path, sizeof(path), "%.2000s/%.2000s", ps->dir, name);
        if (!readable(path))
            return fail(ps, line, "%s: script %s cannot be read", what, path);
    } else {
        const char *p = SL_SCRIPT_DIRS;
        bool found = false;
        while (*p && !found) {
            const char *end = strchr(p, ':');
            size_t dl = end ? (size_t)(end - p) : strlen(p);
            snprintf(path, sizeof(path), "%.*s/%s.lua", (int)dl, p, name);
            found = dl > 0 && readable(path);
            p += dl + (end != NULL);
        }
        if (!found)
            return fail(ps, line, "%s: no shipped script named \"%s\" (looked in %s)", what,
                        name, SL_SCRIPT_DIRS);
    }
    /* A script that does not compile is refused now, not when its first record arrives. */
    if (luaL_loadfilex(ps->L, path, "t") != LUA_OK) {
        int rc = fail(ps, line, "%s: %s", what, lua_tostring(ps->L, -1));
        lua_pop(ps->L, 1);
        return rc;
    }
    lua_pop(ps->L, 1);
    return (*out = strdup(path)) ? 0 : SL_ENOMEM;
}

/* Finds the plugin's file; it is not loaded here: this runs in the broker, and plugin code
 * (constructors included) runs only in the stage's own process, or in sluice for
 * sl_pipeline_check_plugins. */
static int resolve_plugin(parse *ps, int line, const char *what, const char *name, char **out) {
    if (ps->plugin_path == NULL)
        return (*out = strdup(name)) ? 0 : SL_ENOMEM;
    char path[PATH_MAX], why[1024];
    if (sl_plugin_locate(ps->plugin_path, name, path, sizeof(path), why, sizeof(why)) != 0)
        return fail(ps, line, "%s: %s", what, why);
    return (*out = strdup(path)) ? 0 : SL_ENOMEM;
}

int sl_pipeline_check_plugins(const sl_pipeline *p, char *errbuf, size_t errlen) {
    for (size_t i = 0; i < p->nstages; i++) {
        const sl_pl_stage *s = &p->stages[i];
        if (s->plugin == NULL)
            continue;
        char why[1024];
        sl_plugin_lib *lib;
        if (sl_plugin_load(s->plugin, &lib, why, sizeof(why)) != 0) {
            snprintf(errbuf, errlen, "%s:%d: %s \"%s\": %s", p->file, s->line,
                     sl_plugin_kind_name(s->kind), s->name, why);
            return SL_EINVAL;
        }
        uint32_t got = lib->desc.kind;
        char name[80];
        snprintf(name, sizeof(name), "%s", lib->desc.name);
        sl_plugin_unload(lib);
        if (got != (uint32_t)s->kind) {
            snprintf(errbuf, errlen, "%s:%d: %s \"%s\": plugin \"%s\" is a %s, not a %s",
                     p->file, s->line, sl_plugin_kind_name(s->kind), s->name, name,
                     sl_plugin_kind_name(got), sl_plugin_kind_name(s->kind));
            return SL_EINVAL;
        }
    }
    return 0;
}

static int read_retry(parse *ps, int line, const char *what, sl_pl_stage *s) {
    lua_State *L = ps->L;
    static const char *const fields[] = {"delays", "dlq", NULL};
    int rc = only_fields(ps, line, what, fields);
    if (rc)
        return rc;
    rawfield(L, "delays");
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0 ||
        lua_rawlen(L, -1) > SL_PIPELINE_MAX_RETRIES) {
        lua_pop(L, 1);
        return fail(ps, line, "%s: retry.delays must list 1 to %d delays such as \"30s\"", what,
                    SL_PIPELINE_MAX_RETRIES);
    }
    s->nretries = lua_rawlen(L, -1);
    for (size_t i = 0; rc == 0 && i < s->nretries; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *d = scalar(L, -1);
        if (d == NULL || sl_pipeline_parse_duration(d, &s->retry_delays_ms[i]) != 0)
            rc = fail(ps, line, "%s: retry delay \"%s\" is not a duration (500ms, 30s, 1m, 2h)",
                      what, d ? d : "?");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    rawfield(L, "dlq");
    if (rc == 0 && lua_type(L, -1) == LUA_TSTRING)
        s->dlq = strdup(lua_tostring(L, -1));
    else if (rc == 0 && !lua_isnil(L, -1))
        rc = fail(ps, line, "%s: retry.dlq must be a topic name", what);
    lua_pop(L, 1);
    return rc;
}

static int read_limits(parse *ps, int line, const char *what, sl_pl_stage *s) {
    lua_State *L = ps->L;
    static const char *const fields[] = {"instructions", "memory", NULL};
    int rc = only_fields(ps, line, what, fields);
    const char *names[] = {"instructions", "memory"};
    const lua_Integer least[] = {1000, SL_LUA_MIN_MEMORY};
    /* Bounds keep the host's arithmetic on them (a batch's budget is a multiple) in range. */
    const lua_Integer most[] = {SL_LUA_MAX_INSTRUCTIONS, SL_LUA_MAX_MEMORY};
    int64_t *dst[] = {&s->lua_instructions, &s->lua_memory};
    for (int i = 0; rc == 0 && i < 2; i++) {
        rawfield(L, names[i]);
        if (!lua_isnil(L, -1)) {
            int isnum;
            lua_Integer v = lua_tointegerx(L, -1, &isnum);
            if (!isnum || v < least[i] || v > most[i])
                rc = fail(ps, line, "%s: limits.%s must be a whole number from %lld to %lld",
                          what, names[i], (long long)least[i], (long long)most[i]);
            *dst[i] = v;
        }
        lua_pop(L, 1);
    }
    return rc;
}

/* Shipped expression processors: filter = "expr" is script "filter" with config.expr. */
static const char *const sugar[] = {"filter", "map", "route", NULL};

static int check_expression(parse *ps, int line, const char *what, const char *expr) {
    lua_State *L = ps->L;
    lua_pushfstring(L, "return (%s)", expr);
    int rc = luaL_loadbufferx(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=expression", "t");
    if (rc != LUA_OK) {
        rc = fail(ps, line, "%s: the expression does not compile: %s", what,
                  lua_tostring(L, -1));
        lua_pop(L, 2);
        return rc;
    }
    lua_pop(L, 2);
    return 0;
}

static int read_stage(parse *ps, sl_plugin_kind kind, const char *section, lua_Integer index) {
    lua_State *L = ps->L;
    char what[300];
    int line = line_of(ps, section);
    if (!lua_istable(L, -1))
        return fail(ps, line, "%s[%lld] must be a table", section, (long long)index);
    rawfield(L, "name");
    if (lua_type(L, -1) != LUA_TSTRING || !valid_name(lua_tostring(L, -1))) {
        lua_pop(L, 1);
        return fail(ps, line, "%s[%lld] needs a name (letters, digits, '.', '_', '-')", section,
                    (long long)index);
    }
    sl_pipeline *p = ps->p;
    sl_pl_stage *ns = realloc(p->stages, (p->nstages + 1) * sizeof(*ns));
    if (ns == NULL) {
        lua_pop(L, 1);
        return SL_ENOMEM;
    }
    p->stages = ns;
    sl_pl_stage *s = &ns[p->nstages++];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->instances = 1;
    s->transient_retry_ms = 60000;
    s->call_timeout_ms = 60000;
    s->name = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (s->name == NULL)
        return SL_ENOMEM;
    s->line = line = line_of(ps, s->name);
    snprintf(what, sizeof(what), "%s \"%s\"", sl_plugin_kind_name(kind), s->name);
    for (size_t i = 0; i + 1 < p->nstages; i++)
        if (strcmp(p->stages[i].name, s->name) == 0)
            return fail(ps, line, "%s: another stage has that name", what);

    static const char *const fields[] = {"name", "input", "output", "script", "plugin", "filter",
                                         "map", "route", "instances", "config", "retry", "dlq",
                                         "limits", "sandbox", "transient_retry", "call_timeout",
                                         "errors_tolerance", NULL};
    int rc = only_fields(ps, line, what, fields);
    if (rc == 0)
        rc = read_names(ps, line, what, "input", &s->inputs, &s->ninputs);
    if (rc == 0)
        rc = read_names(ps, line, what, "output", &s->outputs, &s->noutputs);
    if (rc)
        return rc;

    /* What runs: exactly one of script, plugin, filter, map, route. */
    const char *impl = NULL, *impl_value = NULL;
    static const char *const impls[] = {"script", "plugin", "filter", "map", "route", NULL};
    for (const char *const *f = impls; *f; f++) {
        rawfield(L, *f);
        if (!lua_isnil(L, -1)) {
            if (impl) {
                lua_pop(L, 1);
                return fail(ps, line, "%s: give one of script, plugin, filter, map or route, "
                            "not both %s and %s", what, impl, *f);
            }
            if (lua_type(L, -1) != LUA_TSTRING) {
                lua_pop(L, 1);
                return fail(ps, line, "%s: %s must be a string", what, *f);
            }
            impl = *f;
            impl_value = lua_tostring(L, -1);
        }
        lua_pop(L, 1); /* impl_value stays referenced by the stage table */
    }
    if (impl == NULL)
        return fail(ps, line, "%s: says nothing to run (script, plugin, filter, map or route)",
                    what);

    if (kind != SL_PLUGIN_SOURCE && s->ninputs == 0)
        return fail(ps, line, "%s: missing field 'input' (the topic it reads)", what);
    if (kind == SL_PLUGIN_SOURCE && s->ninputs > 0)
        return fail(ps, line, "%s: a source reads no topic: remove 'input'", what);
    if (kind == SL_PLUGIN_SINK && s->noutputs > 0)
        return fail(ps, line, "%s: a sink writes no topic: remove 'output'", what);
    if (kind != SL_PLUGIN_SINK && s->noutputs == 0 && strcmp(impl, "route") != 0)
        return fail(ps, line, "%s: missing field 'output' (the topic it writes)", what);
    for (size_t i = 0; i < s->ninputs; i++)
        for (size_t j = 0; j < s->noutputs; j++)
            if (strcmp(s->inputs[i], s->outputs[j]) == 0)
                return fail(ps, line, "%s: its output \"%s\" is its own input: every record "
                            "would come back to it forever", what, s->outputs[j]);

    rawfield(L, "instances");
    if (!lua_isnil(L, -1)) {
        int isnum;
        lua_Integer n = lua_tointegerx(L, -1, &isnum);
        if (!isnum || n < 1 || n > SL_PIPELINE_MAX_INSTANCES)
            rc = fail(ps, line, "%s: instances must be a whole number from 1 to %d", what,
                      SL_PIPELINE_MAX_INSTANCES);
        s->instances = (int)n;
    }
    lua_pop(L, 1);
    if (rc)
        return rc;

    rawfield(L, "config");
    if (!lua_isnil(L, -1))
        rc = read_config(ps, line, what, &s->config_keys, &s->nconfig, &s->config_values);
    lua_pop(L, 1);
    if (rc)
        return rc;

    bool is_sugar = false;
    for (const char *const *f = sugar; *f; f++)
        is_sugar |= strcmp(impl, *f) == 0;
    if (strcmp(impl, "plugin") == 0) {
        if ((rc = resolve_plugin(ps, line, what, impl_value, &s->plugin)) != 0)
            return rc;
    } else {
        if (kind == SL_PLUGIN_SOURCE)
            return fail(ps, line, "%s: sources are C plugins: use plugin = \"name\"", what);
        if (is_sugar) {
            if ((rc = check_expression(ps, line, what, impl_value)) != 0)
                return rc;
            size_t nv = s->nconfig;
            if ((rc = push_str(&s->config_keys, &s->nconfig, "expr")) != 0 ||
                (rc = push_str(&s->config_values, &nv, impl_value)) != 0)
                return rc;
        }
        rc = resolve_script(ps, line, what, is_sugar ? impl : impl_value, &s->script);
        if (rc)
            return rc;
    }

    rawfield(L, "retry");
    if (lua_istable(L, -1))
        rc = read_retry(ps, line, what, s);
    else if (!lua_isnil(L, -1))
        rc = fail(ps, line, "%s: retry must be a table: { delays = {\"30s\", \"1m\"}, "
                  "dlq = \"topic\" }", what);
    lua_pop(L, 1);
    if (rc)
        return rc;
    if (s->nretries && kind == SL_PLUGIN_SOURCE)
        return fail(ps, line, "%s: a source has no input to retry", what);

    rawfield(L, "dlq");
    if (lua_type(L, -1) == LUA_TSTRING) {
        free(s->dlq);
        s->dlq = strdup(lua_tostring(L, -1));
    } else if (!lua_isnil(L, -1)) {
        rc = fail(ps, line, "%s: dlq must be a topic name", what);
    }
    lua_pop(L, 1);
    if (rc)
        return rc;
    if (s->dlq == NULL && kind != SL_PLUGIN_SOURCE) {
        char name[300];
        snprintf(name, sizeof(name), "%s.dlq", s->inputs[0]);
        s->dlq = strdup(name);
    }
    if (s->dlq && (!valid_name(s->dlq) || strncmp(s->dlq, "__", 2) == 0))
        return fail(ps, line, "%s: \"%s\" is not a usable dead-letter topic name", what, s->dlq);

    rawfield(L, "transient_retry");
    const char *tr = scalar(L, -1);
    if (tr && sl_pipeline_parse_duration(tr, &s->transient_retry_ms) != 0)
        rc = fail(ps, line, "%s: transient_retry must be a duration such as \"1m\"", what);
    lua_pop(L, 1);

    rawfield(L, "errors_tolerance");
    const char *et = scalar(L, -1);
    if (rc == 0 && et && strcmp(et, "all") != 0 && strcmp(et, "none") != 0)
        rc = fail(ps, line, "%s: errors_tolerance must be \"all\" (failed records go to the "
                  "dead-letter topic) or \"none\" (the first one stops the stage)", what);
    s->tolerate_none = et && strcmp(et, "none") == 0;
    lua_pop(L, 1);

    rawfield(L, "call_timeout");
    const char *ct = scalar(L, -1);
    if (rc == 0 && ct && (sl_pipeline_parse_duration(ct, &s->call_timeout_ms) != 0 ||
                          s->call_timeout_ms < 1000))
        rc = fail(ps, line, "%s: call_timeout must be a duration of at least 1s", what);
    lua_pop(L, 1);

    rawfield(L, "limits");
    if (rc == 0 && lua_istable(L, -1))
        rc = read_limits(ps, line, what, s);
    else if (rc == 0 && !lua_isnil(L, -1))
        rc = fail(ps, line, "%s: limits must be { instructions = N, memory = BYTES }", what);
    lua_pop(L, 1);

    rawfield(L, "sandbox");
    if (rc == 0 && lua_isboolean(L, -1))
        s->lua_unsandboxed = !lua_toboolean(L, -1);
    else if (rc == 0 && !lua_isnil(L, -1))
        rc = fail(ps, line, "%s: sandbox must be true or false", what);
    lua_pop(L, 1);
    return rc;
}

static int read_stages(parse *ps, const char *section, sl_plugin_kind kind) {
    lua_State *L = ps->L;
    rawfield(L, section);
    int rc = 0;
    if (!lua_isnil(L, -1) && !lua_istable(L, -1))
        rc = fail(ps, line_of(ps, section), "%s must be a list of stages", section);
    lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        lua_rawgeti(L, -1, i);
        rc = read_stage(ps, kind, section, i);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* Retry and dead-letter topics follow their input's partition count (0 until deploy knows). */
static int add_derived_topics(parse *ps) {
    sl_pipeline *p = ps->p;
    for (size_t i = 0; i < p->nstages; i++) {
        sl_pl_stage *s = &p->stages[i];
        sl_pl_topic *t;
        int rc;
        for (size_t in = 0; in < s->ninputs; in++)
            for (size_t k = 1; k <= s->nretries; k++) {
                char name[300];
                snprintf(name, sizeof(name), "%s.retry.%zu", s->inputs[in], k);
                if ((rc = add_topic(p, name, 0, &t)) != 0 && rc != SL_EEXIST)
                    return rc;
            }
        if (s->dlq && (rc = add_topic(p, s->dlq, 0, &t)) != 0 && rc != SL_EEXIST)
            return rc;
    }
    return 0;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
    lua_getinfo(L, "Sl", ar);
    luaL_error(L, "%s:%d: the pipeline file runs too long (an endless loop?)", ar->short_src,
               ar->currentline);
}

int sl_pipeline_read_file(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return SL_ENOENT;
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL)
        return SL_ENOMEM;
    buf[len] = '\0';
    *out = buf;
    return 0;
}

/* Reads what the file returned (at the top of the stack) into ps->p. Runs under lua_pcall: a
 * memory error while walking the table must not abort the broker. */
static int walk(lua_State *L) {
    parse *ps = lua_touserdata(L, 2); /* walk(table, ps) */
    lua_pop(L, 1);
    sl_pipeline *p = ps->p;
    ps->rc = SL_EINVAL;
    if (!lua_istable(L, -1)) {
        fail(ps, 1, "the file must return a table (return { topics = ..., processors = ... })");
        return 0;
    }
    static const char *const fields[] = {"name", "topics", "sources", "processors", "sinks",
                                         "processing_guarantee", NULL};
    if ((ps->rc = only_fields(ps, 1, "the pipeline", fields)) != 0)
        return 0;
    rawfield(L, "processing_guarantee");
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "exactly_once") == 0) {
        p->exactly_once = true;
    } else if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TSTRING ||
                                     strcmp(lua_tostring(L, -1), "at_least_once") != 0)) {
        ps->rc = fail(ps, line_of(ps, "processing_guarantee"),
                      "processing_guarantee must be \"at_least_once\" (the default) or "
                      "\"exactly_once\"");
        return 0;
    }
    lua_pop(L, 1);
    rawfield(L, "name");
    if (lua_type(L, -1) == LUA_TSTRING) {
        p->name = strdup(lua_tostring(L, -1));
    } else if (lua_isnil(L, -1)) {
        const char *base = strrchr(p->file, '/') ? strrchr(p->file, '/') + 1 : p->file;
        size_t n = strlen(base);
        if (n > 4 && strcmp(base + n - 4, ".lua") == 0)
            n -= 4;
        p->name = strndup(base, n);
    }
    lua_pop(L, 1);
    if (p->name == NULL || !valid_name(p->name)) {
        ps->rc = fail(ps, line_of(ps, "name"), "the pipeline's name must be letters, digits, "
                      "'.', '_' or '-'");
        return 0;
    }
    if ((ps->rc = read_topics(ps)) != 0 ||
        (ps->rc = read_stages(ps, "sources", SL_PLUGIN_SOURCE)) != 0 ||
        (ps->rc = read_stages(ps, "processors", SL_PLUGIN_PROCESSOR)) != 0 ||
        (ps->rc = read_stages(ps, "sinks", SL_PLUGIN_SINK)) != 0)
        return 0;
    if (p->nstages == 0) {
        ps->rc = fail(ps, 1, "the pipeline has no sources, processors or sinks");
        return 0;
    }
    ps->rc = add_derived_topics(ps);
    return 0;
}

/* The parse state's allocator: a pipeline file is small, and one that builds a huge string
 * must not take the broker's memory. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    size_t *used = ud;
    if (ptr == NULL)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        *used -= osize;
        return NULL;
    }
    if (nsize > osize && *used + (nsize - osize) > PARSE_MEMORY)
        return NULL;
    void *np = realloc(ptr, nsize);
    if (np)
        *used += nsize - osize;
    return np;
}

static int open_parse_libs(lua_State *L) {
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
    return 0;
}

int sl_pipeline_load(const char *file, const char *source, const char *plugin_path,
                     sl_pipeline **out, char *errbuf, size_t errlen) {
    char *text = NULL;
    if (errlen)
        errbuf[0] = '\0';
    if (source == NULL) {
        if (sl_pipeline_read_file(file, &text) != 0) {
            snprintf(errbuf, errlen, "%s: cannot read the pipeline file: %s", file,
                     strerror(errno));
            return SL_ENOENT;
        }
        source = text;
    }
    parse ps = {.file = file, .source = source, .plugin_path = plugin_path, .err = errbuf,
                .errlen = errlen};
    char abs[PATH_MAX];
    if (realpath(file, abs) == NULL)
        snprintf(abs, sizeof(abs), "%s", file);
    snprintf(ps.dir, sizeof(ps.dir), "%s", abs);
    char *slash = strrchr(ps.dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(ps.dir, sizeof(ps.dir), ".");

    int rc = SL_ENOMEM;
    size_t used = 0;
    sl_pipeline *p = ps.p = calloc(1, sizeof(*p));
    lua_State *L = ps.L = lua_newstate(capped_alloc, &used);
    if (p == NULL || L == NULL || (p->file = strdup(abs)) == NULL)
        goto out;
    lua_pushcfunction(L, open_parse_libs);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK)
        goto out;
    char chunkname[PATH_MAX + 1];
    snprintf(chunkname, sizeof(chunkname), "@%s", file);
    int status = luaL_loadbufferx(L, source, strlen(source), chunkname, "t");
    if (status == LUA_OK) {
        lua_sethook(L, count_hook, LUA_MASKCOUNT, PARSE_BUDGET);
        status = lua_pcall(L, 0, 1, 0);
        lua_sethook(L, NULL, 0, 0);
    }
    if (status != LUA_OK) {
        if (status == LUA_ERRMEM)
            fail(&ps, 1, "the file needs more than %d MiB to run", PARSE_MEMORY >> 20);
        else
            snprintf(errbuf, errlen, "%s", lua_tostring(L, -1));
        rc = SL_EINVAL;
        goto out;
    }
    lua_pushcfunction(L, walk);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, &ps);
    status = lua_pcall(L, 2, 0, 0);
    rc = status == LUA_OK ? ps.rc : SL_EINVAL;
    if (status != LUA_OK && errbuf[0] == '\0')
        fail(&ps, 1, "%s", status == LUA_ERRMEM ? "out of memory reading the pipeline"
                                                : lua_tostring(L, -1));
out:
    if (L)
        lua_close(L);
    free(text);
    if (rc) {
        if (rc == SL_ENOMEM && errlen && errbuf[0] == '\0')
            snprintf(errbuf, errlen, "%s: out of memory", file);
        sl_pipeline_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void sl_pipeline_free(sl_pipeline *p) {
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->ntopics; i++) {
        free(p->topics[i].name);
        free_strv(p->topics[i].configs, p->topics[i].nconfigs);
    }
    free(p->topics);
    for (size_t i = 0; i < p->nstages; i++) {
        sl_pl_stage *s = &p->stages[i];
        free(s->name);
        free_strv(s->inputs, s->ninputs);
        free_strv(s->outputs, s->noutputs);
        free(s->plugin);
        free(s->script);
        free_strv(s->config_keys, s->nconfig);
        free_strv(s->config_values, s->nconfig);
        free(s->dlq);
    }
    free(p->stages);
    free(p->name);
    free(p->file);
    free(p);
}

const sl_pl_stage *sl_pipeline_stage(const sl_pipeline *p, const char *name) {
    for (size_t i = 0; i < p->nstages; i++)
        if (strcmp(p->stages[i].name, name) == 0)
            return &p->stages[i];
    return NULL;
}

void sl_pipeline_group(const sl_pipeline *p, const sl_pl_stage *s, char *buf, size_t len) {
    snprintf(buf, len, "sluice.%s.%s", p->name, s->name);
}
