/* weft-launch: starts the weft processes listed in its config (etc/launch.xml),
 * prefixes every line they log with the process name, restarts one that dies
 * with capped exponential backoff, and stops them all cleanly on SIGTERM or
 * Ctrl-C (SIGTERM to each, SIGKILL after stop-timeout).
 *
 *   <launch>
 *     <bindir>build/release</bindir>            where the binaries are
 *     <process name="router" program="router/weft-router" config="etc/router.xml"/>
 *   </launch>
 * Processes start in file order, each after the previous one is running. */
#include "config.h"
#include "log.h"
#include "strbuf.h"
#include "xml_stream.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct child {
    char *name, *program, *config;
    pid_t pid;
    struct bufferevent *out;
    double started, backoff;
    struct event *restart;
    unsigned restarts;
} child_t;

static struct event_base *base;
static child_t *children;
static size_t nchildren;
static int stopping;
static double stop_timeout = 10;
static char *bindir;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_output(struct bufferevent *bev, void *arg)
{
    child_t *c = arg;
    char *line;
    size_t n;
    while ((line = evbuffer_readln(bufferevent_get_input(bev), &n, EVBUFFER_EOL_LF))) {
        printf("%-7s| %s\n", c->name, line);
        free(line);
    }
    fflush(stdout);
}

static void on_output_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    child_t *c = arg;
    on_output(bev, c);
    bufferevent_free(bev);
    if (c->out == bev)
        c->out = NULL;
}

static int spawn(child_t *c)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    char path[2048];
    if (c->program[0] == '/' || !bindir)
        snprintf(path, sizeof path, "%s", c->program);
    else
        snprintf(path, sizeof path, "%s/%s", bindir, c->program);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* Own process group: a terminal's Ctrl-C reaches only the launcher,
         * which then stops the children in order. */
        setpgid(0, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl(path, path, "-c", c->config, (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    evutil_make_socket_nonblocking(fds[0]);
    c->out = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->out, on_output, NULL, on_output_event, c);
    bufferevent_enable(c->out, EV_READ);
    c->pid = pid;
    c->started = now();
    printf("launch | started %s pid=%d\n", c->name, (int)pid);
    fflush(stdout);
    return 0;
}

static void restart_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    child_t *c = arg;
    if (!stopping && spawn(c) < 0)
        printf("launch | cannot start %s: %s\n", c->name, strerror(errno));
}

static int all_exited(void)
{
    for (size_t i = 0; i < nchildren; i++)
        if (children[i].pid > 0)
            return 0;
    return 1;
}

static void on_child(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < nchildren; i++) {
            child_t *c = &children[i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            if (stopping)
                break;
            /* A process that ran a minute is considered healthy again. */
            if (now() - c->started > 60)
                c->backoff = 0.5;
            printf("launch | %s exited (%s %d); restarting in %.1fs\n", c->name,
                   WIFSIGNALED(status) ? "signal" : "status",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), c->backoff);
            fflush(stdout);
            struct timeval tv = {(time_t)c->backoff, (suseconds_t)((c->backoff - (long)c->backoff) * 1e6)};
            evtimer_add(c->restart, &tv);
            c->backoff = c->backoff * 2 > 30 ? 30 : c->backoff * 2;
            c->restarts++;
        }
    }
    if (stopping && all_exited())
        event_base_loopexit(base, NULL);
}

static void kill_all(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (size_t i = 0; i < nchildren; i++)
        if (children[i].pid > 0) {
            printf("launch | %s did not stop in time: SIGKILL\n", children[i].name);
            kill(children[i].pid, SIGKILL);
        }
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct event *killer = arg;
    if (stopping)
        return;
    stopping = 1;
    printf("launch | signal %d: stopping everything\n", (int)sig);
    fflush(stdout);
    /* Stop in reverse order: clients' side first, the router last. */
    for (size_t i = nchildren; i-- > 0;) {
        evtimer_del(children[i].restart);
        if (children[i].pid > 0)
            kill(children[i].pid, SIGTERM);
    }
    struct timeval tv = {(time_t)stop_timeout, 0};
    evtimer_add(killer, &tv);
    if (all_exited())
        event_base_loopexit(base, NULL);
}

static int load(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "weft-launch: %s: %s\n", file, strerror(errno));
        return -1;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        strbuf_append(&sb, buf, n);
    fclose(f);
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.allow_comments = 1;
    char err[256];
    unsigned line = 0;
    xml_node_t *root = xml_parse_document(sb.data ? sb.data : "", sb.len, &lim, err, sizeof err, &line);
    strbuf_free(&sb);
    if (!root) {
        fprintf(stderr, "weft-launch: %s:%u: %s\n", file, line, err);
        return -1;
    }
    int rc = 0;
    for (xml_node_t *el = xml_child(root, NULL, NULL); el; el = xml_next(el, NULL, NULL)) {
        if (!strcmp(el->name, "bindir")) {
            free(bindir);
            bindir = xml_text(el);
        } else if (!strcmp(el->name, "stop-timeout")) {
            char *t = xml_text(el);
            if (cfg_parse_seconds(t, &stop_timeout) < 0) {
                fprintf(stderr, "weft-launch: %s:%u: stop-timeout: not a duration\n", file, el->line);
                rc = -1;
            }
            free(t);
        } else if (!strcmp(el->name, "process")) {
            const char *name = xml_attr_get(el, "name");
            const char *prog = xml_attr_get(el, "program");
            const char *conf = xml_attr_get(el, "config");
            if (!name || !prog || !conf) {
                fprintf(stderr, "weft-launch: %s:%u: process needs name, program and config\n", file, el->line);
                rc = -1;
                continue;
            }
            children = xrealloc(children, (nchildren + 1) * sizeof *children);
            child_t *c = &children[nchildren++];
            memset(c, 0, sizeof *c);
            c->name = xstrdup(name);
            c->program = xstrdup(prog);
            c->config = xstrdup(conf);
            c->backoff = 0.5;
        } else {
            fprintf(stderr, "weft-launch: %s:%u: unknown element <%s>\n", file, el->line, el->name);
            rc = -1;
        }
    }
    xml_free(root);
    return rc;
}

int main(int argc, char **argv)
{
    const char *file = argc > 2 && !strcmp(argv[1], "-c") ? argv[2] : "etc/launch.xml";
    if (load(file) < 0)
        return 1;
    if (nchildren == 0) {
        fprintf(stderr, "weft-launch: %s: no <process> to start\n", file);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    struct event *killer = evtimer_new(base, kill_all, NULL);
    struct event *term = evsignal_new(base, SIGTERM, on_stop, killer);
    struct event *intr = evsignal_new(base, SIGINT, on_stop, killer);
    struct event *chld = evsignal_new(base, SIGCHLD, on_child, NULL);
    evsignal_add(term, NULL);
    evsignal_add(intr, NULL);
    evsignal_add(chld, NULL);
    for (size_t i = 0; i < nchildren; i++) {
        children[i].restart = evtimer_new(base, restart_cb, &children[i]);
        if (spawn(&children[i]) < 0)
            printf("launch | cannot start %s: %s\n", children[i].name, strerror(errno));
        usleep(200000); /* let it bind its sockets before the next one connects */
    }
    event_base_dispatch(base);
    for (size_t i = 0; i < nchildren; i++) {
        if (children[i].out)
            bufferevent_free(children[i].out);
        event_free(children[i].restart);
        free(children[i].name);
        free(children[i].program);
        free(children[i].config);
    }
    free(children);
    free(bindir);
    event_free(killer);
    event_free(term);
    event_free(intr);
    event_free(chld);
    event_base_free(base);
    printf("launch | all stopped\n");
    return 0;
}
