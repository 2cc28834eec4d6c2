/* C tests of the reactor, watches, timers, wakers, streams and listeners, through
 * include/heisen.h only. Run by tests/c/run.sh (also under valgrind: zero errors, zero leaks). */
#define _POSIX_C_SOURCE 200809L
#include "heisen.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                             \
        }                                                                           \
    } while (0)
#define OK(expr) CHECK((expr) == HEISEN_STATUS_OK)

static int frees; /* user_data_free calls */
static void count_free(void *p) { (void)p; frees++; }

/* ------------------------------------------------------------------ raw watch: order */
struct order {
    char log[256];
    char data[64];
    size_t len;
    int fd;
};

static void append(struct order *o, const char *s) { strncat(o->log, s, sizeof o->log - strlen(o->log) - 1); }

static int32_t order_cb(heisen_watch *w, int fd, uint32_t ev, void *ud) {
    struct order *o = ud;
    if (ev == HEISEN_EV_READ) {
        for (;;) {
            ssize_t n = read(fd, o->data + o->len, sizeof o->data - o->len);
            if (n > 0) { o->len += (size_t)n; append(o, "R"); continue; }
            if (n == 0) append(o, "E");
            break;
        }
    } else if (ev == HEISEN_EV_HUP) {
        append(o, "H");
        heisen_watch_free(w); /* free our own handle inside the callback */
    } else if (ev == HEISEN_EV_ERROR) {
        append(o, "X");
    }
    return HEISEN_IO_DONE;
}

static void test_write_close_order(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(write(sv[1], "reply", 5) == 5);
    close(sv[1]); /* IN|RDHUP|HUP in one event */
    struct order o;
    memset(&o, 0, sizeof o);
    heisen_watch *w = NULL;
    frees = 0;
    OK(heisen_watch_new(r, sv[0], HEISEN_EV_READ, order_cb, &o, count_free, &w));
    CHECK(frees == 0); /* user_data lives as long as the watch */
    OK(heisen_reactor_run(r, HEISEN_RUN_DEFAULT));
    CHECK(o.len == 5 && memcmp(o.data, "reply", 5) == 0);
    CHECK(strcmp(o.log, "REH") == 0);
    CHECK(frees == 1);
    uint64_t v = 0;
    OK(heisen_reactor_counter(r, HEISEN_COUNTER_READ_WITH_HUP, &v));
    CHECK(v == 1);
    close(sv[0]);
    heisen_reactor_free(r);
}

/* ------------------------------------------------------------------ AGAIN contract */
static int32_t one_byte_cb(heisen_watch *w, int fd, uint32_t ev, void *ud) {
    struct order *o = ud;
    if (ev == HEISEN_EV_READ) {
        char c;
        if (read(fd, &c, 1) == 1) { o->data[o->len++] = c; return HEISEN_IO_AGAIN; }
    } else if (ev == HEISEN_EV_HUP) {
        append(o, "H");
        heisen_watch_free(w);
    }
    return HEISEN_IO_DONE;
}

static void test_again(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(write(sv[1], "abcdef", 6) == 6);
    close(sv[1]);
    struct order o;
    memset(&o, 0, sizeof o);
    heisen_watch *w = NULL;
    OK(heisen_watch_new(r, sv[0], HEISEN_EV_READ, one_byte_cb, &o, NULL, &w));
    OK(heisen_reactor_run(r, HEISEN_RUN_DEFAULT));
    CHECK(o.len == 6 && memcmp(o.data, "abcdef", 6) == 0);
    CHECK(strcmp(o.log, "H") == 0);
    close(sv[0]);
    heisen_reactor_free(r);
}

/* ------------------------------------------------------------------ timers */
struct tick { int n; heisen_reactor *r; };
static void tick_cb(heisen_timer *t, void *ud) {
    struct tick *k = ud;
    if (++k->n == 3) heisen_timer_free(t); /* free inside own callback */
}
static void once_cb(heisen_timer *t, void *ud) { (void)t; (*(int *)ud)++; }

static void test_timers(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    struct tick k = {0, r};
    int once = 0;
    heisen_timer *t1 = NULL, *t2 = NULL;
    frees = 0;
    OK(heisen_timer_new(r, tick_cb, &k, count_free, &t1));
    OK(heisen_timer_new(r, once_cb, &once, NULL, &t2));
    OK(heisen_timer_start(t1, 1, 2));
    OK(heisen_timer_start(t2, 5, 0));
    CHECK(frees == 0);
    OK(heisen_reactor_run(r, HEISEN_RUN_DEFAULT));
    CHECK(k.n == 3);
    CHECK(once == 1);
    CHECK(frees == 1);
    heisen_timer_free(t2);
    heisen_reactor_free(r);
}

/* ------------------------------------------------------------------ wake and post from threads */
#define POSTS 500
struct cross { heisen_waker *w; int order[POSTS * 2]; int n; int wakes; };
struct post_item { struct cross *c; int value; };

static void post_cb(void *ud) {
    struct post_item *p = ud;
    p->c->order[p->c->n++] = p->value;
}
static void wake_cb(heisen_waker *w, void *ud) { (void)w; ((struct cross *)ud)->wakes++; }

static void *poster(void *arg) {
    struct cross *c = arg;
    for (int i = 0; i < POSTS; i++) {
        struct post_item *p = malloc(sizeof *p);
        p->c = c;
        p->value = i;
        if (heisen_waker_post(c->w, post_cb, p, free) != HEISEN_STATUS_OK) failures++;
        if (heisen_waker_wake(c->w) != HEISEN_STATUS_OK) failures++;
    }
    return NULL;
}

static void stop_cb(void *ud) {
    struct cross *c = ud;
    heisen_waker_free(c->w); /* the last post frees the waker: the loop may end */
}

static void test_cross_thread(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    struct cross c;
    memset(&c, 0, sizeof c);
    OK(heisen_waker_new(r, wake_cb, &c, NULL, &c.w));
    pthread_t th;
    pthread_create(&th, NULL, poster, &c);
    pthread_join(th, NULL);
    OK(heisen_waker_post(c.w, stop_cb, &c, NULL));
    OK(heisen_reactor_run(r, HEISEN_RUN_DEFAULT));
    CHECK(c.n == POSTS);
    for (int i = 0; i < c.n; i++) CHECK(c.order[i] == i);
    CHECK(c.wakes >= 1 && c.wakes <= POSTS); /* coalesced */
    heisen_reactor_free(r);
}

/* ------------------------------------------------------------------ streams */
struct sdata { char buf[64]; size_t len; char events[32]; };
static void s_data(heisen_stream *s, const uint8_t *d, size_t n, void *ud) {
    (void)s;
    struct sdata *x = ud;
    if (x->len + n <= sizeof x->buf) { memcpy(x->buf + x->len, d, n); x->len += n; }
}
static void s_event(heisen_stream *s, int32_t ev, int32_t err, void *ud) {
    struct sdata *x = ud;
    (void)err;
    char e[2] = { (char)('0' + ev), 0 };
    strcat(x->events, e);
    if (ev == HEISEN_STREAM_END || ev == HEISEN_STREAM_ERROR) heisen_stream_free(s); /* own handle */
}

static void test_stream_peer_writes_then_closes(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[1], "hello ", 6) == 6);
    CHECK(write(sv[1], "world", 5) == 5);
    close(sv[1]);
    struct sdata x;
    memset(&x, 0, sizeof x);
    heisen_stream *s = NULL;
    frees = 0;
    OK(heisen_stream_open_fd(r, sv[0], s_data, s_event, &x, count_free, &s));
    CHECK(frees == 0);
    OK(heisen_reactor_run(r, HEISEN_RUN_DEFAULT));
    CHECK(x.len == 11 && memcmp(x.buf, "hello world", 11) == 0);
    CHECK(strcmp(x.events, "1") == 0); /* exactly one END, after the data */
    CHECK(frees == 1);
    heisen_reactor_free(r);
}

struct srv { heisen_reactor *r; heisen_stream *conn; int accepted; };
static void echo_data(heisen_stream *s, const uint8_t *d, size_t n, void *ud) {
    (void)ud;
    heisen_status st = heisen_stream_write(s, d, n);
    if (st != HEISEN_STATUS_OK) failures++;
    heisen_stream_shutdown(s);
}
static void echo_event(heisen_stream *s, int32_t ev, int32_t err, void *ud) {
    (void)err; (void)ud;
    if (ev == HEISEN_STREAM_END || ev == HEISEN_STREAM_ERROR) heisen_stream_free(s);
}
static void on_accept(heisen_listener *l, int fd, void *ud) {
    struct srv *sv = ud;
    heisen_stream *s = NULL;
    sv->accepted++;
    if (heisen_stream_open_fd(sv->r, fd, echo_data, echo_event, NULL, NULL, &s) != HEISEN_STATUS_OK) failures++;
    heisen_listener_free(l); /* one connection only: free the listener inside its callback */
}

static void test_listener_and_connect(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    struct srv sv = { r, NULL, 0 };
    heisen_listener *l = NULL;
    OK(heisen_listener_new(r, "tcp:127.0.0.1:0", 16, 0, on_accept, &sv, NULL, &l));
    uint16_t port = 0;
    OK(heisen_listener_port(l, &port));
    CHECK(port != 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    struct sdata x;
    memset(&x, 0, sizeof x);
    heisen_stream *c = NULL;
    OK(heisen_stream_connect(r, addr, 1000, s_data, s_event, &x, NULL, &c));
    OK(heisen_stream_write(c, (const uint8_t *)"ping", 4)); /* queued until connected */
    OK(heisen_reactor_run(r, HEISEN_RUN_DEFAULT));
    CHECK(sv.accepted == 1);
    CHECK(x.len == 4 && memcmp(x.buf, "ping", 4) == 0);
    CHECK(strcmp(x.events, "01") == 0); /* CONNECTED, then END */
    heisen_reactor_free(r);
}

static void test_connect_refused(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    struct sdata x;
    memset(&x, 0, sizeof x);
    heisen_stream *c = NULL;
    OK(heisen_stream_connect(r, "unix:/nonexistent/heisen-test.sock", 100, s_data, s_event, &x, NULL, &c));
    OK(heisen_reactor_run(r, HEISEN_RUN_DEFAULT));
    CHECK(strcmp(x.events, "2") == 0);
    heisen_reactor_free(r);
}

/* ------------------------------------------------------------------ reentrancy, freeing the reactor */
struct reent { heisen_reactor *r; heisen_status inner; };
static void reent_cb(heisen_timer *t, void *ud) {
    struct reent *x = ud;
    x->inner = heisen_reactor_run(x->r, HEISEN_RUN_NOWAIT);
    (void)t;
    heisen_reactor_free(x->r); /* free the reactor inside its own callback */
}

static void test_reentrancy_and_free_inside(void) {
    struct reent x = { NULL, HEISEN_STATUS_OK };
    OK(heisen_reactor_new(&x.r));
    heisen_timer *t = NULL;
    frees = 0;
    OK(heisen_timer_new(x.r, reent_cb, &x, count_free, &t));
    OK(heisen_timer_start(t, 0, 0));
    CHECK(frees == 0);
    heisen_reactor *keep = x.r;
    OK(heisen_reactor_run(keep, HEISEN_RUN_DEFAULT));
    CHECK(x.inner == HEISEN_STATUS_REENTRANT);
    CHECK(frees == 1);                            /* the timer's user_data released with the reactor */
    CHECK(heisen_timer_start(t, 1, 0) == HEISEN_STATUS_CLOSED); /* handle outlives the reactor */
    heisen_timer_free(t);
}

/* ------------------------------------------------------------------ NULL and invalid arguments */
static void test_bad_arguments(void) {
    heisen_reactor *r = NULL;
    CHECK(heisen_reactor_new(NULL) == HEISEN_STATUS_NULL_ARGUMENT);
    CHECK(heisen_reactor_run(NULL, 0) == HEISEN_STATUS_NULL_ARGUMENT);
    OK(heisen_reactor_new(&r));
    CHECK(heisen_reactor_run(r, 99) == HEISEN_STATUS_INVALID_ARGUMENT);
    heisen_watch *w = (heisen_watch *)0x1;
    frees = 0;
    CHECK(heisen_watch_new(r, -1, HEISEN_EV_READ, order_cb, NULL, count_free, &w) == HEISEN_STATUS_INVALID_ARGUMENT);
    CHECK(w == (heisen_watch *)0x1); /* out-parameter untouched on failure */
    CHECK(frees == 1);               /* user_data released on the failure path too */
    CHECK(heisen_watch_new(r, 0, 0xF0, order_cb, NULL, NULL, &w) == HEISEN_STATUS_INVALID_ARGUMENT);
    CHECK(heisen_watch_new(r, 0, HEISEN_EV_READ, NULL, NULL, NULL, &w) == HEISEN_STATUS_NULL_ARGUMENT);
    CHECK(heisen_watch_new(NULL, 0, HEISEN_EV_READ, order_cb, NULL, NULL, &w) == HEISEN_STATUS_NULL_ARGUMENT);
    int devnull = 1000; /* not open */
    CHECK(heisen_watch_new(r, devnull, HEISEN_EV_READ, order_cb, NULL, NULL, &w) == HEISEN_STATUS_IO);
    CHECK(heisen_last_errno() == EBADF);
    CHECK(heisen_watch_set_interest(NULL, 0) == HEISEN_STATUS_NULL_ARGUMENT);
    CHECK(heisen_timer_start(NULL, 1, 1) == HEISEN_STATUS_NULL_ARGUMENT);
    CHECK(heisen_waker_wake(NULL) == HEISEN_STATUS_NULL_ARGUMENT);
    heisen_stream *s = NULL;
    CHECK(heisen_stream_connect(r, "bogus", 0, NULL, NULL, NULL, NULL, &s) == HEISEN_STATUS_INVALID_ARGUMENT);
    CHECK(heisen_stream_connect(r, NULL, 0, NULL, NULL, NULL, NULL, &s) == HEISEN_STATUS_NULL_ARGUMENT);
    CHECK(heisen_stream_write(NULL, (const uint8_t *)"x", 1) == HEISEN_STATUS_NULL_ARGUMENT);
    CHECK(heisen_listener_new(r, "tcp:127.0.0.1:0", 0, 0x80, on_accept, NULL, NULL, NULL) == HEISEN_STATUS_NULL_ARGUMENT);
    uint64_t v;
    CHECK(heisen_reactor_counter(r, 12345, &v) == HEISEN_STATUS_INVALID_ARGUMENT);
    CHECK(heisen_reactor_counter(r, HEISEN_COUNTER_EVENTS, NULL) == HEISEN_STATUS_NULL_ARGUMENT);
    heisen_watch_free(NULL);
    heisen_timer_free(NULL);
    heisen_waker_free(NULL);
    heisen_stream_free(NULL);
    heisen_listener_free(NULL);
    heisen_reactor_free(NULL);
    CHECK(strcmp(heisen_strerror(HEISEN_STATUS_OK), "ok") == 0);
    CHECK(strcmp(heisen_strerror(-7), "unknown status") == 0);
    CHECK(heisen_abi_version() == HEISEN_ABI_VERSION);
    CHECK(heisen_version() != 0 && strlen(heisen_version_string()) >= 5);
    int fd = -1;
    OK(heisen_reactor_backend_fd(r, &fd));
    CHECK(fd >= 0);
    int32_t ms = 0;
    OK(heisen_reactor_backend_timeout(r, &ms));
    CHECK(ms == -1);
    heisen_reactor_free(r);
}

/* ------------------------------------------------------------------ fork, trace, embedding */
static void test_fork(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    pid_t pid = fork();
    if (pid == 0) {
        heisen_status st = heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
        _exit(st == HEISEN_STATUS_FORKED ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    OK(heisen_reactor_run(r, HEISEN_RUN_NOWAIT)); /* the parent is unaffected */
    heisen_reactor_free(r);
}

struct trace { int lines; int saw_order; };
static void trace_cb(const char *line, void *ud) {
    struct trace *t = ud;
    t->lines++;
    if (strstr(line, "READABLE|READ_CLOSED|WRITE_CLOSED") && strstr(line, "-> READ,HUP")) t->saw_order = 1;
}

static void test_trace_and_embedding(void) {
    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    struct trace t = {0, 0};
    OK(heisen_reactor_set_trace(r, trace_cb, &t, NULL));
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    close(sv[1]);
    struct order o;
    memset(&o, 0, sizeof o);
    heisen_watch *w = NULL;
    OK(heisen_watch_new(r, sv[0], HEISEN_EV_READ, order_cb, &o, NULL, &w));
    /* drive heisen from our own poll() loop, as an embedding server would */
    int efd = -1;
    OK(heisen_reactor_backend_fd(r, &efd));
    for (int i = 0; i < 50 && strcmp(o.log, "REH") != 0; i++) {
        int32_t ms = 0;
        OK(heisen_reactor_backend_timeout(r, &ms));
        struct pollfd p = { efd, POLLIN, 0 };
        poll(&p, 1, ms < 0 ? 100 : ms);
        OK(heisen_reactor_run(r, HEISEN_RUN_NOWAIT));
    }
    CHECK(strcmp(o.log, "REH") == 0);
    CHECK(t.lines >= 1 && t.saw_order == 1);
    close(sv[0]);
    heisen_reactor_free(r);
}

int main(void) {
    test_fork();
    test_trace_and_embedding();
    test_write_close_order();
    test_again();
    test_timers();
    test_cross_thread();
    test_stream_peer_writes_then_closes();
    test_listener_and_connect();
    test_connect_refused();
    test_reentrancy_and_free_inside();
    test_bad_arguments();
    if (failures) {
        fprintf(stderr, "test_reactor: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_reactor: ok\n");
    return 0;
}
