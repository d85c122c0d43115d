/* log: the one place every process writes its events.
 *
 * Owns the current target (stderr, syslog or an append-only file) and the ident.
 * Invariants: every event is exactly one line (embedded newlines and control
 * characters are replaced, so a peer cannot forge log lines); a line is written
 * with one fprintf and flushed at once, never buffered across loop turns; before
 * log_open (or after log_close) events go to stderr, so early config errors are
 * never lost. log_open may be called again at any time (SIGHUP): it switches
 * target and level without losing a line. */
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

log_level_t log_current_level = LOG_LVL_INFO;

enum log_target { LOG_TO_STDERR = 0, LOG_TO_SYSLOG, LOG_TO_FILE };

static enum log_target log_target_kind = LOG_TO_STDERR;
static char log_ident[64] = "weft";
static char *log_file_path;   /* malloc'd; file target only */
static FILE *log_fp;          /* file target only */

/* Levels beyond the public enum, for fatal and panic lines. */
enum { LOG_SEV_FATAL = LOG_LVL_ERROR + 1, LOG_SEV_PANIC };

static const char *const log_level_names[] = {
    "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "FATAL", "PANIC",
};

static int log_syslog_priority(int sev)
{
    switch (sev) {
    case LOG_LVL_DEBUG: return LOG_DEBUG;
    case LOG_LVL_INFO: return LOG_INFO;
    case LOG_LVL_NOTICE: return LOG_NOTICE;
    case LOG_LVL_WARN: return LOG_WARNING;
    case LOG_LVL_ERROR: return LOG_ERR;
    case LOG_SEV_FATAL: return LOG_CRIT;
    default: return LOG_ALERT;
    }
}

int log_level_parse(const char *s, log_level_t *out)
{
    static const struct { const char *name; log_level_t lvl; } names[] = {
        { "debug", LOG_LVL_DEBUG }, { "info", LOG_LVL_INFO },
        { "notice", LOG_LVL_NOTICE }, { "warn", LOG_LVL_WARN },
        { "warning", LOG_LVL_WARN }, { "error", LOG_LVL_ERROR },
        { "err", LOG_LVL_ERROR },
    };
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].lvl;
            return 0;
        }
    }
    return -1;
}

/* Opens path for appending. The file is created 0640: logs may carry user
 * addresses, which are not for every local account to read. */
static FILE *log_file_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return NULL;
    FILE *fp = fdopen(fd, "a");
    if (!fp) {
        close(fd);
        return NULL;
    }
    return fp;
}

/* The new target is opened before the old one is closed, so a SIGHUP with a
 * target that cannot be opened keeps logging where it did (and says why
 * there); the level and ident apply either way. */
int log_open(const char *ident, const char *target, log_level_t level)
{
    if (ident && *ident)
        snprintf(log_ident, sizeof log_ident, "%s", ident);
    log_current_level = level;

    enum log_target kind;
    FILE *fp = NULL;
    if (!target || strcmp(target, "stderr") == 0) {
        kind = LOG_TO_STDERR;
    } else if (strcmp(target, "syslog") == 0) {
        kind = LOG_TO_SYSLOG;
    } else if (strncmp(target, "file:", 5) == 0 && target[5] != '\0') {
        fp = log_file_open(target + 5);
        if (!fp) {
            log_msg(LOG_LVL_ERROR, "event=log-open result=failed target=%s error=\"%s\"", target,
                    strerror(errno));
            return -1;
        }
        kind = LOG_TO_FILE;
    } else {
        log_msg(LOG_LVL_ERROR,
                "event=log-open result=failed target=%s error=\"unknown target (want stderr, syslog or file:/path)\"",
                target);
        return -1;
    }
    log_close();
    if (kind == LOG_TO_SYSLOG) {
        /* LOG_NDELAY: connect now, before a chroot or privilege drop could
         * make /dev/log unreachable. */
        openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    } else if (kind == LOG_TO_FILE) {
        log_fp = fp;
        log_file_path = strdup(target + 5);
        if (!log_file_path)
            abort();
    }
    log_target_kind = kind;
    return 0;
}

void log_close(void)
{
    if (log_target_kind == LOG_TO_SYSLOG)
        closelog();
    if (log_fp)
        fclose(log_fp);
    log_fp = NULL;
    free(log_file_path);
    log_file_path = NULL;
    log_target_kind = LOG_TO_STDERR;
}

void log_reopen(void)
{
    if (log_target_kind != LOG_TO_FILE)
        return;
    FILE *fp = log_file_open(log_file_path);
    if (!fp) {
        /* Keep writing to the old (possibly rotated) file rather than losing
         * events; say so in it. */
        log_msg(LOG_LVL_ERROR, "log reopen failed path=%s error=\"%s\"", log_file_path,
                strerror(errno));
        return;
    }
    fclose(log_fp);
    log_fp = fp;
}

/* Formats one event and writes it to the target. sev is a log_level_t or one of
 * LOG_SEV_FATAL/PANIC. Keeps errno intact so callers may log then test it. */
static void log_write(int sev, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    char msg[4096];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        snprintf(msg, sizeof msg, "(unformattable log message)");
    else if ((size_t)n >= sizeof msg)
        memcpy(msg + sizeof msg - 4, "...", 4);   /* mark truncation */
    /* One event, one line: neutralise anything that would break it. */
    for (char *p = msg; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }

    if (log_target_kind == LOG_TO_SYSLOG) {
        syslog(log_syslog_priority(sev), "%s %s", log_level_names[sev], msg);
        errno = saved_errno;
        return;
    }

    struct timeval tv;
    struct tm tm;
    char stamp[40];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t k = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + k, sizeof stamp - k, ".%03ldZ", (long)(tv.tv_usec / 1000));

    FILE *fp = log_target_kind == LOG_TO_FILE && log_fp ? log_fp : stderr;
    fprintf(fp, "%s %s %s[%ld]: %s\n", stamp, log_level_names[sev], log_ident,
            (long)getpid(), msg);
    fflush(fp);
    errno = saved_errno;
}

void log_msg(log_level_t lvl, const char *fmt, ...)
{
    if (lvl < log_current_level)
        return;
    if ((int)lvl < LOG_LVL_DEBUG || lvl > LOG_LVL_ERROR)
        lvl = LOG_LVL_ERROR;
    va_list ap;
    va_start(ap, fmt);
    log_write(lvl, fmt, ap);
    va_end(ap);
}

/* Fatal and panic lines also go to a terminal on stderr when the target is
 * elsewhere: whoever started the process by hand must see why it stopped. */
static void log_last_words(int sev, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    log_write(sev, fmt, ap);
    if (log_target_kind != LOG_TO_STDERR && isatty(STDERR_FILENO)) {
        enum log_target saved = log_target_kind;
        log_target_kind = LOG_TO_STDERR;
        log_write(sev, fmt, ap2);
        log_target_kind = saved;
    }
    va_end(ap2);
}

void log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_last_words(LOG_SEV_FATAL, fmt, ap);
    va_end(ap);
    exit(1);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_last_words(LOG_SEV_PANIC, fmt, ap);
    va_end(ap);
    abort();
}
