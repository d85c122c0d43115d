/* weft-bench-loopback: what the kernel alone charges a server for one
 * delivered stanza on loopback TCP, the floor under every figure of the group
 * chat and PEP benchmarks (docs/performance.md, "What 3x would take").
 *
 * One process opens --sockets connected pairs on 127.0.0.1; a reader thread
 * pinned to CPU 1 drains the far ends without looking at the bytes, the main
 * thread pinned to CPU 0 writes --size bytes to each socket in turn, --rounds
 * times, as a server writes one room message to every occupant. Reported: the
 * writer's CPU time (user + system, getrusage of the thread) per write, which
 * includes the loopback's transmit and most of its receive path (they run in
 * the sender's system call), for each way of writing:
 *   send   one send() per stanza (TCP_NODELAY, as c2s sets it)
 *   cork   TCP_CORK on, write(), TCP_CORK off: c2s's default delivery path
 *          (c2s/deliver.c) without its event loop and acknowledgement
 *   nagle  one send() per stanza without TCP_NODELAY (for comparison only:
 *          Nagle would delay a client's stanzas)
 *
 *   weft-bench-loopback [--sockets 500] [--size 400] [--rounds 400]
 *
 * Output: one line per way, key=value. Not a test: nothing is asserted. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum way { WAY_SEND, WAY_CORK, WAY_NAGLE };
static const char *const way_name[] = {"send", "cork", "nagle"};

static int nsock = 500, size = 400, rounds = 400;
static int *far_end;
static atomic_int reader_stop;

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (sched_setaffinity(0, sizeof s, &s) < 0)
        perror("sched_setaffinity (running unpinned)");
}

static void *reader(void *arg)
{
    (void)arg;
    pin(1);
    static char buf[65536];
    while (!atomic_load(&reader_stop))
        for (int i = 0; i < nsock; i++)
            (void)recv(far_end[i], buf, sizeof buf, MSG_DONTWAIT);
    return NULL;
}

static double thread_cpu(void)
{
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_stime.tv_sec +
           ((double)r.ru_utime.tv_usec + (double)r.ru_stime.tv_usec) / 1e6;
}

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int run(enum way way)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0 || listen(lfd, nsock) < 0) {
        perror("listen");
        return -1;
    }
    int *near_end = calloc((size_t)nsock, sizeof *near_end);
    far_end = calloc((size_t)nsock, sizeof *far_end);
    int one = 1, off = 0;
    for (int i = 0; i < nsock; i++) {
        near_end[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (near_end[i] < 0 || connect(near_end[i], (struct sockaddr *)&a, sizeof a) < 0 ||
            (far_end[i] = accept(lfd, NULL, NULL)) < 0) {
            perror("connect (raise ulimit -n for many sockets)");
            return -1;
        }
        if (way != WAY_NAGLE)
            setsockopt(near_end[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    close(lfd);
    atomic_store(&reader_stop, 0);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    char *msg = malloc((size_t)size);
    memset(msg, 'x', (size_t)size);
    long writes = 0;
    double c0 = thread_cpu(), w0 = wall();
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nsock; i++) {
            if (way == WAY_CORK)
                setsockopt(near_end[i], IPPROTO_TCP, TCP_CORK, &one, sizeof one);
            if (send(near_end[i], msg, (size_t)size, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
                writes++;
            if (way == WAY_CORK)
                setsockopt(near_end[i], IPPROTO_TCP, TCP_CORK, &off, sizeof off);
        }
    double cpu = thread_cpu() - c0, el = wall() - w0;
    atomic_store(&reader_stop, 1);
    pthread_join(t, NULL);
    printf("way=%s sockets=%d size=%d writes=%ld writer_cpu_us_per_write=%.2f wall_us_per_write=%.2f\n",
           way_name[way], nsock, size, writes, writes ? cpu / (double)writes * 1e6 : 0.0,
           writes ? el / (double)writes * 1e6 : 0.0);
    for (int i = 0; i < nsock; i++) {
        close(near_end[i]);
        close(far_end[i]);
    }
    free(near_end);
    free(far_end);
    free(msg);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sockets"))
            nsock = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size"))
            size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--sockets N] [--size BYTES] [--rounds N]\n", argv[0]);
            return 2;
        }
    }
    if (nsock < 1 || size < 1 || rounds < 1) {
        fprintf(stderr, "--sockets, --size and --rounds must be positive\n");
        return 2;
    }
    pin(0);
    for (int w = WAY_SEND; w <= WAY_NAGLE; w++)
        if (run((enum way)w) < 0)
            return 1;
    return 0;
}
