/* A scanner over one JSON object: members are skipped by their shape (strings by their quotes
 * and escapes, objects and arrays by depth) until the wanted name is found, and only that value
 * is converted. Strings with escapes, in the wanted value or in a member name, are rare enough
 * to leave to the full decoder. */
#include "plugin/lua_json_field.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <string.h>

#define MAX_DEPTH 1000 /* as cjson's default: deeper documents are refused, not recursed */

typedef struct scan {
    const char *p, *end;
    bool escaped; /* the last string scanned had a backslash */
} scan;

static void skip_space(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* At an opening quote: moves past the closing one; 'start' and 'len' get the raw bytes between. */
static bool skip_string(scan *s, const char **start, size_t *len) {
    s->p++;
    *start = s->p;
    s->escaped = false;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            *len = (size_t)(s->p - *start);
            s->p++;
            return true;
        }
        if (c == '\\') {
            s->escaped = true;
            s->p++; /* the escaped character is skipped with it: \" does not end the string */
        }
        s->p++;
    }
    return false;
}

static bool is_number_char(char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Moves past one value of any kind. */
static bool skip_value(scan *s) {
    int depth = 0;
    do {
        skip_space(s);
        if (s->p >= s->end)
            return false;
        char c = *s->p;
        const char *str;
        size_t len;
        if (c == '"') {
            if (!skip_string(s, &str, &len))
                return false;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH)
                return false;
            s->p++;
            continue;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return false;
            depth--;
            s->p++;
        } else if (c == ',' || c == ':') {
            if (depth == 0)
                return false;
            s->p++;
            continue;
        } else if (is_number_char(c)) {
            while (s->p < s->end && is_number_char(*s->p))
                s->p++;
        } else {
            static const char *const words[] = {"true", "false", "null"};
            size_t i = 0;
            for (; i < 3; i++) {
                size_t n = strlen(words[i]);
                if ((size_t)(s->end - s->p) >= n && memcmp(s->p, words[i], n) == 0) {
                    s->p += n;
                    break;
                }
            }
            if (i == 3)
                return false;
        }
    } while (depth > 0);
    return true;
}

/* Pushes the value at s->p; 0 when done, 1 when only the full decoder can say (escapes). */
static int push_value(lua_State *L, scan *s) {
    skip_space(s);
    if (s->p >= s->end)
        return luaL_error(L, "json.field: not a JSON object (the document ends early)");
    char c = *s->p;
    if (c == '"') {
        const char *str;
        size_t len;
        if (!skip_string(s, &str, &len))
            return luaL_error(L, "json.field: not a JSON object (a string does not end)");
        if (s->escaped)
            return 1;
        lua_pushlstring(L, str, len);
        return 0;
    }
    if (is_number_char(c)) {
        const char *start = s->p;
        while (s->p < s->end && is_number_char(*s->p))
            s->p++;
        char num[64];
        size_t n = (size_t)(s->p - start);
        if (n >= sizeof(num) || c == '+')
            return 1;
        memcpy(num, start, n);
        num[n] = '\0';
        if (lua_stringtonumber(L, num) == 0)
            return luaL_error(L, "json.field: not a JSON number: %s", num);
        return 0;
    }
    if (c == 't' || c == 'f' || c == 'n') {
        if (!skip_value(s))
            return luaL_error(L, "json.field: not a JSON object (a bad literal)");
        if (c == 'n')
            lua_pushnil(L);
        else
            lua_pushboolean(L, c == 't');
        return 0;
    }
    if (!skip_value(s))
        return luaL_error(L, "json.field: not a JSON object (a bad value)");
    lua_pushnil(L); /* an object or an array: not built here */
    return 0;
}

/* The slow path: decode the whole document with the json module's decode and index it. */
static int field_by_decode(lua_State *L) {
    lua_getfield(L, lua_upvalueindex(1), "decode");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1))
        return luaL_error(L, "json.field: not a JSON object");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (lua_istable(L, -1) || lua_islightuserdata(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L); /* objects and arrays as nil, cjson's null as nil: as the fast path */
    }
    return 1;
}

static int l_field(lua_State *L) {
    size_t tlen, nlen;
    const char *text = luaL_checklstring(L, 1, &tlen);
    const char *name = luaL_checklstring(L, 2, &nlen);
    scan s = {text, text + tlen, false};
    skip_space(&s);
    if (s.p < s.end && *s.p == '[') { /* an array has no members: nil, as decode's table */
        if (!skip_value(&s))
            return luaL_error(L, "json.field: not JSON (a bad array)");
        lua_pushnil(L);
        return 1;
    }
    if (s.p >= s.end || *s.p != '{')
        return luaL_error(L, "json.field: not a JSON object");
    s.p++;
    skip_space(&s);
    if (s.p < s.end && *s.p == '}') {
        lua_pushnil(L);
        return 1;
    }
    /* Every member is read: with a name given twice the last one counts, as in json.decode. */
    const char *found = NULL;
    for (;;) {
        skip_space(&s);
        const char *key;
        size_t klen;
        if (s.p >= s.end || *s.p != '"' || !skip_string(&s, &key, &klen))
            return luaL_error(L, "json.field: not a JSON object (a member name is not a string)");
        if (s.escaped) /* "\u0074s" is "ts": only the decoder can tell */
            return field_by_decode(L);
        skip_space(&s);
        if (s.p >= s.end || *s.p != ':')
            return luaL_error(L, "json.field: not a JSON object (no ':' after a member name)");
        s.p++;
        if (klen == nlen && memcmp(key, name, nlen) == 0) {
            skip_space(&s);
            found = s.p;
        }
        if (!skip_value(&s))
            return luaL_error(L, "json.field: not a JSON object (a bad value)");
        skip_space(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (s.p < s.end && *s.p == '}')
            break;
        return luaL_error(L, "json.field: not a JSON object (no ',' or '}' after a member)");
    }
    if (found == NULL) {
        lua_pushnil(L);
        return 1;
    }
    s.p = found;
    if (push_value(L, &s) != 0) {
        lua_settop(L, 2);
        return field_by_decode(L);
    }
    return 1;
}

void sl_lua_add_json_field(lua_State *L) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_field, 1); /* the json module, for the slow path */
    lua_setfield(L, -2, "field");
}
