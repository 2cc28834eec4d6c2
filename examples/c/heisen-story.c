/* heisen-story - the story that started heisen, replayed.
 *
 * A FastCGI backend answers every request with STDOUT and END_REQUEST in two writes and closes
 * the connection at once. On a unix socket the client's epoll then very often reports readable
 * data and hang-up in ONE event; a reactor that handles the hang-up first throws the reply away
 * and the web server answers 502. heisen delivers the data first, so: zero 502s.
 *
 *   heisen-story [-n REQUESTS] [-c CONCURRENCY] [BACKEND]
 *
 * Without BACKEND a built-in peer (two threads, blocking sockets) serves on a private unix
 * socket; with BACKEND (e.g. tests/harness/fcgi_peer.py --mode story) that one is used.
 * Prints requests, complete, 502s and the reactor's HEISEN_COUNTER_READ_WITH_HUP.
 * Exit 0 iff every request completed with the expected body.
 */
#define _GNU_SOURCE
#include <heisen.h>

#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROG "heisen-story"
#define PEER_THREADS 2

static const char PAYLOAD[] = "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n";
static const char BODY[] = "hello\n";

/* ---- the peer: plain blocking POSIX sockets, no heisen ------------------------------------ */

struct peer {
    int lfd;
    char dir[64];
    char path[108];
    pthread_t threads[PEER_THREADS];
    int nthreads;
    volatile int stop;
};

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t put_record(unsigned char *out, int type, unsigned rid, const void *content, size_t len)
{
    size_t pad = (8 - len % 8) % 8;
    out[0] = 1;
    out[1] = (unsigned char)type;
    out[2] = (unsigned char)(rid >> 8);
    out[3] = (unsigned char)rid;
    out[4] = (unsigned char)(len >> 8);
    out[5] = (unsigned char)len;
    out[6] = (unsigned char)pad;
    out[7] = 0;
    if (len)
        memcpy(out + 8, content, len);
    memset(out + 8 + len, 0, pad);
    return 8 + len + pad;
}

/* Reads one whole request (BEGIN_REQUEST, PARAMS, STDIN up to its empty record), then: write 1
 * = STDOUT + empty STDOUT, write 2 = END_REQUEST, close(). */
static void serve(int fd)
{
    unsigned char buf[70000];
    size_t have = 0;
    unsigned rid = 1;
    for (;;) {
        while (have >= 8) {
            size_t clen = ((size_t)buf[4] << 8) | buf[5], total = 8 + clen + buf[6];
            if (have < total)
                break;
            int type = buf[1];
            unsigned id = ((unsigned)buf[2] << 8) | buf[3];
            if (type == 1)
                rid = id;
            if (type == 9) {        /* FCGI_GET_VALUES: answer what we know */
                static const unsigned char v[] = "\x0e\x03" "FCGI_MAX_CONNS" "100"
                                                 "\x0d\x03" "FCGI_MAX_REQS" "100"
                                                 "\x0f\x01" "FCGI_MPXS_CONNS" "0";
                unsigned char out[128];
                size_t n = put_record(out, 10, 0, v, sizeof(v) - 1);
                if (write_all(fd, out, n) != 0)
                    goto done;
            }
            memmove(buf, buf + total, have - total);
            have -= total;
            if (type == 5 && clen == 0) {
                unsigned char out1[128], out2[32];
                size_t n1 = put_record(out1, 6, rid, PAYLOAD, sizeof(PAYLOAD) - 1);
                n1 += put_record(out1 + n1, 6, rid, NULL, 0);
                static const unsigned char end[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                size_t n2 = put_record(out2, 3, rid, end, 8);
                if (write_all(fd, out1, n1) == 0)
                    write_all(fd, out2, n2);
                goto done;          /* ... and close at once */
            }
        }
        if (have == sizeof(buf))
            goto done;
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto done;
        have += (size_t)n;
    }
done:
    close(fd);
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;                  /* shutdown(lfd) from peer_stop() */
        }
        if (p->stop) {
            close(fd);
            break;
        }
        serve(fd);
    }
    return NULL;
}

static int peer_start(struct peer *p)
{
    snprintf(p->dir, sizeof(p->dir), "/tmp/heisen-story.XXXXXX");
    if (!mkdtemp(p->dir)) {
        fprintf(stderr, PROG ": mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(p->path, sizeof(p->path), "%s/peer.sock", p->dir);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->path);
    p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(p->lfd, 1024) != 0) {
        fprintf(stderr, PROG ": peer socket %s: %s\n", p->path, strerror(errno));
        if (p->lfd >= 0)
            close(p->lfd);
        rmdir(p->dir);
        return -1;
    }
    for (int i = 0; i < PEER_THREADS; i++)
        if (pthread_create(&p->threads[p->nthreads], NULL, peer_main, p) == 0)
            p->nthreads++;
    return p->nthreads > 0 ? 0 : -1;
}

static void peer_stop(struct peer *p)
{
    p->stop = 1;
    shutdown(p->lfd, SHUT_RDWR);    /* wakes the threads blocked in accept() */
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    close(p->lfd);
    unlink(p->path);
    rmdir(p->dir);
}

/* ---- the client: heisen's FastCGI client ------------------------------------------------ */

struct run {
    heisen_reactor *reactor;
    heisen_fcgi_client *client;
    uint64_t n, sent, done, in_flight, complete, bad_gateway, wrong_body, other;
    int c;
};

struct req {
    struct run *run;
    char body[16];
    size_t len;
};

static int32_t on_body(heisen_fcgi_request *q, const uint8_t *data, size_t len, void *user_data)
{
    struct req *r = user_data;
    (void)q;
    size_t room = sizeof(r->body) - r->len;
    memcpy(r->body + r->len, data, len < room ? len : room);
    r->len += len;
    return 0;
}

static void send_more(struct run *run);

static void on_end(heisen_fcgi_request *q, heisen_status outcome, void *user_data)
{
    struct req *r = user_data;
    struct run *run = r->run;
    run->in_flight--;
    run->done++;
    if ((int32_t)outcome == HEISEN_STATUS_OK) {
        if (r->len == sizeof(BODY) - 1 && !memcmp(r->body, BODY, r->len)) {
            run->complete++;
        } else {
            run->wrong_body++;
            if (run->wrong_body == 1)
                fprintf(stderr, PROG ": a complete response with the wrong body (%zu bytes)\n", r->len);
        }
    } else if ((int32_t)outcome == HEISEN_STATUS_BAD_GATEWAY) {
        run->bad_gateway++;
        if (run->bad_gateway == 1)
            fprintf(stderr, PROG ": first 502: %s\n", heisen_fcgi_request_reason(q));
    } else {
        run->other++;
        if (run->other == 1)
            fprintf(stderr, PROG ": first failure: %s: %s\n", heisen_strerror(outcome),
                    heisen_fcgi_request_reason(q));
    }
    send_more(run);
}

static void send_more(struct run *run)
{
    while (run->sent < run->n && run->in_flight < (uint64_t)run->c) {
        heisen_fcgi_request *q = NULL;
        struct req *r = calloc(1, sizeof(*r));
        run->sent++;
        if (!r || heisen_fcgi_request_new(&q) != HEISEN_STATUS_OK) {
            free(r);
            run->done++;
            run->other++;
            continue;
        }
        r->run = run;
        heisen_fcgi_request_set_cgi(q, "GET", "/story.php", "HTTP/1.1", "/srv/story", "/story.php", NULL);
        heisen_fcgi_request_set_callbacks(q, NULL, on_body, NULL, on_end, NULL, r, free);
        heisen_status st = heisen_fcgi_request_send(run->client, q);
        if ((int32_t)st != HEISEN_STATUS_OK) {
            run->done++;
            if ((int32_t)st == HEISEN_STATUS_BAD_GATEWAY)
                run->bad_gateway++;
            else
                run->other++;
            continue;
        }
        run->in_flight++;
    }
    if (run->done >= run->n)
        heisen_reactor_stop(run->reactor);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " [-n REQUESTS] [-c CONCURRENCY] [BACKEND]\n"
               "  a FastCGI backend answers in two writes and closes at once; count the 502s.\n"
               "  without BACKEND a built-in peer serves on a private unix socket.\n");
}

int main(int argc, char **argv)
{
    struct run run;
    struct peer peer;
    const char *backend = NULL;
    char addr[160];

    memset(&run, 0, sizeof(run));
    memset(&peer, 0, sizeof(peer));
    peer.lfd = -1;
    run.n = 5000;
    run.c = 16;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "-c")) && i + 1 < argc) {
            char *end;
            unsigned long long v = strtoull(argv[i + 1], &end, 10);
            if (*end || v == 0 || argv[i + 1][0] == '-' || (argv[i][1] == 'c' && v > 10000)) {
                usage(stderr);
                return 1;
            }
            if (argv[i][1] == 'n')
                run.n = v;
            else
                run.c = (int)v;
            i++;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !backend) {
            backend = argv[i];
        } else {
            usage(stderr);
            return 1;
        }
    }
    if (!backend) {
        if (peer_start(&peer) != 0)
            return 5;
        snprintf(addr, sizeof(addr), "unix:%s", peer.path);
        backend = addr;
    }

    heisen_fcgi_config *cfg = NULL;
    heisen_status st = heisen_reactor_new(&run.reactor);
    if (st == HEISEN_STATUS_OK)
        st = heisen_fcgi_config_new(&cfg);
    if (st == HEISEN_STATUS_OK)
        st = heisen_fcgi_config_add_backend(cfg, backend);
    if (st == HEISEN_STATUS_OK) {
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_KEEP_ALIVE, 0);   /* the story: one request, then close */
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_MAX_CONNS, run.c);
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_READ_TIMEOUT_MS, 10000);
        st = heisen_fcgi_client_new(run.reactor, cfg, &run.client);
    }
    heisen_fcgi_config_free(cfg);
    if (st != HEISEN_STATUS_OK) {
        fprintf(stderr, PROG ": setup (%s): %s\n", backend, heisen_strerror(st));
        heisen_reactor_free(run.reactor);
        if (peer.lfd >= 0)
            peer_stop(&peer);
        return 5;
    }

    send_more(&run);
    if (run.done < run.n)
        heisen_reactor_run(run.reactor, HEISEN_RUN_DEFAULT);

    uint64_t read_with_hup = 0;
    heisen_reactor_counter(run.reactor, HEISEN_COUNTER_READ_WITH_HUP, &read_with_hup);
    heisen_fcgi_client_free(run.client);
    heisen_reactor_free(run.reactor);
    if (peer.lfd >= 0)
        peer_stop(&peer);

    printf("requests: %llu\n", (unsigned long long)run.n);
    printf("complete: %llu\n", (unsigned long long)run.complete);
    printf("502s: %llu\n", (unsigned long long)run.bad_gateway);
    printf("read+hup events: %llu (events with readable data and hang-up together)\n",
           (unsigned long long)read_with_hup);
    if (run.wrong_body || run.other)
        fprintf(stderr, PROG ": %llu wrong bodies, %llu other failures\n",
                (unsigned long long)run.wrong_body, (unsigned long long)run.other);
    return run.complete == run.n ? 0 : 1;
}
