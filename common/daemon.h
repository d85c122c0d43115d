/* daemon: the skeleton every weft process runs on (Postfix style): arguments,
 * config table, logging, signals, the once-a-second cron timer and the event
 * loop. A process's main.c declares its table and callbacks and calls
 * daemon_main().
 *
 * Every process config struct starts with daemon_common_t so the skeleton can
 * find the log settings; tables include DAEMON_COMMON_OPTIONS(struct type). */
#ifndef WEFT_DAEMON_H
#define WEFT_DAEMON_H
#include <stddef.h>
#include <event2/event.h>
#include "config.h"

typedef struct daemon_common {
    char *log_target;  /* "stderr", "syslog", "file:/path" */
    char *log_level;   /* debug, info, notice, warn, error */
    char *metrics_listen; /* addresses of the /metrics HTTP listener, "" = none */
} daemon_common_t;

#define DAEMON_COMMON_OPTIONS(type)                                                     \
    {"log.target", CFG_STRING, "stderr", 0, 0, 1, offsetof(type, common.log_target),    \
     NULL, "Where log lines go: stderr, syslog, or file:/path (a file that cannot be opened stops the start)."}, \
    {"log.level", CFG_STRING, "info", 0, 0, 1, offsetof(type, common.log_level), NULL,  \
     "Lowest level logged: debug, info, notice, warn or error (another word stops the start)."},      \
    {"metrics.listen", CFG_STRING, "", 0, 0, 0, offsetof(type, common.metrics_listen), NULL,           \
     "Addresses (host:port, space separated) of the HTTP listener serving Prometheus metrics at /metrics; empty: none."}

typedef struct daemon_spec {
    const char *ident;             /* process name for logs */
    const char *default_config;    /* path used when -c is not given */
    const cfg_option_t *table;
    size_t config_size;            /* sizeof the process config struct */
    /* Called once the config is loaded and logging is up; 0 or -1 (exit 1). */
    int (*start)(struct event_base *base, void *config);
    /* SIGTERM / SIGINT: begin a graceful stop; call daemon_exit() when drained. */
    void (*stop)(void);
    /* SIGHUP with a freshly loaded config (the old one stays valid meanwhile). */
    void (*reload)(void *config);
    /* Registers the process's metrics (metrics.h) before start; may be NULL.
     * The process_* metrics and the listener (metrics.listen) are the
     * skeleton's. */
    void (*metrics)(void);
    /* Once a second. */
    void (*cron)(void);
    /* At exit, after the loop ended: free everything (valgrind-clean). */
    void (*cleanup)(void);
    /* Frees what the table's CFG_SECTION parsers allocated, for a config that
     * is dropped without running (-t, -d, a load or reload that failed):
     * cfg_free does not know those structures. NULL if there are none. */
    void (*free_sections)(void *config);
} daemon_spec_t;

int daemon_main(int argc, char **argv, const daemon_spec_t *spec);
/* Ends the event loop (after a graceful stop drained). */
void daemon_exit(void);
struct event_base *daemon_base(void);
/* Runs cb once, later in this loop turn (after the events already active);
 * *ev is created on first use and reused. For work batched per turn. */
void daemon_defer(struct event **ev, event_callback_fn cb);
/* Monotonic time in seconds (cached once per loop turn is not needed: cheap). */
double daemon_now(void);

#endif
