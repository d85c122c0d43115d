/* metrics_process: process_* metrics from /proc/self (Linux). A file that
 * cannot be read leaves the previous value: a scrape never fails for it. */
#include "metrics_process.h"
#include "metrics.h"
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static metrics_family_t *cpu, *rss, *vsz, *fds, *maxfds, *start;

/* Descriptors open now, counted in /proc/self/fd (minus the directory's own). */
static int metrics_process_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static void metrics_process_collect(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                   (double)ru.ru_stime.tv_usec / 1e6;
        metrics_set(metrics_series(cpu, NULL, NULL), s);
    }
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size, resident;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2) {
            double page = (double)sysconf(_SC_PAGESIZE);
            metrics_gauge_set(vsz, NULL, NULL, (double)size * page);
            metrics_gauge_set(rss, NULL, NULL, (double)resident * page);
        }
        fclose(f);
    }
    int n = metrics_process_count_fds();
    if (n >= 0)
        metrics_gauge_set(fds, NULL, NULL, n);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metrics_gauge_set(maxfds, NULL, NULL, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

void metrics_process_register(void)
{
    /* process_cpu_seconds_total is a counter that the collector sets from the
     * kernel's own monotonic total: nothing to add up here. */
    cpu = metrics_family("process_cpu_seconds_total", METRICS_COUNTER, "CPU time the process used, user plus system, in seconds.",
                         NULL, NULL, 0);
    rss = metrics_family("process_resident_memory_bytes", METRICS_GAUGE, "Memory the process holds in RAM (RSS), in bytes.", NULL, NULL, 0);
    vsz = metrics_family("process_virtual_memory_bytes", METRICS_GAUGE, "Address space the process has mapped, in bytes.", NULL, NULL, 0);
    fds = metrics_family("process_open_fds", METRICS_GAUGE, "File descriptors the process has open.", NULL, NULL, 0);
    maxfds = metrics_family("process_max_fds", METRICS_GAUGE, "The soft limit on open file descriptors (RLIMIT_NOFILE).", NULL, NULL, 0);
    start = metrics_family("process_start_time_seconds", METRICS_GAUGE,
                           "When the process started, in seconds since the Unix epoch.", NULL, NULL, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    metrics_gauge_set(start, NULL, NULL, (double)now.tv_sec + (double)now.tv_nsec / 1e9);
    metrics_collector(metrics_process_collect);
}
