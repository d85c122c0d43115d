/* log: one line per event, level first, key=value fields by convention.
 * Targets: stderr (default), syslog, or a file. Debug lines cost one branch when
 * the level is higher. log_fatal exits(1); log_panic aborts for a core. */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

typedef enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_NOTICE, LOG_LVL_WARN, LOG_LVL_ERROR } log_level_t;

extern log_level_t log_current_level;

/* target: "stderr", "syslog", or "file:/path". ident names the process. 0 / -1. */
int log_open(const char *ident, const char *target, log_level_t level);
int log_level_parse(const char *s, log_level_t *out);
void log_close(void);
/* Re-opens a file target (SIGHUP, logrotate). */
void log_reopen(void);
void log_msg(log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_debug(...) do { if (log_current_level <= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) do { if (log_current_level <= LOG_LVL_INFO) log_msg(LOG_LVL_INFO, __VA_ARGS__); } while (0)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
