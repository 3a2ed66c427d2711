/* A shared object that is not a plugin at all: it has no sluice_plugin symbol. */
__attribute__((visibility("default"))) int something_else(int x) {
    return x + 1;
}
