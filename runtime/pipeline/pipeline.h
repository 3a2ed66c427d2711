/* A pipeline file: a Lua file returning a table of topics, sources, processors and sinks.
 *
 *   return {
 *     name = "orders",                        -- default: the file's name without .lua
 *     topics = { orders = { partitions = 6, config = { ["retention.ms"] = "86400000" } } },
 *     processors = {
 *       { name = "payments", input = "orders", output = "payments", script = "payments.lua",
 *         instances = 2, config = { currency = "EUR" },
 *         retry = { delays = { "30s", "1m" }, dlq = "orders.dlq" } },
 *       { name = "big", input = "orders", output = "big-orders", filter = "#record.value > 100" },
 *     },
 *     sinks = { { name = "archive", input = "payments", plugin = "file", config = {...} } },
 *   }
 *
 * Loading checks the whole file before anything runs: a bad one is refused with the file, the
 * line and the reason, and nothing of it starts. */
#ifndef SL_PIPELINE_PIPELINE_H
#define SL_PIPELINE_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/plugin.h"

#define SL_PIPELINES_TOPIC "__pipelines"
#define SL_PIPELINE_STATUS_TOPIC "__pipeline_status"
#define SL_CONNECT_OFFSETS_TOPIC "__connect_offsets" /* source positions, per instance */
#define SL_PIPELINE_MAX_INSTANCES 64
#define SL_PIPELINE_MAX_RETRIES 16

typedef struct sl_pl_topic {
    char *name;
    int32_t partitions; /* 0: as many as the stage's first input has (retry and DLQ topics) */
    char **configs;     /* "key=value" */
    size_t nconfigs;
} sl_pl_topic;

typedef struct sl_pl_stage {
    char *name;
    sl_plugin_kind kind;
    char **inputs;
    size_t ninputs;
    char **outputs;
    size_t noutputs;
    char *plugin;      /* the resolved .so path, or NULL for a Lua script */
    char *script;      /* the resolved script path, or NULL for a C plugin */
    int instances;
    char **config_keys; /* the stage's config table, values as strings */
    char **config_values;
    size_t nconfig;
    int64_t retry_delays_ms[SL_PIPELINE_MAX_RETRIES]; /* retry topics <input>.retry.<n> */
    size_t nretries;
    char *dlq;                 /* dead-letter topic */
    int64_t transient_retry_ms; /* how long SL_ERETRY is retried in place */
    int64_t call_timeout_ms;   /* a plugin call running longer is killed, as a crash */
    bool tolerate_none;        /* errors_tolerance = "none": a failed record stops the stage */
    int64_t lua_instructions;  /* 0: default */
    int64_t lua_memory;        /* 0: default */
    bool lua_unsandboxed;
    int line;
} sl_pl_stage;

typedef struct sl_pipeline {
    char *name;
    char *file; /* absolute */
    sl_pl_topic *topics; /* declared ones, then the retry and DLQ topics the stages need */
    size_t ntopics;
    sl_pl_stage *stages; /* sources, then processors, then sinks */
    size_t nstages;
    /* processing_guarantee = "exactly_once": each processor and sink instance commits its
     * outputs, changelog writes and input offsets in one transaction and reads its inputs
     * read_committed. Sources stay at least once. */
    bool exactly_once;
} sl_pipeline;

/* Loads and checks the pipeline 'source' (the text of 'file'; NULL: read 'file'). Relative
 * script paths are taken from file's folder, then from the shipped scripts; plugins are looked
 * for along 'plugin_path' (sl_plugin_search_path), found but not loaded. With 'plugin_path'
 * NULL only the structure is checked and 'plugin' and 'script' keep the names written in the
 * file. On failure errbuf holds "FILE:LINE: reason" and *out is untouched. Safe on hostile
 * text: the file runs with an instruction budget, a memory cap and no os, io or require, and
 * its table is read without metamethods. Free with sl_pipeline_free. */
int sl_pipeline_load(const char *file, const char *source, const char *plugin_path,
                     sl_pipeline **out, char *errbuf, size_t errlen);
void sl_pipeline_free(sl_pipeline *p);

/* Loads each stage's plugin and checks it is a plugin of the stage's kind. This runs plugin
 * code (constructors, the entry function): the CLI calls it before deploying, the broker never
 * does. 0 or SL_EINVAL with "FILE:LINE: reason". */
int sl_pipeline_check_plugins(const sl_pipeline *p, char *errbuf, size_t errlen);

/* The stage named 'name', or NULL. */
const sl_pl_stage *sl_pipeline_stage(const sl_pipeline *p, const char *name);

/* The consumer group of a stage: "sluice.<pipeline>.<stage>". */
void sl_pipeline_group(const sl_pipeline *p, const sl_pl_stage *s, char *buf, size_t len);

/* Reads a whole file into a malloc'd NUL-terminated string. 0, SL_ENOENT or SL_ENOMEM. */
int sl_pipeline_read_file(const char *path, char **out);

/* Parses "500ms", "30s", "1m", "2h" or a plain number of milliseconds. */
int sl_pipeline_parse_duration(const char *text, int64_t *ms);

#endif
