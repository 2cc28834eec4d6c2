/* fcgi_client: a minimal hand-written FastCGI client in C on raw epoll - the floor that
 * heisen-fcgi is measured against. Single-threaded, level-triggered, one prebuilt request
 * (BEGIN_REQUEST + PARAMS + empty PARAMS + empty STDIN) sent with one write; the reply is
 * parsed in place from one read (more if it comes in pieces) up to END_REQUEST.
 *
 *   fcgi_client -s SOCKET -f SCRIPT_FILENAME [-n REQUESTS] [-c CONCURRENCY] [-k] [-q QUERY_STRING]
 *
 * -k keeps each of the c connections open (FCGI_KEEP_CONN); without it every request
 * connects anew and the connection is closed after END_REQUEST. Prints one JSON line:
 * requests/s, latency percentiles, and this process's CPU per request (getrusage). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FCGI_BEGIN_REQUEST 1
#define FCGI_END_REQUEST 3
#define FCGI_PARAMS 4
#define FCGI_STDIN 5
#define FCGI_STDOUT 6
#define FCGI_STDERR 7

struct conn {
    int fd;
    size_t rlen;
    double t0;
    unsigned char rbuf[8192];
};

static struct sockaddr_un addr;
static unsigned char req[2048];
static size_t req_len;
static int keep_alive;
static long n_req = 10000, started, done, errors, stdout_bytes;
static double *lat;
static long n_lat;
static int epfd;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void put_header(unsigned char *p, int type, unsigned len, unsigned pad)
{
    p[0] = 1;
    p[1] = (unsigned char)type;
    p[2] = 0;
    p[3] = 1; /* request id 1 */
    p[4] = (unsigned char)(len >> 8);
    p[5] = (unsigned char)len;
    p[6] = (unsigned char)pad;
    p[7] = 0;
}

static size_t put_pair(unsigned char *p, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), o = 0;
    /* every name and value here is shorter than 128 bytes */
    p[o++] = (unsigned char)nl;
    p[o++] = (unsigned char)vl;
    memcpy(p + o, name, nl);
    o += nl;
    memcpy(p + o, value, vl);
    return o + vl;
}

static const char *query = "";

static void build_request(const char *script)
{
    unsigned char *p = req;
    put_header(p, FCGI_BEGIN_REQUEST, 8, 0);
    memset(p + 8, 0, 8);
    p[9] = 1; /* FCGI_RESPONDER */
    p[10] = keep_alive ? 1 : 0;
    p += 16;
    unsigned char body[1500];
    size_t b = 0;
    static const char *pairs[][2] = {
        {"REQUEST_METHOD", "GET"},     {"SCRIPT_NAME", "/bench"},
        {"REQUEST_URI", "/bench"},     {"DOCUMENT_URI", "/bench"},      {"DOCUMENT_ROOT", "/"},
        {"SERVER_PROTOCOL", "HTTP/1.1"}, {"GATEWAY_INTERFACE", "CGI/1.1"}, {"SERVER_SOFTWARE", "bench"},
        {"REMOTE_ADDR", "127.0.0.1"},  {"REMOTE_PORT", "40000"},        {"SERVER_ADDR", "127.0.0.1"},
        {"SERVER_PORT", "80"},         {"SERVER_NAME", "localhost"},    {"CONTENT_TYPE", ""},
        {"CONTENT_LENGTH", "0"},
    };
    b += put_pair(body + b, "SCRIPT_FILENAME", script);
    b += put_pair(body + b, "QUERY_STRING", query);
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        b += put_pair(body + b, pairs[i][0], pairs[i][1]);
    unsigned pad = (unsigned)((8 - b % 8) % 8);
    put_header(p, FCGI_PARAMS, (unsigned)b, pad);
    memcpy(p + 8, body, b);
    memset(p + 8 + b, 0, pad);
    p += 8 + b + pad;
    put_header(p, FCGI_PARAMS, 0, 0);
    p += 8;
    put_header(p, FCGI_STDIN, 0, 0);
    p += 8;
    req_len = (size_t)(p - req);
}

static int conn_open(struct conn *c)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    for (int tries = 0;; tries++) {
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            break;
        if (errno == EAGAIN && tries < 1000) { /* backlog full: rare, back off */
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
            continue;
        }
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->rlen = 0;
}

/* start the next request on slot c (if any remain) */
static void kick(struct conn *c)
{
    while (started < n_req) {
        started++;
        if (c->fd < 0 && conn_open(c) < 0) {
            errors++;
            done++;
            continue;
        }
        c->t0 = now_us();
        c->rlen = 0;
        ssize_t w = write(c->fd, req, req_len);
        if (w != (ssize_t)req_len) {
            conn_close(c);
            errors++;
            done++;
            continue;
        }
        return;
    }
}

/* 1 = END_REQUEST seen, 0 = need more, -1 = protocol error */
static int parse(struct conn *c)
{
    size_t o = 0;
    int end = 0;
    while (c->rlen - o >= 8) {
        unsigned char *h = c->rbuf + o;
        size_t clen = ((size_t)h[4] << 8) | h[5], plen = h[6];
        if (c->rlen - o < 8 + clen + plen)
            break;
        if (h[1] == FCGI_STDOUT)
            stdout_bytes += (long)clen;
        else if (h[1] == FCGI_END_REQUEST)
            end = 1;
        else if (h[1] != FCGI_STDERR)
            return -1;
        o += 8 + clen + plen;
        if (end)
            break;
    }
    memmove(c->rbuf, c->rbuf + o, c->rlen - o);
    c->rlen -= o;
    return end;
}

static void on_readable(struct conn *c)
{
    ssize_t r = read(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen);
    if (r < 0 && errno == EAGAIN)
        return;
    if (r <= 0) { /* EOF or error before END_REQUEST */
        conn_close(c);
        errors++;
        done++;
        kick(c);
        return;
    }
    c->rlen += (size_t)r;
    int st = parse(c);
    if (st == 0)
        return;
    if (st < 0) {
        conn_close(c);
        errors++;
    } else {
        lat[n_lat++] = now_us() - c->t0;
        if (!keep_alive)
            conn_close(c);
    }
    done++;
    kick(c);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!n_lat)
        return 0;
    long i = (long)((p / 100.0) * (double)(n_lat - 1) + 0.5);
    return lat[i];
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *script = NULL;
    int conc = 1, opt;
    while ((opt = getopt(argc, argv, "s:f:n:c:kq:")) != -1) {
        switch (opt) {
        case 's': sock = optarg; break;
        case 'f': script = optarg; break;
        case 'n': n_req = atol(optarg); break;
        case 'c': conc = atoi(optarg); break;
        case 'k': keep_alive = 1; break;
        case 'q': query = optarg; break;
        default: goto usage;
        }
    }
    if (!sock || !script || conc < 1 || n_req < 1 || strlen(sock) >= sizeof addr.sun_path || strlen(script) > 127 ||
        strlen(query) > 127) {
    usage:
        fprintf(stderr, "usage: %s -s SOCKET -f SCRIPT_FILENAME [-n REQUESTS] [-c CONCURRENCY] [-k] [-q QUERY]\n", argv[0]);
        return 1;
    }
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, sock);
    build_request(script);
    lat = malloc(sizeof *lat * (size_t)n_req);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)conc, sizeof *conns);
    struct epoll_event evs[256];
    double t0 = now_us();
    for (int i = 0; i < conc; i++) {
        conns[i].fd = -1;
        kick(&conns[i]);
    }
    while (done < n_req) {
        int n = epoll_wait(epfd, evs, 256, 5000);
        if (n == 0) {
            fprintf(stderr, "fcgi_client: no progress in 5 s (%ld of %ld done)\n", done, n_req);
            break;
        }
        for (int i = 0; i < n; i++)
            on_readable(evs[i].data.ptr);
    }
    double secs = (now_us() - t0) / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_us = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
    qsort(lat, (size_t)n_lat, sizeof *lat, cmpd);
    printf("{\"client\":\"c-epoll\",\"requests\":%ld,\"ok\":%ld,\"errors\":%ld,\"seconds\":%.4f,\"rps\":%.1f,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"cpu_us_per_req\":%.2f,"
           "\"stdout_bytes\":%ld}\n",
           n_req, n_lat, errors, secs, n_lat / secs, pct(50), pct(90), pct(99), pct(100),
           n_lat ? cpu_us / n_lat : 0, stdout_bytes);
    return errors ? 3 : 0;
}
