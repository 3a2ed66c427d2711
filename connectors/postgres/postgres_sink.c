/* postgres_sink: writes records into a PostgreSQL table, keyed: upsert (the row of a key holds
 * its latest value; a null value deletes it) or plain insert, in batches of one transaction.
 *
 * A batch is written when it is full and on every flush, which the runtime calls before it
 * commits the input offsets: a committed record is in the table. A lost connection (the server
 * restarting) is retried, reconnecting with backoff, for up to retry_timeout_ms; after that the
 * flush fails and the instance restarts from its last commit. A batch the server refuses for
 * its data is written again record by record, and a record refused alone is reported errant
 * (dead-letter topic, or the stage stops, as errors_tolerance says). Upserting the same records
 * twice leaves the same rows, so the at-least-once replay after a crash is harmless.
 *
 * Config (defaults): conninfo (required, libpq syntax), table (required), key_column ("key"),
 * value_column ("value"), mode ("upsert" or "insert"), batch_size (500), create ("true":
 * CREATE TABLE IF NOT EXISTS with a text key and value), retry_timeout_ms (60000). */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/plugin.h"

typedef struct row {
    sl_plugin_record rec; /* pointers into the copies below, for errant reports */
    char *topic, *key, *value;
} row;

typedef struct pgsink {
    const sl_plugin_host *host;
    sl_plugin_ctx *ctx;
    PGconn *conn;
    const char *conninfo;
    char table[200], key_col[100], value_col[100];
    bool upsert, create;
    long batch_size, retry_timeout_ms;
    char upsert_sql[1024], delete_sql[1024], insert_sql[1024];
    row *rows;
    size_t n;
} pgsink;

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A quoted SQL identifier ("orders"), or "" when it holds a quote. */
static void ident(char *out, size_t len, const char *name) {
    if (strchr(name, '"') || snprintf(out, len, "\"%s\"", name) >= (int)len)
        out[0] = '\0';
}

static bool connected(pgsink *s) {
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return true;
    if (s->conn)
        PQfinish(s->conn);
    s->conn = PQconnectdb(s->conninfo);
    if (PQstatus(s->conn) != CONNECTION_OK)
        return false;
    if (s->create) {
        char sql[600];
        snprintf(sql, sizeof(sql), "CREATE TABLE IF NOT EXISTS %s (%s text PRIMARY KEY, %s text)",
                 s->table, s->key_col, s->value_col);
        PGresult *r = PQexec(s->conn, sql);
        PQclear(r);
    }
    return true;
}

/* Runs one statement for a row; returns the result status. */
static ExecStatusType exec_row(pgsink *s, const row *w, char *why, size_t whylen) {
    const char *params[2] = {w->key, w->value};
    const char *sql = !s->upsert ? s->insert_sql : w->value ? s->upsert_sql : s->delete_sql;
    int nparams = !s->upsert || w->value ? 2 : 1;
    PGresult *r = PQexecParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK)
        snprintf(why, whylen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return st;
}

static bool simple(pgsink *s, const char *sql) {
    PGresult *r = PQexec(s->conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* Writes rows[from..to) in one transaction. 0: written; 1: refused for its data; -1: the
 * connection is gone. */
static int write_rows(pgsink *s, size_t from, size_t to, char *why, size_t whylen) {
    if (!connected(s)) {
        snprintf(why, whylen, "%s", PQerrorMessage(s->conn));
        return -1;
    }
    if (!simple(s, "BEGIN")) {
        snprintf(why, whylen, "%s", PQerrorMessage(s->conn));
        return -1;
    }
    for (size_t i = from; i < to; i++)
        if (exec_row(s, &s->rows[i], why, whylen) != PGRES_COMMAND_OK) {
            bool gone = PQstatus(s->conn) != CONNECTION_OK;
            if (!gone)
                simple(s, "ROLLBACK");
            return gone ? -1 : 1;
        }
    if (!simple(s, "COMMIT")) {
        snprintf(why, whylen, "%s", PQerrorMessage(s->conn));
        return PQstatus(s->conn) != CONNECTION_OK ? -1 : 1;
    }
    return 0;
}

/* write_rows, retrying a lost connection; -1 once retry_timeout_ms has passed. */
static int write_retrying(pgsink *s, size_t from, size_t to, char *why, size_t whylen) {
    long waited = 0, backoff = 100;
    int rc;
    while ((rc = write_rows(s, from, to, why, whylen)) < 0 && waited < s->retry_timeout_ms) {
        s->host->log(s->ctx, SL_PLUGIN_LOG_DEBUG, "PostgreSQL unavailable (%s): retrying", why);
        nap(backoff);
        waited += backoff;
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    return rc;
}

static void drop_rows(pgsink *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->rows[i].topic);
        free(s->rows[i].key);
        free(s->rows[i].value);
    }
    s->n = 0;
}

static int write_batch(pgsink *s) {
    if (s->n == 0)
        return SL_OK;
    char why[512] = "";
    int rc = write_retrying(s, 0, s->n, why, sizeof(why));
    for (size_t i = 0; rc > 0 && i <= s->n; i++) { /* refused: one by one */
        if (i == s->n) {
            rc = 0;
            break;
        }
        int one = write_retrying(s, i, i + 1, why, sizeof(why));
        if (one < 0)
            rc = -1;
        else if (one > 0 && s->host->report_errant(s->ctx, &s->rows[i].rec, why) != SL_OK)
            rc = -2;
    }
    if (rc == 0) {
        drop_rows(s);
        return SL_OK;
    }
    s->host->set_error(s->ctx, rc == -1 ? why : "the stage stops");
    return SL_EIO;
}

static int sink_put(void *state, const sl_plugin_record *rec) {
    pgsink *s = state;
    if (rec->key == NULL && s->upsert) {
        s->host->set_error(s->ctx, "a record without a key cannot be upserted");
        return SL_EREJECT;
    }
    if (s->n == (size_t)s->batch_size) {
        int rc = write_batch(s);
        if (rc)
            return SL_ERETRY; /* this record is not taken yet */
    }
    row *w = &s->rows[s->n];
    memset(w, 0, sizeof(*w));
    w->topic = strdup(rec->topic ? rec->topic : "");
    w->key = rec->key ? strndup(rec->key, rec->key_len) : NULL;
    w->value = rec->value ? strndup(rec->value, rec->value_len) : NULL;
    if (w->topic == NULL || (rec->key && !w->key) || (rec->value && !w->value))
        return SL_ENOMEM;
    w->rec = (sl_plugin_record){w->topic, rec->partition, rec->offset, rec->timestamp, w->key,
                                rec->key_len, w->value, rec->value_len, NULL, 0};
    s->n++;
    return SL_OK;
}

static int sink_flush(void *state) {
    return write_batch(state);
}

static void sink_close(void *state) {
    pgsink *s = state;
    drop_rows(s);
    free(s->rows);
    if (s->conn)
        PQfinish(s->conn);
    free(s);
}

static int sink_init(const sl_plugin_host *host, sl_plugin_ctx *ctx, void **state) {
    const char *conninfo = host->config(ctx, "conninfo"), *table = host->config(ctx, "table");
    const char *v;
    if (conninfo == NULL || table == NULL) {
        host->set_error(ctx, "config 'conninfo' and 'table' are required");
        return SL_EBADCONFIG;
    }
    pgsink *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SL_ENOMEM;
    s->host = host;
    s->ctx = ctx;
    s->conninfo = conninfo;
    s->upsert = !((v = host->config(ctx, "mode")) && strcmp(v, "insert") == 0);
    s->create = !((v = host->config(ctx, "create")) && strcmp(v, "false") == 0);
    s->batch_size = (v = host->config(ctx, "batch_size")) ? atol(v) : 500;
    s->retry_timeout_ms = (v = host->config(ctx, "retry_timeout_ms")) ? atol(v) : 60000;
    if (s->batch_size < 1)
        s->batch_size = 1;
    ident(s->table, sizeof(s->table), table);
    ident(s->key_col, sizeof(s->key_col), (v = host->config(ctx, "key_column")) ? v : "key");
    ident(s->value_col, sizeof(s->value_col),
          (v = host->config(ctx, "value_column")) ? v : "value");
    if (!s->table[0] || !s->key_col[0] || !s->value_col[0] ||
        (s->rows = calloc((size_t)s->batch_size, sizeof(*s->rows))) == NULL) {
        host->set_error(ctx, "table and column names must not hold '\"'");
        free(s);
        return SL_EBADCONFIG;
    }
    snprintf(s->upsert_sql, sizeof(s->upsert_sql),
             "INSERT INTO %s (%s, %s) VALUES ($1, $2) ON CONFLICT (%s) DO UPDATE SET %s = "
             "EXCLUDED.%s", s->table, s->key_col, s->value_col, s->key_col, s->value_col,
             s->value_col);
    snprintf(s->delete_sql, sizeof(s->delete_sql), "DELETE FROM %s WHERE %s = $1", s->table,
             s->key_col);
    snprintf(s->insert_sql, sizeof(s->insert_sql), "INSERT INTO %s (%s, %s) VALUES ($1, $2)",
             s->table, s->key_col, s->value_col);
    if (!connected(s)) /* not fatal: the server may come later; writes retry */
        host->log(ctx, SL_PLUGIN_LOG_WARN, "PostgreSQL not reachable yet: %s",
                  PQerrorMessage(s->conn));
    *state = s;
    return SL_OK;
}

SL_PLUGIN_DEFINE(.kind = SL_PLUGIN_SINK, .name = "postgres_sink", .version = "1.0.0",
                 .description = "upserts or inserts records into a PostgreSQL table",
                 .init = sink_init, .process = sink_put, .flush = sink_flush,
                 .close = sink_close)
