/* libFuzzer target: msgpack.unpack in a Lua script sees record values from the network. It must
 * refuse what is not one well-formed value, never crash or allocate for sizes the bytes cannot
 * hold; what it accepts must pack again. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>

#include "plugin/lua_codec.h"

static int round_trip(lua_State *L) {
    lua_getfield(L, 2, "unpack");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    lua_getfield(L, 2, "pack");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lua_State *L;
    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
    }
    lua_settop(L, 0);
    lua_pushcfunction(L, round_trip);
    lua_pushlstring(L, (const char *)data, size);
    sl_lua_open_msgpack(L);
    lua_pcall(L, 2, 1, 0); /* an error is a refusal: fine */
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
