/* libFuzzer target: json.field reads one member of record values from the network without
 * the full decoder. Against lua-cjson: wherever json.decode accepts a document, json.field must
 * accept it too and give the same value for the member (nil for objects, arrays and null). The
 * input is [name length (low 3 bits)][name][document]. */
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "plugin/lua_json_field.h"

static lua_State *state(void) {
    static lua_State *L;
    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
        luaopen_cjson(L);
        sl_lua_add_json_field(L);
        /* JSON's own number grammar: cjson otherwise takes NaN, Infinity and hex, which
         * json.field refuses. */
        lua_getfield(L, -1, "decode_invalid_numbers");
        lua_pushboolean(L, 0);
        lua_call(L, 1, 0);
        lua_setglobal(L, "json");
    }
    return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t nlen = data[0] & 7;
    if (1 + nlen > size)
        return 0;
    lua_State *L = state();
    lua_settop(L, 0);
    lua_getglobal(L, "json");
    lua_getfield(L, 1, "decode");
    lua_pushlstring(L, (const char *)data + 1 + nlen, size - 1 - nlen);
    int decoded = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1); /* 2: the table */
    lua_getfield(L, 1, "field");
    lua_pushlstring(L, (const char *)data + 1 + nlen, size - 1 - nlen);
    lua_pushlstring(L, (const char *)data + 1, nlen);
    int fielded = lua_pcall(L, 2, 1, 0) == LUA_OK; /* 3: the field's value */
    if (decoded) {
        if (!fielded)
            abort(); /* a document json.decode reads, json.field refused */
        lua_pushlstring(L, (const char *)data + 1, nlen);
        lua_rawget(L, 2); /* 4: what decode made of the member */
        int t = lua_type(L, 4);
        if (t == LUA_TTABLE || t == LUA_TLIGHTUSERDATA || t == LUA_TNIL) {
            if (!lua_isnil(L, 3))
                abort();
        } else if (t == LUA_TNUMBER) {
            /* cjson reads every number as a double: beyond 2^53 only json.field is exact. */
            double d = lua_tonumber(L, 4);
            if (lua_type(L, 3) != LUA_TNUMBER ||
                (fabs(d) < 9007199254740992.0 && d == d && lua_tonumber(L, 3) != d))
                abort();
        } else if (!lua_rawequal(L, 3, 4)) {
            abort();
        }
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
