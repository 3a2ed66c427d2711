/* msgpack for Lua scripts: msgpack.pack(value) -> string, msgpack.unpack(string) -> value. */
#ifndef SL_PLUGIN_LUA_CODEC_H
#define SL_PLUGIN_LUA_CODEC_H

#include <lua.h>

/* Pushes the 'msgpack' module table. */
int sl_lua_open_msgpack(lua_State *L);

#endif
