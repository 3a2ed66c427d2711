/* The plugin loader. None of a plugin's callbacks is called before its descriptor has passed
 * every check: the magic word first (a foreign library has none), then the ABI version and the
 * size, then the callbacks its kind needs. Loading does run the library's constructors and its
 * entry function, so only processes that may crash load plugins (never the broker). */
#include "plugin/loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SL_INSTALL_PLUGIN_DIR
#define SL_INSTALL_PLUGIN_DIR "/usr/local/lib/sluice/plugins"
#endif
#ifndef SL_BUILD_PLUGIN_DIRS
#define SL_BUILD_PLUGIN_DIRS ""
#endif

static const char default_path[] = SL_INSTALL_PLUGIN_DIR ":" SL_BUILD_PLUGIN_DIRS;

const char *sl_plugin_search_path(const char *configured, char *buf, size_t len) {
    if (configured == NULL || *configured == '\0')
        return default_path;
    snprintf(buf, len, "%s:%s", configured, default_path);
    return buf;
}

int sl_plugin_locate(const char *search_path, const char *name, char *path, size_t len,
                     char *errbuf, size_t errlen) {
    if (strchr(name, '/') != NULL) { /* a path names the file itself */
        if (access(name, R_OK) != 0) {
            snprintf(errbuf, errlen, "plugin file %s cannot be read", name);
            return SL_ENOENT;
        }
        snprintf(path, len, "%s", name);
        return 0;
    }
    const char *p = search_path;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t dirlen = end ? (size_t)(end - p) : strlen(p);
        if (dirlen > 0) {
            snprintf(path, len, "%.*s/%s.so", (int)dirlen, p, name);
            if (access(path, R_OK) == 0)
                return 0;
        }
        p += dirlen + (end != NULL);
    }
    snprintf(errbuf, errlen, "no plugin named \"%s\" (looked for %s.so in %s)", name, name,
             search_path);
    return SL_ENOENT;
}

const char *sl_plugin_kind_name(uint32_t kind) {
    switch (kind) {
    case SL_PLUGIN_PROCESSOR: return "processor";
    case SL_PLUGIN_SOURCE: return "source";
    case SL_PLUGIN_SINK: return "sink";
    default: return "unknown";
    }
}

static int valid_name(const char *name) {
    if (name == NULL || *name == '\0' || strlen(name) > 64)
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return 0;
    return 1;
}

/* What a descriptor must hold before any of its callbacks is called. */
static int check_descriptor(const sl_plugin_descriptor *d, char *errbuf, size_t errlen) {
    if (d->abi_version == 0 || d->abi_version > SL_PLUGIN_ABI_VERSION) {
        snprintf(errbuf, errlen, "it was built for plugin ABI %u; this Sluice supports 1 to %u",
                 d->abi_version, SL_PLUGIN_ABI_VERSION);
        return SL_EUNSUPPORTED;
    }
    if (d->kind != SL_PLUGIN_PROCESSOR && d->kind != SL_PLUGIN_SOURCE &&
        d->kind != SL_PLUGIN_SINK) {
        snprintf(errbuf, errlen, "its kind %u is none of processor (1), source (2), sink (3)",
                 d->kind);
        return SL_EINVAL;
    }
    if (!valid_name(d->name)) {
        snprintf(errbuf, errlen, "its name is missing or not made of [a-z0-9_-] (64 at most)");
        return SL_EINVAL;
    }
    if (d->init == NULL || d->close == NULL) {
        snprintf(errbuf, errlen, "plugin \"%s\" has no %s callback", d->name,
                 d->init == NULL ? "init" : "close");
        return SL_EINVAL;
    }
    if (d->kind == SL_PLUGIN_SOURCE && d->poll == NULL) {
        snprintf(errbuf, errlen, "source plugin \"%s\" has no poll callback", d->name);
        return SL_EINVAL;
    }
    if (d->kind != SL_PLUGIN_SOURCE && d->process == NULL && d->process_batch == NULL) {
        snprintf(errbuf, errlen, "%s plugin \"%s\" has neither process nor process_batch",
                 sl_plugin_kind_name(d->kind), d->name);
        return SL_EINVAL;
    }
    return 0;
}

int sl_plugin_load(const char *path, sl_plugin_lib **out, char *errbuf, size_t errlen) {
    char why[512] = "";
    int rc = SL_EINVAL;
    /* RTLD_LOCAL: two plugins may define the same symbols without meeting. */
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        snprintf(errbuf, errlen, "cannot load plugin %s: %s", path, dlerror());
        return SL_EINVAL;
    }
    sl_plugin_entry_fn entry;
    *(void **)&entry = dlsym(handle, SL_PLUGIN_ENTRY);
    const sl_plugin_descriptor *d = entry ? entry() : NULL;
    sl_plugin_lib *lib = NULL;
    if (entry == NULL) {
        snprintf(why, sizeof(why), "it exports no %s() function: not a Sluice plugin",
                 SL_PLUGIN_ENTRY);
    } else if (d == NULL) {
        snprintf(why, sizeof(why), "%s() returned no descriptor", SL_PLUGIN_ENTRY);
    } else if (d->magic != SL_PLUGIN_MAGIC) {
        snprintf(why, sizeof(why), "its descriptor has magic 0x%08x, not 0x%08x: not a Sluice "
                 "plugin", d->magic, SL_PLUGIN_MAGIC);
    } else if (d->struct_size < SL_PLUGIN_DESCRIPTOR_MIN_SIZE || d->struct_size > 65536 ||
               d->struct_size % sizeof(void *) != 0) {
        /* A size between two fields would copy half a pointer. */
        snprintf(why, sizeof(why), "its descriptor claims %u bytes: not a whole number of "
                 "fields of at least %zu bytes", d->struct_size,
                 (size_t)SL_PLUGIN_DESCRIPTOR_MIN_SIZE);
    } else if ((lib = calloc(1, sizeof(*lib))) == NULL || (lib->path = strdup(path)) == NULL) {
        rc = SL_ENOMEM;
        snprintf(why, sizeof(why), "out of memory");
    } else {
        /* Read no more than the plugin built: an older descriptor is shorter, and what it
         * lacks stays zero (absent). Newer, longer ones keep what this host knows. */
        size_t n = d->struct_size < sizeof(lib->desc) ? d->struct_size : sizeof(lib->desc);
        memcpy(&lib->desc, d, n);
        rc = check_descriptor(&lib->desc, why, sizeof(why));
        if (rc == 0) {
            lib->handle = handle;
            *out = lib;
            return 0;
        }
    }
    if (lib)
        free(lib->path);
    free(lib);
    dlclose(handle);
    snprintf(errbuf, errlen, "plugin %s refused: %s", path, why);
    return rc;
}

void sl_plugin_unload(sl_plugin_lib *lib) {
    if (lib == NULL)
        return;
    dlclose(lib->handle);
    free(lib->path);
    free(lib);
}
