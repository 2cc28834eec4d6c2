/* holdconns: open N HTTP/1.1 keep-alive connections to 127.0.0.1:PORT and hold them.
 *
 *   holdconns -p PORT -n N [-u PATH] [-b BATCH] [-i]
 *
 * Default (idle mode): every connection sends one "GET PATH" and reads the complete
 * response (Content-Length or chunked), then stays open and idle. At most BATCH
 * (default 200) connections are in progress at once, so the server's listen backlog never
 * overflows. Prints "ready OPEN" on stdout when all N are idle, then waits until stdin is
 * closed (or a line is read) and prints "closed_by_peer K" before exiting.
 *
 * -i (in-flight mode): sends the request on all N connections without waiting for the
 * answers (use a slow URL, e.g. /hello.fcgi?sleep=2000), prints "sent N" once all are
 * written, then collects the responses and prints "done OK" when all have answered (or
 * 30 s passed).
 *
 * Exit status 0 when every connection got a 2xx response. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct c {
    int fd;
    int state; /* 0 connecting/sending, 1 reading, 2 idle, 3 closed */
    size_t len;
    char buf[2048];
};

static struct sockaddr_in addr;
static char req[512];
static size_t req_len;
static int epfd;

static int start(struct c *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        return -1;
    c->state = 0;
    c->len = 0;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* 1 when buf holds one complete response; sets *ok for a 2xx status */
static int complete(struct c *c, int *ok)
{
    c->buf[c->len < sizeof c->buf ? c->len : sizeof c->buf - 1] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end)
        return 0;
    *ok = strncmp(c->buf, "HTTP/1.1 2", 10) == 0 || strncmp(c->buf, "HTTP/1.0 2", 10) == 0;
    size_t head = (size_t)(end + 4 - c->buf);
    char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    if (cl && cl < end)
        return c->len >= head + strtoul(cl + 17, NULL, 10);
    if (strcasestr(c->buf, "\r\ntransfer-encoding: chunked") != NULL)
        return c->len >= 5 && memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5) == 0;
    return 1; /* no body (204/304) */
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int port = 0, n = 100, batch = 200, inflight = 0, opt;
    const char *path = "/";
    while ((opt = getopt(argc, argv, "p:n:u:b:i")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'n': n = atoi(optarg); break;
        case 'u': path = optarg; break;
        case 'b': batch = atoi(optarg); break;
        case 'i': inflight = 1; break;
        default: goto usage;
        }
    }
    if (port <= 0 || n < 1 || batch < 1) {
    usage:
        fprintf(stderr, "usage: %s -p PORT -n N [-u PATH] [-b BATCH] [-i]\n", argv[0]);
        return 1;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(0x7f000001);
    req_len = (size_t)snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: holdconns\r\n\r\n", path);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct c *cs = calloc((size_t)n, sizeof *cs);
    int started = 0, active = 0, idle = 0, ok_count = 0, failed = 0, sent = 0;
    if (inflight)
        batch = n;
    struct epoll_event evs[256];
    double deadline = now_s() + 60;
    while (idle + failed < n && now_s() < deadline) {
        while (active < batch && started < n) {
            if (start(&cs[started]) < 0) {
                failed++;
                cs[started].state = 3;
            } else {
                active++;
            }
            started++;
        }
        int k = epoll_wait(epfd, evs, 256, 1000);
        for (int i = 0; i < k; i++) {
            struct c *c = evs[i].data.ptr;
            if (c->state == 0 && (evs[i].events & EPOLLOUT)) {
                if (write(c->fd, req, req_len) != (ssize_t)req_len) {
                    c->state = 3;
                    close(c->fd);
                    active--;
                    failed++;
                    continue;
                }
                c->state = 1;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                if (inflight && ++sent == n) {
                    printf("sent %d\n", n);
                    fflush(stdout);
                }
                continue;
            }
            if (c->state == 1 && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
                if (r > 0)
                    c->len += (size_t)r;
                int ok = 0;
                if (r > 0 && complete(c, &ok)) {
                    c->state = 2;
                    active--;
                    idle++;
                    ok_count += ok;
                    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                } else if (r == 0 || (r < 0 && errno != EAGAIN) || c->len >= sizeof c->buf - 1) {
                    c->state = 3;
                    close(c->fd);
                    active--;
                    failed++;
                }
            }
        }
    }
    if (inflight) {
        printf("done %d\n", ok_count);
        fflush(stdout);
        return ok_count == n ? 0 : 3;
    }
    printf("ready %d\n", idle);
    fflush(stdout);
    /* hold until stdin closes or a line arrives; count peers that hang up meanwhile */
    int closed = 0;
    struct pollfd pf = {.fd = 0, .events = POLLIN};
    for (;;) {
        int k = epoll_wait(epfd, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            struct c *c = evs[i].data.ptr;
            if (c->state == 2) {
                c->state = 3;
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                closed++;
            }
        }
        if (poll(&pf, 1, 0) > 0)
            break;
    }
    printf("closed_by_peer %d\n", closed);
    return ok_count == n ? 0 : 3;
}
