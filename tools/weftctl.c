/* weftctl: the admin command line.
 *   weftctl [-s SOCKET] stats     per-component link counters and name instances
 * SOCKET is the router's control socket (router.xml <control>, default
 * var/router.ctl). Exit status 0 on success, 1 when the router cannot be
 * reached, 2 on usage errors. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int usage(void)
{
    fprintf(stderr, "usage: weftctl [-s router-control-socket] stats\n");
    return 2;
}

static int ask_router(const char *path, const char *cmd)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path)
        return usage();
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        fprintf(stderr, "weftctl: cannot reach the router at %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    char line[256];
    int n = snprintf(line, sizeof line, "%s\n", cmd);
    if (write(fd, line, (size_t)n) != n) {
        close(fd);
        return 1;
    }
    char buf[65536];
    ssize_t r;
    int rc = 0;
    while ((r = read(fd, buf, sizeof buf)) > 0) {
        if (!strncmp(buf, "error ", 6))
            rc = 1;
        fwrite(buf, 1, (size_t)r, stdout);
    }
    close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    const char *sock = "var/router.ctl";
    int i = 1;
    if (i + 1 < argc && !strcmp(argv[i], "-s")) {
        sock = argv[i + 1];
        i += 2;
    }
    if (i >= argc)
        return usage();
    if (!strcmp(argv[i], "stats"))
        return ask_router(sock, "stats");
    return usage();
}
