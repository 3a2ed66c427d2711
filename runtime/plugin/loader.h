/* Finds plugin shared objects on the plugin path and loads them: dlopen, the entry symbol, and
 * the checks that keep a foreign or broken .so from ever being called. */
#ifndef SL_PLUGIN_LOADER_H
#define SL_PLUGIN_LOADER_H

#include <stddef.h>

#include "sluice/plugin.h"

/* A loaded plugin. 'desc' is the host's copy of the plugin's descriptor, widened to the current
 * size: the fields an older plugin does not have are zero. */
typedef struct sl_plugin_lib {
    void *handle;
    char *path;
    sl_plugin_descriptor desc;
} sl_plugin_lib;

/* Directories searched for plugins, ':'-separated: the plugin.path given ('NULL' or "" for
 * none) followed by the installed and the build tree's plugin and connector folders. Static
 * storage when 'configured' is NULL; otherwise written to buf. */
const char *sl_plugin_search_path(const char *configured, char *buf, size_t len);

/* The file of plugin 'name' ("<dir>/<name>.so", first match along 'search_path') into 'path'.
 * SL_ENOENT with the directories searched in errbuf. */
int sl_plugin_locate(const char *search_path, const char *name, char *path, size_t len,
                     char *errbuf, size_t errlen);

/* Loads the .so at 'path' and checks its descriptor (magic, ABI version, size, kind, name,
 * callbacks its kind needs). On failure nothing stays loaded and errbuf says why, naming the
 * file. '*out' is the caller's: free with sl_plugin_unload. */
int sl_plugin_load(const char *path, sl_plugin_lib **out, char *errbuf, size_t errlen);
void sl_plugin_unload(sl_plugin_lib *lib);

/* "processor", "source", "sink" or "unknown". */
const char *sl_plugin_kind_name(uint32_t kind);

#endif
