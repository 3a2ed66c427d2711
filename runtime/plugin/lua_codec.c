/* msgpack <-> Lua values. A table is packed as an array when its keys are exactly 1..n, as a
 * map otherwise; nesting is bounded so a cyclic table is an error, not a stack overflow.
 * Unpacking first checks the bytes (sl_mp_check): msgpack-c allocates for declared sizes. */
#include "plugin/lua_codec.h"

#include <lauxlib.h>
#include <msgpack.h>

#include "base/mpcheck.h"

#define MAX_DEPTH 64
/* Caps on what one pack may produce: its buffer lives outside Lua's allocator (and so outside
 * the state's memory limit), and a table sharing its sub-tables can stand for far more values
 * than it holds. */
#define MAX_PACKED_BYTES (64u << 20)
#define MAX_PACKED_VALUES 10000000u

typedef struct pack_ctx {
    msgpack_packer pk;
    msgpack_sbuffer *sb;
    size_t values;
} pack_ctx;

static void pack_value(lua_State *L, pack_ctx *pc, int idx, int depth);

static bool is_array(lua_State *L, int idx, size_t *len) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            return false;
        }
        count++;
    }
    *len = (size_t)n;
    return count == n && n > 0;
}

static void pack_table(lua_State *L, pack_ctx *pc, int idx, int depth) {
    msgpack_packer *pk = &pc->pk;
    size_t len;
    if (depth > MAX_DEPTH)
        luaL_error(L, "msgpack.pack: tables nested deeper than %d (a cycle?)", MAX_DEPTH);
    luaL_checkstack(L, 4, "msgpack.pack");
    if (is_array(L, idx, &len)) {
        msgpack_pack_array(pk, len);
        for (size_t i = 1; i <= len; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            pack_value(L, pc, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        return;
    }
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        count++;
    }
    msgpack_pack_map(pk, count);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        pack_value(L, pc, lua_gettop(L) - 1, depth + 1);
        pack_value(L, pc, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
}

static void pack_value(lua_State *L, pack_ctx *pc, int idx, int depth) {
    msgpack_packer *pk = &pc->pk;
    if (++pc->values > MAX_PACKED_VALUES || pc->sb->size > MAX_PACKED_BYTES)
        luaL_error(L, "msgpack.pack: more than %d values or %d bytes", (int)MAX_PACKED_VALUES,
                   (int)MAX_PACKED_BYTES);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: msgpack_pack_nil(pk); break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            msgpack_pack_int64(pk, (int64_t)lua_tointeger(L, idx));
        else
            msgpack_pack_double(pk, (double)lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        msgpack_pack_str(pk, len);
        msgpack_pack_str_body(pk, s, len);
        break;
    }
    case LUA_TTABLE: pack_table(L, pc, idx, depth); break;
    default:
        luaL_error(L, "msgpack.pack: cannot pack a %s", luaL_typename(L, idx));
    }
}

/* The buffer lives in a userdata so that a Lua error inside pack frees it with the GC. */
static int sbuf_gc(lua_State *L) {
    msgpack_sbuffer *sb = lua_touserdata(L, 1);
    msgpack_sbuffer_destroy(sb);
    return 0;
}

static int l_pack(lua_State *L) {
    luaL_checkany(L, 1);
    msgpack_sbuffer *sb = lua_newuserdatauv(L, sizeof(*sb), 0);
    msgpack_sbuffer_init(sb);
    if (luaL_newmetatable(L, "sluice.msgpack.sbuffer")) {
        lua_pushcfunction(L, sbuf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    pack_ctx pc = {.sb = sb};
    msgpack_packer_init(&pc.pk, sb, msgpack_sbuffer_write);
    pack_value(L, &pc, 1, 0);
    lua_pushlstring(L, sb->data ? sb->data : "", sb->size);
    return 1;
}

static void push_object(lua_State *L, const msgpack_object *o, int depth) {
    luaL_checkstack(L, 3, "msgpack.unpack");
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: lua_pushnil(L); break;
    case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean(L, o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: lua_pushinteger(L, (lua_Integer)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: lua_pushinteger(L, (lua_Integer)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: lua_pushnumber(L, (lua_Number)o->via.f64); break;
    case MSGPACK_OBJECT_STR: lua_pushlstring(L, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT: lua_pushlstring(L, o->via.ext.ptr, o->via.ext.size); break;
    case MSGPACK_OBJECT_ARRAY:
        if (depth > MAX_DEPTH)
            luaL_error(L, "msgpack.unpack: nested deeper than %d", MAX_DEPTH);
        lua_createtable(L, (int)o->via.array.size, 0);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            push_object(L, &o->via.array.ptr[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        if (depth > MAX_DEPTH)
            luaL_error(L, "msgpack.unpack: nested deeper than %d", MAX_DEPTH);
        lua_createtable(L, 0, (int)o->via.map.size);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            push_object(L, &o->via.map.ptr[i].key, depth + 1);
            push_object(L, &o->via.map.ptr[i].val, depth + 1);
            if (lua_isnil(L, -2)) /* a nil key cannot be stored: skip the pair */
                lua_pop(L, 2);
            else
                lua_rawset(L, -3);
        }
        break;
    }
}

static int unpacked_gc(lua_State *L) {
    msgpack_unpacked_destroy(lua_touserdata(L, 1));
    return 0;
}

static int l_unpack(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (sl_mp_check((const uint8_t *)s, len) != 0)
        return luaL_error(L, "msgpack.unpack: not one well-formed msgpack value");
    msgpack_unpacked *up = lua_newuserdatauv(L, sizeof(*up), 0);
    msgpack_unpacked_init(up);
    if (luaL_newmetatable(L, "sluice.msgpack.unpacked")) {
        lua_pushcfunction(L, unpacked_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    size_t off = 0;
    if (msgpack_unpack_next(up, s, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return luaL_error(L, "msgpack.unpack: cannot decode");
    push_object(L, &up->data, 0);
    return 1;
}

int sl_lua_open_msgpack(lua_State *L) {
    static const luaL_Reg fns[] = {{"pack", l_pack}, {"unpack", l_unpack}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
