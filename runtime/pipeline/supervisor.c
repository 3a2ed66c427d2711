/* The supervisor's thread: read __pipelines, reconcile the wanted instances with the running
 * children, reap and restart. Every child is this same executable started with --run-task,
 * dying with the node (PR_SET_PDEATHSIG) so that no orphan keeps consuming. */
#include "pipeline/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "pipeline/admin.h"
#include "pipeline/pipeline.h"
#include "pipeline/task.h"
#include "plugin/loader.h"
#include "sluice/client.h"

#define STOP_GRACE_MS 15000
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 30000
#define HEALTHY_AFTER_MS 60000 /* a child that ran this long restarts without delay */
#define POISON_CRASHES 3
#define MAX_CRASH_TRACKS 256
#define MAX_NODES 64
#define PROBE_INTERVAL_MS 1000
#define PROBE_TIMEOUT_MS 500

typedef struct instance {
    char *pipeline, *stage;
    int index;
    int64_t version;
    char *origin, *source_path;
    pid_t pid;          /* 0: not running */
    bool stopping;      /* SIGTERM sent; forgotten once it exits */
    int64_t kill_at_ms; /* SIGKILL if still alive then */
    int64_t start_at_ms;
    int64_t backoff_ms;
    int64_t started_ms;
    int restarts;
    int64_t call_timeout_ms; /* a plugin call this long is killed (and counts as a crash) */
    char last_exit[256];
} instance;

typedef struct wanted {
    char *name;
    int64_t version;
    char *origin;
    char *source;
    char *paused;         /* ",stage,stage," (sluice.paused) */
    char *restart;        /* a stage to restart (sluice.restart), or "" */
    bool control;         /* written by pause/resume/restart, not by a deploy */
    int64_t applied;      /* the version acted on (-1: none) */
    bool replace;         /* the nodes that answer changed: place its instances again */
    char *applied_source; /* the text acted on: same text again is a control change only */
} wanted;

/* Crashes per record (not per stage: two poison records in two instances must not reset each
 * other's count). */
typedef struct crash_track {
    char *key; /* pipeline/stage */
    char topic[256];
    int32_t partition;
    int64_t offset;
    int count;
} crash_track;

struct sl_supervisor {
    sl_supervisor_conf conf;
    char exe[PATH_MAX];
    pthread_t thread;
    atomic_bool stop;
    sl_consumer *consumer;
    sl_producer *producer;
    instance *inst;
    size_t ninst;
    wanted *want;
    size_t nwant;
    crash_track *crashes;
    size_t ncrashes;
    bool assigned; /* reading __pipelines (in a cluster it may not exist at first) */
    /* In a cluster: the nodes that answered the last probe, by id. */
    sl_client *admin;
    int32_t live[MAX_NODES];
    size_t nlive;
    int64_t next_probe_ms;
};

/* ---- __pipelines ---- */

static void free_wanted(wanted *w) {
    free(w->name);
    free(w->origin);
    free(w->source);
    free(w->paused);
    free(w->restart);
    free(w->applied_source);
}

/* Whether 'stage' is in the ",a,b," list. */
static bool listed(const char *list, const char *stage) {
    size_t n = strlen(stage);
    for (const char *c = list ? strstr(list, stage) : NULL; c; c = strstr(c + 1, stage))
        if ((c == list || c[-1] == ',') && (c[n] == ',' || c[n] == '\0'))
            return true;
    return false;
}

static wanted *find_wanted(sl_supervisor *s, const char *name) {
    for (size_t i = 0; i < s->nwant; i++)
        if (strcmp(s->want[i].name, name) == 0)
            return &s->want[i];
    return NULL;
}

static char *dup_n(const void *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p ? p : "", n);
        d[n] = '\0';
    }
    return d;
}

static void take_record(sl_supervisor *s, const sl_message *m) {
    if (m->key == NULL)
        return;
    char *name = dup_n(m->key, m->key_len);
    if (name == NULL)
        return;
    wanted *w = find_wanted(s, name);
    if (m->value == NULL) { /* stopped */
        if (w) {
            free_wanted(w);
            *w = s->want[--s->nwant];
        }
        free(name);
        return;
    }
    if (w == NULL) {
        wanted *nw = realloc(s->want, (s->nwant + 1) * sizeof(*nw));
        if (nw == NULL) {
            free(name);
            return;
        }
        s->want = nw;
        w = &nw[s->nwant++];
        *w = (wanted){.name = name, .version = -1, .applied = -1};
    } else {
        free(name);
        free(w->origin);
        free(w->source);
        free(w->paused);
        free(w->restart);
    }
    const char *origin = "", *paused = "", *restart = "";
    size_t olen = 0, plen = 0, rlen = 0;
    for (size_t h = 0; h < m->nheaders; h++) {
        const sl_header *hd = &m->headers[h];
        if (hd->value == NULL)
            continue;
        if (strcmp(hd->key, SL_PIPELINE_FILE_HEADER) == 0)
            origin = hd->value, olen = hd->value_len;
        else if (strcmp(hd->key, SL_PIPELINE_PAUSED_HEADER) == 0)
            paused = hd->value, plen = hd->value_len;
        else if (strcmp(hd->key, SL_PIPELINE_RESTART_HEADER) == 0)
            restart = hd->value, rlen = hd->value_len;
    }
    /* A deploy restarts everything (its scripts may have changed even if its text has not);
     * pause, resume and restart records carry sluice.restart, even empty. */
    w->control = false;
    for (size_t h = 0; h < m->nheaders; h++)
        w->control |= strcmp(m->headers[h].key, SL_PIPELINE_RESTART_HEADER) == 0;
    w->version = m->offset;
    w->origin = dup_n(origin, olen);
    w->source = dup_n(m->value, m->value_len);
    w->paused = dup_n(paused, plen);
    w->restart = dup_n(restart, rlen);
}

/* ---- children ---- */

static void publish_as(sl_supervisor *s, const char *pipeline, const char *stage, int index,
                       int restarts, const char *last, const char *state) {
    char key[512], value[1024];
    snprintf(key, sizeof(key), "%s/%s/%d", pipeline, stage, index);
    int n = snprintf(value, sizeof(value),
                     "{\"state\":\"%s\",\"node\":%d,\"pid\":0,\"restarts\":%d,\"updated_ms\":%" PRId64
                     ",\"last_error\":\"",
                     state, s->conf.node_id, restarts, sl_clock_wall_ms());
    for (const char *c = last; *c && n < (int)sizeof(value) - 8; c++)
        if (*c != '"' && *c != '\\' && (unsigned char)*c >= 0x20)
            value[n++] = *c;
    n += snprintf(value + n, sizeof(value) - (size_t)n, "\"}");
    sl_produce_record r = {.topic = SL_PIPELINE_STATUS_TOPIC, .partition = 0, .key = key,
                           .key_len = strlen(key), .value = value, .value_len = (size_t)n};
    sl_producer_send(s->producer, &r);
}

static void publish(sl_supervisor *s, const instance *in, const char *state) {
    publish_as(s, in->pipeline, in->stage, in->index, in->restarts, in->last_exit, state);
}

static int spawn(sl_supervisor *s, instance *in) {
    char index[16], restarts[16], version[24];
    snprintf(index, sizeof(index), "%d", in->index);
    snprintf(version, sizeof(version), "%" PRId64, in->version);
    snprintf(restarts, sizeof(restarts), "%d", in->restarts);
    const char *argv[32];
    int k = 0;
    char local[PATH_MAX + 64], node[16];
    snprintf(node, sizeof(node), "%d", s->conf.node_id);
    argv[k++] = s->exe;
    argv[k++] = "--run-task";
    argv[k++] = "--node-id";
    argv[k++] = node;
    argv[k++] = "--broker";
    argv[k++] = s->conf.ipc ? s->conf.ipc : s->conf.broker;
    if (s->conf.ipc) { /* partitions this node leads are read and written over ipc:// too */
        snprintf(local, sizeof(local), "%d=%s", s->conf.node_id, s->conf.ipc);
        argv[k++] = "--local-broker";
        argv[k++] = local;
    }
    argv[k++] = "--data-dir";
    argv[k++] = s->conf.data_dir;
    argv[k++] = "--pipeline-file";
    argv[k++] = in->origin;
    argv[k++] = "--pipeline-source";
    argv[k++] = in->source_path;
    argv[k++] = "--stage";
    argv[k++] = in->stage;
    argv[k++] = "--instance";
    argv[k++] = index;
    argv[k++] = "--restarts";
    argv[k++] = restarts;
    argv[k++] = "--version";
    argv[k++] = version;
    argv[k++] = "--log-level";
    argv[k++] = s->conf.log_level ? s->conf.log_level : "info";
    if (s->conf.plugin_path) {
        argv[k++] = "--plugin-path";
        argv[k++] = s->conf.plugin_path;
    }
    argv[k] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(in->last_exit, sizeof(in->last_exit), "cannot fork: %s", strerror(errno));
        return SL_EIO;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* sluiced blocks its stop signals */
        execv(s->exe, (char *const *)argv);
        _exit(127);
    }
    in->pid = pid;
    in->started_ms = sl_clock_mono_ms();
    return 0;
}

static void inflight_path(const sl_supervisor *s, const instance *in, char *buf, size_t len) {
    sl_task_inflight_path(s->conf.data_dir, in->pipeline, in->stage, in->index, in->version, buf,
                          len);
}

/* The instance's in-flight record, if a plugin call is under way. */
static bool read_inflight(const sl_supervisor *s, const instance *in, sl_task_inflight *f) {
    char path[PATH_MAX];
    inflight_path(s, in, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, f, sizeof(*f));
    close(fd);
    f->topic[sizeof(f->topic) - 1] = '\0';
    return n == (ssize_t)sizeof(*f) && f->active;
}

/* Counts a death during a plugin call against the record it was processing. Returns whether
 * there was such a record. */
static bool track_crash(sl_supervisor *s, const instance *in) {
    sl_task_inflight f;
    if (!read_inflight(s, in, &f))
        return false; /* it died between records: nothing to blame */
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", in->pipeline, in->stage);
    crash_track *c = NULL;
    for (size_t i = 0; i < s->ncrashes && !c; i++)
        if (s->crashes[i].partition == f.partition && s->crashes[i].offset == f.offset &&
            strcmp(s->crashes[i].topic, f.topic) == 0 && strcmp(s->crashes[i].key, key) == 0)
            c = &s->crashes[i];
    if (c == NULL) {
        if (s->ncrashes == MAX_CRASH_TRACKS) { /* forget the oldest */
            free(s->crashes[0].key);
            memmove(s->crashes, s->crashes + 1, (s->ncrashes - 1) * sizeof(*s->crashes));
            s->ncrashes--;
        }
        crash_track *nc = realloc(s->crashes, (s->ncrashes + 1) * sizeof(*nc));
        if (nc == NULL)
            return true;
        s->crashes = nc;
        c = &nc[s->ncrashes];
        *c = (crash_track){.key = strdup(key), .partition = f.partition, .offset = f.offset};
        if (c->key == NULL)
            return true;
        snprintf(c->topic, sizeof(c->topic), "%s", f.topic);
        s->ncrashes++;
    }
    c->count++;
    sl_warn("pipeline", "%s/%d died on record %s-%d@%" PRId64 " (%d time%s)", key, in->index,
            f.topic, f.partition, f.offset, c->count, c->count == 1 ? "" : "s");
    if (c->count < POISON_CRASHES)
        return true;
    char poison[PATH_MAX], line[400];
    sl_task_poison_path(s->conf.data_dir, in->pipeline, in->stage, poison, sizeof(poison));
    int len = snprintf(line, sizeof(line), "%s %d %" PRId64 "\n", f.topic, f.partition,
                       f.offset);
    int fd = open(poison, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (sl_fs_write_all(fd, line, (size_t)len) == 0)
            sl_error("pipeline", "%s: record %s-%d@%" PRId64 " crashed the stage %d times: it "
                     "goes to the dead-letter topic", key, f.topic, f.partition, f.offset,
                     POISON_CRASHES);
        close(fd);
    }
    free(c->key);
    *c = s->crashes[--s->ncrashes];
    return true;
}

static void describe_exit(int status, char *buf, size_t len) {
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d%s", WEXITSTATUS(status),
                 WEXITSTATUS(status) == 2 ? " (configuration refused)" : "");
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended with status %d", status);
}

static void free_instance(instance *in) {
    free(in->pipeline);
    free(in->stage);
    free(in->origin);
    free(in->source_path);
}

static void reap(sl_supervisor *s) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < s->ninst; i++) {
            instance *in = &s->inst[i];
            if (in->pid != pid)
                continue;
            in->pid = 0;
            if (in->stopping) {
                sl_info("pipeline", "%s/%s/%d (version %" PRId64 ") stopped", in->pipeline,
                        in->stage, in->index, in->version);
                char path[PATH_MAX];
                inflight_path(s, in, path, sizeof(path));
                unlink(path);
                const wanted *w = find_wanted(s, in->pipeline);
                if (w && listed(w->paused, in->stage))
                    publish(s, in, "paused"); /* after the instance's own "stopped" */
                free_instance(in);
                s->inst[i] = s->inst[--s->ninst];
                break;
            }
            char why[200];
            describe_exit(status, why, sizeof(why));
            if (WIFEXITED(status) && WEXITSTATUS(status) == SL_TASK_EXIT_STOPPED) {
                /* errors_tolerance = "none": it stays down until redeployed. */
                snprintf(in->last_exit, sizeof(in->last_exit), "stopped on a failed record "
                         "(errors_tolerance is \"none\"); redeploy to start it again");
                sl_error("pipeline", "%s/%s/%d %s", in->pipeline, in->stage, in->index,
                         in->last_exit);
                in->start_at_ms = INT64_MAX;
                publish(s, in, "failed");
                break;
            }
            /* Any death inside a plugin call counts: under a sanitizer a crash is an exit. A
             * record to blame is dealt with by the poison count, so the instance comes back
             * at once; otherwise (init, the environment) the wait doubles. */
            bool blamed = track_crash(s, in);
            int64_t ran = sl_clock_mono_ms() - in->started_ms;
            in->backoff_ms = blamed || ran >= HEALTHY_AFTER_MS || in->backoff_ms == 0
                                 ? BACKOFF_FIRST_MS
                                 : (in->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                                        : in->backoff_ms * 2);
            in->start_at_ms = sl_clock_mono_ms() + in->backoff_ms;
            in->restarts++;
            /* Logged once per distinct cause: a plugin failing in a loop does not flood. */
            enum sl_log_level level = strcmp(why, in->last_exit) ? SL_LOG_WARN : SL_LOG_DEBUG;
            sl_log(level, "pipeline", "%s/%s/%d %s; restarting in %.1f s (restart %d)",
                   in->pipeline, in->stage, in->index, why, (double)in->backoff_ms / 1000,
                   in->restarts);
            snprintf(in->last_exit, sizeof(in->last_exit), "%s", why);
            publish(s, in, "restarting");
            break;
        }
    }
}

/* Stops the instances of 'pipeline' (NULL: all), of 'stage' only when not NULL. */
/* Stops the instances of 'pipeline' (NULL: every one), of 'stage' (NULL: all), numbered 'index'
 * (-1: all). */
static void stop_instances(sl_supervisor *s, const char *pipeline, const char *stage, int index) {
    for (size_t i = 0; i < s->ninst; i++) {
        instance *in = &s->inst[i];
        if (in->stopping || (pipeline && strcmp(in->pipeline, pipeline) != 0) ||
            (stage && strcmp(in->stage, stage) != 0) || (index >= 0 && in->index != index))
            continue;
        in->stopping = true;
        in->kill_at_ms = sl_clock_mono_ms() + STOP_GRACE_MS;
        if (in->pid > 0)
            kill(in->pid, SIGTERM);
    }
    /* Instances never started or waiting for a restart have nothing to wait for. */
    for (size_t i = 0; i < s->ninst;) {
        if (s->inst[i].stopping && s->inst[i].pid == 0) {
            free_instance(&s->inst[i]);
            s->inst[i] = s->inst[--s->ninst];
        } else {
            i++;
        }
    }
}

static bool stage_running(const sl_supervisor *s, const char *pipeline, const char *stage) {
    for (size_t i = 0; i < s->ninst; i++)
        if (!s->inst[i].stopping && strcmp(s->inst[i].pipeline, pipeline) == 0 &&
            strcmp(s->inst[i].stage, stage) == 0)
            return true;
    return false;
}

static bool instance_running(const sl_supervisor *s, const char *pipeline, const char *stage,
                             int index) {
    for (size_t i = 0; i < s->ninst; i++)
        if (!s->inst[i].stopping && s->inst[i].index == index &&
            strcmp(s->inst[i].pipeline, pipeline) == 0 && strcmp(s->inst[i].stage, stage) == 0)
            return true;
    return false;
}

/* Whether instance 'index' of a stage runs on this node: always outside a cluster; in one, on
 * the (hash(pipeline/stage) + index)-th of the nodes that answer, so a stage's instances spread
 * over the nodes and every node computes the same placement. */
static bool placed_here(const sl_supervisor *s, const char *pipeline, const char *stage,
                        int index) {
    if (!s->conf.clustered)
        return true;
    if (s->nlive == 0)
        return false;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = pipeline; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *c = stage; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    return s->live[(h + (uint32_t)index) % s->nlive] == s->conf.node_id;
}

/* Adds the instances placed here of the stages not paused (of 'only' alone when not NULL) that
 * do not run yet. */
static int add_instances(sl_supervisor *s, const wanted *w, const sl_pipeline *p,
                         const char *source_path, const char *only) {
    for (size_t i = 0; i < p->nstages; i++)
        for (int k = 0; k < p->stages[i].instances; k++) {
            if (!placed_here(s, p->name, p->stages[i].name, k) ||
                instance_running(s, p->name, p->stages[i].name, k))
                continue;
            if (listed(w->paused, p->stages[i].name)) {
                publish_as(s, p->name, p->stages[i].name, k, 0, "", "paused");
                continue;
            }
            if (only && strcmp(only, p->stages[i].name) != 0)
                continue;
            instance *ni = realloc(s->inst, (s->ninst + 1) * sizeof(*ni));
            if (ni == NULL)
                return SL_ENOMEM;
            s->inst = ni;
            instance *in = &ni[s->ninst];
            *in = (instance){.pipeline = strdup(p->name), .stage = strdup(p->stages[i].name),
                             .index = k, .version = w->version, .origin = strdup(w->origin),
                             .source_path = strdup(source_path),
                             .start_at_ms = sl_clock_mono_ms(),
                             .call_timeout_ms = p->stages[i].call_timeout_ms};
            if (!in->pipeline || !in->stage || !in->origin || !in->source_path) {
                free_instance(in);
                return SL_ENOMEM;
            }
            s->ninst++;
        }
    return 0;
}

static void apply(sl_supervisor *s, wanted *w) {
    bool replace = w->replace && w->applied == w->version;
    w->replace = false;
    w->applied = w->version;
    char dir[PATH_MAX], path[PATH_MAX], err[2048], pathbuf[8192];
    snprintf(dir, sizeof(dir), "%s/pipelines/deployed", s->conf.data_dir);
    snprintf(path, sizeof(path), "%.3000s/%.200s.%" PRId64 ".lua", dir, w->name, w->version);
    if (sl_fs_mkdirs(dir) != 0 ||
        sl_fs_write_atomic(path, w->source, strlen(w->source)) != 0) {
        sl_error("pipeline", "cannot write %s: pipeline %s not started", path, w->name);
        return;
    }
    sl_pipeline *p;
    if (sl_pipeline_load(w->origin, w->source,
                         sl_plugin_search_path(s->conf.plugin_path, pathbuf, sizeof(pathbuf)),
                         &p, err, sizeof(err)) != 0) {
        sl_error("pipeline", "pipeline %s version %" PRId64 " refused: %s", w->name,
                 w->version, err);
        return;
    }
    if (replace) {
        /* Only where instances run changed: those placed elsewhere now stop, those placed
         * here now start, the others go on. */
        for (size_t i = 0; i < s->ninst; i++) {
            instance *in = &s->inst[i];
            if (in->stopping || strcmp(in->pipeline, w->name) != 0 ||
                placed_here(s, in->pipeline, in->stage, in->index))
                continue;
            sl_info("pipeline", "%s/%s/%d is placed on another node now: stopping it here",
                    in->pipeline, in->stage, in->index);
            stop_instances(s, in->pipeline, in->stage, in->index);
            i = (size_t)-1; /* the array may have changed: look again */
        }
        if (add_instances(s, w, p, path, NULL) != 0)
            sl_error("pipeline", "pipeline %s: out of memory starting its instances", w->name);
    } else if (w->control && w->applied_source && strcmp(w->applied_source, w->source) == 0) {
        /* The same text: a pause, a resume or a restart of some stages, the others untouched. */
        for (size_t i = 0; i < p->nstages; i++) {
            const char *stage = p->stages[i].name;
            bool paused = listed(w->paused, stage), running = stage_running(s, p->name, stage);
            bool restart = strcmp(w->restart, stage) == 0;
            if (running && (paused || restart)) {
                sl_info("pipeline", "pipeline %s: %s stage %s", p->name,
                        paused ? "pausing" : "restarting", stage);
                stop_instances(s, p->name, stage, -1);
                running = false;
            }
            if (!running && add_instances(s, w, p, path, stage) != 0)
                sl_error("pipeline", "pipeline %s: out of memory starting %s", p->name, stage);
        }
    } else {
        stop_instances(s, w->name, NULL, -1); /* the old version commits and leaves as the new
                                           * one joins */
        size_t stages = p->nstages;
        int total = 0;
        for (size_t i = 0; i < p->nstages; i++)
            total += p->stages[i].instances;
        if (add_instances(s, w, p, path, NULL) != 0)
            sl_error("pipeline", "pipeline %s: out of memory starting its instances", w->name);
        else
            sl_info("pipeline", "pipeline %s version %" PRId64 " from %s: %zu stage%s, %d "
                    "instance%s", w->name, w->version, w->origin, stages,
                    stages == 1 ? "" : "s", total, total == 1 ? "" : "s");
    }
    free(w->applied_source);
    w->applied_source = strdup(w->source);
    sl_pipeline_free(p);
}

static void reconcile(sl_supervisor *s) {
    for (size_t i = 0; i < s->nwant; i++)
        if (s->want[i].applied != s->want[i].version || s->want[i].replace)
            apply(s, &s->want[i]);
    for (size_t i = 0; i < s->ninst; i++)
        if (!s->inst[i].stopping && find_wanted(s, s->inst[i].pipeline) == NULL) {
            sl_info("pipeline", "pipeline %s stopped: stopping its instances",
                    s->inst[i].pipeline);
            stop_instances(s, s->inst[i].pipeline, NULL, -1);
            i = (size_t)-1; /* the array changed: look again */
        }
}

static void tend(sl_supervisor *s) {
    int64_t now = sl_clock_mono_ms();
    for (size_t i = 0; i < s->ninst; i++) {
        instance *in = &s->inst[i];
        if (in->stopping && in->pid > 0 && now >= in->kill_at_ms) {
            sl_warn("pipeline", "%s/%s/%d did not stop in %d s: killing it", in->pipeline,
                    in->stage, in->index, STOP_GRACE_MS / 1000);
            kill(in->pid, SIGKILL);
            in->kill_at_ms = INT64_MAX;
        } else if (!in->stopping && in->pid > 0) {
            sl_task_inflight f;
            /* A call that never returns (an endless loop in C, a hung library) holds its
             * partitions forever: kill it; the crash counts towards the poison limit. */
            if (read_inflight(s, in, &f) && now - f.started_ms > in->call_timeout_ms) {
                sl_warn("pipeline", "%s/%s/%d stuck for %.1f s on record %s-%d@%" PRId64
                        ": killing it", in->pipeline, in->stage, in->index,
                        (double)(now - f.started_ms) / 1000, f.topic, f.partition, f.offset);
                kill(in->pid, SIGKILL);
            }
        } else if (!in->stopping && in->pid == 0 && now >= in->start_at_ms) {
            if (spawn(s, in) != 0) {
                in->start_at_ms = now + BACKOFF_MAX_MS;
                sl_error("pipeline", "%s/%s/%d: %s", in->pipeline, in->stage, in->index,
                         in->last_exit);
            }
        }
    }
}

/* ---- placement in a cluster ---- */

/* Whether something accepts connections at 'url' (tcp://HOST:PORT) within PROBE_TIMEOUT_MS. */
static bool answers(const char *url) {
    char host[256];
    const char *hp = url + strlen("tcp://"), *colon = strrchr(url, ':');
    if (strncmp(url, "tcp://", 6) != 0 || colon == NULL || colon < hp ||
        (size_t)(colon - hp) >= sizeof(host))
        return false;
    bool bracketed = hp[0] == '[' && colon > hp + 1 && colon[-1] == ']';
    snprintf(host, sizeof(host), "%.*s", (int)(colon - hp) - (bracketed ? 2 : 0),
             hp + (bracketed ? 1 : 0));
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return false;
    bool ok = false;
    for (struct addrinfo *a = ai; a && !ok; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            ok = true;
        } else if (errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t len = sizeof(err);
            ok = poll(&p, 1, PROBE_TIMEOUT_MS) == 1 &&
                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

static int cmp_ids(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Which registered nodes answer now. True when that changed: every pipeline's instances are
 * then placed again. */
static bool probe_nodes(sl_supervisor *s) {
    sl_cluster_info ci;
    if (sl_cluster_describe(s->admin, &ci) != 0)
        return false;
    int32_t live[MAX_NODES];
    size_t n = 0;
    for (size_t i = 0; i < ci.nnodes && n < MAX_NODES; i++)
        if (ci.nodes[i].node_id == s->conf.node_id || answers(ci.nodes[i].url))
            live[n++] = ci.nodes[i].node_id;
    sl_cluster_info_free(&ci);
    qsort(live, n, sizeof(*live), cmp_ids);
    if (n == s->nlive && memcmp(live, s->live, n * sizeof(*live)) == 0)
        return false;
    memcpy(s->live, live, n * sizeof(*live));
    s->nlive = n;
    char list[MAX_NODES * 12] = "";
    for (size_t i = 0, off = 0; i < n && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%d", i ? ", " : "",
                                (int)live[i]);
    sl_info("pipeline", "nodes answering: %s; pipeline instances are placed over them", list);
    for (size_t i = 0; i < s->nwant; i++)
        s->want[i].replace = true;
    return true;
}

static void *run(void *arg) {
    sl_supervisor *s = arg;
    bool dirty = false;
    while (!s->stop) {
        if (!s->assigned) {
            /* In a cluster, __pipelines is created once a controller is elected. */
            s->assigned = sl_consumer_assign(s->consumer, SL_PIPELINES_TOPIC, 0,
                                             SL_OFFSET_BEGINNING) == 0;
            if (!s->assigned) {
                struct timespec ts = {0, 200 * 1000000L};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        if (s->conf.clustered && sl_clock_mono_ms() >= s->next_probe_ms) {
            s->next_probe_ms = sl_clock_mono_ms() + PROBE_INTERVAL_MS;
            dirty |= probe_nodes(s);
        }
        const sl_message *m;
        int rc = sl_consumer_poll(s->consumer, 200, &m);
        if (rc == 0) {
            take_record(s, m);
            dirty = true;
        }
        /* Act once caught up, so a restart does not run every old version in turn. */
        if (dirty && rc != 0) {
            reconcile(s);
            dirty = false;
        }
        reap(s);
        tend(s);
    }
    stop_instances(s, NULL, NULL, -1);
    int64_t deadline = sl_clock_mono_ms() + STOP_GRACE_MS;
    while (s->ninst > 0 && sl_clock_mono_ms() < deadline) {
        reap(s);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < s->ninst; i++)
        if (s->inst[i].pid > 0) {
            kill(s->inst[i].pid, SIGKILL);
            waitpid(s->inst[i].pid, NULL, 0);
        }
    return NULL;
}

int sl_supervisor_start(const sl_supervisor_conf *conf, sl_supervisor **out) {
    sl_supervisor *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SL_ENOMEM;
    s->conf = *conf;
    ssize_t n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
    if (n <= 0) {
        free(s);
        return SL_EIO;
    }
    s->exe[n] = '\0';
    char err[512];
    int rc = SL_ENOMEM;
    for (int which = 0; which < (conf->clustered ? 3 : 2); which++) {
        sl_conf *c = sl_conf_new();
        rc = c ? sl_conf_set(c, "bootstrap.servers", conf->broker, err, sizeof(err)) : SL_ENOMEM;
        if (rc == 0)
            rc = sl_conf_set(c, "client.id", "sluice-supervisor", err, sizeof(err));
        if (rc == 0)
            rc = which == 2   ? sl_client_new(c, &s->admin, err, sizeof(err))
                 : which == 1 ? sl_producer_new(c, &s->producer, err, sizeof(err))
                              : sl_consumer_new(c, &s->consumer, err, sizeof(err));
        if (rc) {
            sl_conf_destroy(c);
            break;
        }
    }
    if (rc == 0)
        rc = pthread_create(&s->thread, NULL, run, s) == 0 ? 0 : SL_ENOMEM;
    if (rc) {
        sl_error("pipeline", "cannot start the pipeline supervisor: %s", sl_strerror(rc));
        if (s->consumer)
            sl_consumer_destroy(s->consumer);
        if (s->producer)
            sl_producer_destroy(s->producer);
        if (s->admin)
            sl_client_destroy(s->admin);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sl_supervisor_stop(sl_supervisor *s) {
    if (s == NULL)
        return;
    s->stop = true;
    pthread_join(s->thread, NULL);
    sl_consumer_destroy(s->consumer);
    sl_producer_flush(s->producer, 2000);
    sl_producer_destroy(s->producer);
    if (s->admin)
        sl_client_destroy(s->admin);
    for (size_t i = 0; i < s->ninst; i++)
        free_instance(&s->inst[i]);
    free(s->inst);
    for (size_t i = 0; i < s->nwant; i++)
        free_wanted(&s->want[i]);
    free(s->want);
    for (size_t i = 0; i < s->ncrashes; i++)
        free(s->crashes[i].key);
    free(s->crashes);
    free(s);
}
