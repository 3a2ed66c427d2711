/* json.field(text, name) for Lua scripts: the value of one top-level member of a JSON object,
 * read without building a table for the whole document. A stream processor that needs one
 * field of each record (an event time, an id) pays for that field only. */
#ifndef SL_PLUGIN_LUA_JSON_FIELD_H
#define SL_PLUGIN_LUA_JSON_FIELD_H

#include <lua.h>

/* Sets 'field' in the table at the top of the stack (the json module). The function returns
 * the member's value (a number, string or boolean; nil when absent or null, and for an object
 * or array, which it does not build) and raises an error when 'text' is not a JSON object. It
 * checks the document only as far as it reads it. */
void sl_lua_add_json_field(lua_State *L);

#endif
