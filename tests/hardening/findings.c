/* tests/hardening/findings.c -- regression tests for what fuzzing the C API found (issue 7),
 * and for the guarantees next to them. Each test prints one line:
 *   PASS  name
 *   XFAIL name  (finding Fn, still open: see SECURITY.md "Findings")
 *   XPASS name  (finding Fn no longer reproduces: move it to "fixed" here and in SECURITY.md)
 *   FAIL  name  what went wrong
 * and the last line is "N passed, M failed". Exit status 1 on any FAIL; an XFAIL fails only with
 * HARDENING_STRICT=1 (then every open finding must be fixed).
 *
 * Build: cc -std=c99 -Wall -Wextra -Werror -Iinclude tests/hardening/findings.c \
 *            -Ltarget/release -lheisen -Wl,-rpath,$PWD/target/release -o findings
 * The fuzz inputs that found them: fuzz/regressions/c_api/F*.
 */
#define _GNU_SOURCE
#include <heisen.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int passed, failed, xfailed, strict;
static char why[512];

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            snprintf(why, sizeof why, __VA_ARGS__);                        \
            return 0;                                                      \
        }                                                                  \
    } while (0)

/* finding: NULL for a guarantee that must hold; "Fn: ..." for an open finding. */
static void report(const char *name, const char *finding, int ok)
{
    if (ok && !finding) {
        printf("PASS  %s\n", name);
        passed++;
    } else if (ok) {
        printf("XPASS %s  (finding %s no longer reproduces: mark it fixed)\n", name, finding);
        passed++;
    } else if (finding && !strict) {
        printf("XFAIL %s  (finding %s, still open): %s\n", name, finding, why);
        xfailed++;
    } else {
        printf("FAIL  %s%s%s: %s\n", name, finding ? "  finding " : "", finding ? finding : "", why);
        failed++;
    }
    fflush(stdout);
}

static int ud_freed;
static void count_free(void *ud)
{
    (void)ud;
    ud_freed++;
}

static void socket_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        exit(2);
    }
}

static int run_until(heisen_reactor *r, int *flag, int rounds)
{
    for (int i = 0; i < rounds && !*flag; i++)
        if (heisen_reactor_run(r, HEISEN_RUN_NOWAIT) != HEISEN_STATUS_OK)
            return -1;
    return *flag ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------
 * F3 (fixed in 26c57c0): a write that fails with EPIPE dropped the reply already waiting in the socket.
 * The peer (a backend) writes its reply and closes; the user then writes (more request body):
 * EPIPE. The reply bytes are in the kernel, delivered before the hang-up, so THE GUARANTEE says
 * on_data gets them before HEISEN_STREAM_ERROR. This is the FastCGI case "a backend that
 * answers and closes without reading all of STDIN still gets its answer delivered". */
struct f3 {
    char got[256];
    size_t len;
    int ended, err;
};

static void f3_data(heisen_stream *s, const uint8_t *d, size_t n, void *ud)
{
    (void)s;
    struct f3 *t = ud;
    if (t->len + n <= sizeof t->got) {
        memcpy(t->got + t->len, d, n);
        t->len += n;
    }
}

static void f3_event(heisen_stream *s, int32_t ev, int32_t err, void *ud)
{
    (void)s;
    struct f3 *t = ud;
    if (ev == HEISEN_STREAM_END)
        t->ended = 1;
    if (ev == HEISEN_STREAM_ERROR) {
        t->ended = 1;
        t->err = err;
    }
}

static int test_epipe_keeps_reply(void)
{
    heisen_reactor *r;
    heisen_stream *s;
    int sv[2];
    struct f3 t = {{0}, 0, 0, 0};
    static const char reply[] = "Status: 200 OK\r\n\r\nthe reply";
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    socket_pair(sv);
    CHECK(heisen_stream_open_fd(r, sv[0], f3_data, f3_event, &t, NULL, &s) == HEISEN_STATUS_OK, "open_fd");
    CHECK(write(sv[1], reply, sizeof reply - 1) == (ssize_t)(sizeof reply - 1), "peer write");
    close(sv[1]);                                   /* the backend answered and closed */
    heisen_status st = heisen_stream_write(s, (const uint8_t *)"more body", 9);   /* EPIPE */
    int rc = run_until(r, &t.ended, 100);
    heisen_stream_free(s);
    heisen_reactor_free(r);
    CHECK(st == HEISEN_STATUS_OK || st == HEISEN_STATUS_BUSY || st == HEISEN_STATUS_CLOSED, "write: %d", st);
    CHECK(rc == 0, "the stream never ended");
    CHECK(t.len == sizeof reply - 1 && !memcmp(t.got, reply, t.len),
          "got %zu of %zu reply bytes before %s (errno %d)", t.len, sizeof reply - 1,
          t.err ? "HEISEN_STREAM_ERROR" : "HEISEN_STREAM_END", t.err);
    return 1;
}

/* After a failed write the stream keeps reading to the peer's end: a peer that shut down only
 * its reading side (so our write fails with EPIPE) and goes on sending gets all of it delivered
 * before the error (found by the c_api fuzz target; fixed in 66801da). */
static int test_epipe_then_more_data(void)
{
    heisen_reactor *r;
    heisen_stream *s;
    int sv[2];
    struct f3 t = {{0}, 0, 0, 0};
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    socket_pair(sv);
    CHECK(heisen_stream_open_fd(r, sv[0], f3_data, f3_event, &t, NULL, &s) == HEISEN_STATUS_OK, "open_fd");
    shutdown(sv[1], SHUT_RD);
    CHECK(write(sv[1], "early ", 6) == 6, "peer write");
    heisen_stream_write(s, (const uint8_t *)"body", 4);        /* EPIPE */
    for (int i = 0; i < 3; i++)
        heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
    CHECK(write(sv[1], "late", 4) == 4, "peer write 2");
    close(sv[1]);
    int rc = run_until(r, &t.ended, 100);
    heisen_stream_free(s);
    heisen_reactor_free(r);
    CHECK(rc == 0, "the stream never ended");
    CHECK(t.len == 10 && !memcmp(t.got, "early late", 10), "got %zu of 10 bytes (%.*s) before the end (errno %d)",
          t.len, (int)t.len, t.got, t.err);
    return 1;
}

/* The same without the write: reply then close must always arrive whole (the story). */
static int test_reply_then_close(void)
{
    heisen_reactor *r;
    heisen_stream *s;
    int sv[2];
    struct f3 t = {{0}, 0, 0, 0};
    static const char reply[] = "two writes";
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    socket_pair(sv);
    CHECK(heisen_stream_open_fd(r, sv[0], f3_data, f3_event, &t, NULL, &s) == HEISEN_STATUS_OK, "open_fd");
    CHECK(write(sv[1], reply, 3) == 3 && write(sv[1], reply + 3, sizeof reply - 4) == (ssize_t)(sizeof reply - 4), "peer write");
    close(sv[1]);
    int rc = run_until(r, &t.ended, 100);
    heisen_stream_free(s);
    heisen_reactor_free(r);
    CHECK(rc == 0, "the stream never ended");
    CHECK(t.len == sizeof reply - 1 && !t.err, "got %zu bytes, errno %d", t.len, t.err);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * F2 (fixed in 26c57c0): callbacks still ran after heisen_reactor_free() was called from an earlier callback of
 * the same round. The header: "a freed handle gets no further callbacks"; a C program that frees
 * the reactor and its own state in a callback gets called again with freed user_data. */
static heisen_reactor *f2_r;
static int f2_calls, f2_after_free;

static void f2_free_reactor(void)
{
    if (f2_r) {
        heisen_reactor_free(f2_r);
        f2_r = NULL;
    }
}

static void f2_event(heisen_stream *s, int32_t ev, int32_t err, void *ud)
{
    (void)s, (void)ev, (void)err, (void)ud;
    f2_calls++;
    if (!f2_r)
        f2_after_free++;
    f2_free_reactor();
}

static int test_deferred_after_free(void)
{
    heisen_stream *a, *b;
    f2_calls = f2_after_free = 0;
    CHECK(heisen_reactor_new(&f2_r) == HEISEN_STATUS_OK, "reactor_new");
    heisen_reactor *r = f2_r;
    /* two connects that fail: both errors are reported in the same round */
    CHECK(heisen_stream_connect(r, "unix:/nonexistent-dir/a.sock", 0, NULL, f2_event, NULL, NULL, &a) == HEISEN_STATUS_OK, "connect a");
    CHECK(heisen_stream_connect(r, "unix:/nonexistent-dir/b.sock", 0, NULL, f2_event, NULL, NULL, &b) == HEISEN_STATUS_OK, "connect b");
    heisen_reactor_run(r, HEISEN_RUN_NOWAIT);       /* the first callback frees r */
    f2_free_reactor();
    heisen_stream_free(a);
    heisen_stream_free(b);
    CHECK(f2_calls >= 1, "no callback at all");
    CHECK(f2_after_free == 0, "%d stream callback(s) ran after heisen_reactor_free", f2_after_free);
    return 1;
}

static void f2_post(void *ud)
{
    (void)ud;
    f2_calls++;
    if (!f2_r)
        f2_after_free++;
    f2_free_reactor();
}

static int test_posts_after_free(void)
{
    heisen_waker *w;
    f2_calls = f2_after_free = ud_freed = 0;
    CHECK(heisen_reactor_new(&f2_r) == HEISEN_STATUS_OK, "reactor_new");
    CHECK(heisen_waker_new(f2_r, NULL, NULL, NULL, &w) == HEISEN_STATUS_OK, "waker_new");
    CHECK(heisen_waker_post(w, f2_post, NULL, count_free) == HEISEN_STATUS_OK, "post 1");
    CHECK(heisen_waker_post(w, f2_post, NULL, count_free) == HEISEN_STATUS_OK, "post 2");
    heisen_reactor_run(f2_r, HEISEN_RUN_NOWAIT);
    f2_free_reactor();
    heisen_waker_free(w);
    CHECK(f2_calls >= 1, "no post ran");
    CHECK(f2_after_free == 0, "%d posted callback(s) ran after heisen_reactor_free", f2_after_free);
    CHECK(ud_freed == 2, "user_data_free ran %d times for 2 posts", ud_freed);
    return 1;
}

static void f2_timer(heisen_timer *t, void *ud)
{
    (void)t, (void)ud;
    f2_calls++;
    if (!f2_r)
        f2_after_free++;
    f2_free_reactor();
}

static int test_timers_after_free(void)
{
    heisen_timer *a, *b;
    f2_calls = f2_after_free = 0;
    CHECK(heisen_reactor_new(&f2_r) == HEISEN_STATUS_OK, "reactor_new");
    CHECK(heisen_timer_new(f2_r, f2_timer, NULL, NULL, &a) == HEISEN_STATUS_OK, "timer a");
    CHECK(heisen_timer_new(f2_r, f2_timer, NULL, NULL, &b) == HEISEN_STATUS_OK, "timer b");
    heisen_timer_start(a, 0, 0);
    heisen_timer_start(b, 0, 0);
    heisen_reactor_run(f2_r, HEISEN_RUN_NOWAIT);
    f2_free_reactor();
    heisen_timer_free(a);
    heisen_timer_free(b);
    CHECK(f2_calls == 1, "%d timer callbacks (1 expected)", f2_calls);
    CHECK(f2_after_free == 0, "a timer callback ran after heisen_reactor_free");
    return 1;
}

/* a watch callback posts, then frees the reactor: the post must not run (after the poll, a
 * NOWAIT/ONCE iteration runs timers and posts again) */
static heisen_waker *f2_w;
static int32_t f2_watch(heisen_watch *w, int fd, uint32_t ev, void *ud)
{
    (void)w, (void)ud;
    char buf[64];
    if (ev == HEISEN_EV_READ)
        while (read(fd, buf, sizeof buf) > 0) {
        }
    heisen_waker_post(f2_w, f2_post, NULL, count_free);
    f2_free_reactor();
    return HEISEN_IO_DONE;
}

static int test_post_from_watch_after_free(void)
{
    heisen_watch *w;
    int sv[2];
    f2_calls = f2_after_free = ud_freed = 0;
    CHECK(heisen_reactor_new(&f2_r) == HEISEN_STATUS_OK, "reactor_new");
    socket_pair(sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    CHECK(heisen_waker_new(f2_r, NULL, NULL, NULL, &f2_w) == HEISEN_STATUS_OK, "waker_new");
    CHECK(heisen_watch_new(f2_r, sv[0], HEISEN_EV_READ, f2_watch, NULL, NULL, &w) == HEISEN_STATUS_OK, "watch_new");
    CHECK(write(sv[1], "x", 1) == 1, "write");
    heisen_reactor_run(f2_r, HEISEN_RUN_NOWAIT);
    f2_free_reactor();
    heisen_watch_free(w);
    heisen_waker_free(f2_w);
    close(sv[0]);
    close(sv[1]);
    CHECK(f2_after_free == 0, "a post made in the freeing callback ran after heisen_reactor_free");
    CHECK(ud_freed == 1, "user_data_free of the post ran %d times", ud_freed);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * F1 (fixed in 26c57c0): heisen_reactor_free() left streams open. The header: "every watch, timer, stream,
 * listener and FastCGI client still on it is closed (their user_data_free functions run) and
 * their handles then only return HEISEN_STATUS_CLOSED until you free them". A stream keeps its
 * socket, its user_data, and heisen_stream_write() still writes. */
static int test_reactor_free_closes_streams(void)
{
    heisen_reactor *r;
    heisen_stream *s;
    int sv[2], fd = -1;
    struct f3 t = {{0}, 0, 0, 0};
    ud_freed = 0;
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    socket_pair(sv);
    CHECK(heisen_stream_open_fd(r, sv[0], f3_data, f3_event, &t, count_free, &s) == HEISEN_STATUS_OK, "open_fd");
    heisen_stream_fd(s, &fd);
    heisen_reactor_free(r);
    int freed_at_reactor_free = ud_freed;
    heisen_status st = heisen_stream_write(s, (const uint8_t *)"x", 1);
    int fd_open = fcntl(fd, F_GETFD) != -1;
    heisen_stream_free(s);
    close(sv[1]);
    CHECK(ud_freed == 1, "user_data_free ran %d times in all", ud_freed);
    CHECK(freed_at_reactor_free == 1, "user_data_free did not run at heisen_reactor_free");
    CHECK(st == HEISEN_STATUS_CLOSED, "heisen_stream_write after heisen_reactor_free: %s", heisen_strerror(st));
    CHECK(!fd_open, "the stream's socket is still open after heisen_reactor_free");
    return 1;
}

/* F6 (fixed after ebe242f): the F1 fix missed a stream whose connect failed at once (no socket, error pending):
 * heisen_reactor_free() does not release its user_data. Found by the c_api fuzz target after
 * 26c57c0 (fuzz/regressions/c_api/F2-callback-after-reactor-free). */
static int test_reactor_free_releases_failed_connect(void)
{
    heisen_reactor *r;
    heisen_stream *s;
    ud_freed = 0;
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    CHECK(heisen_stream_connect(r, "unix:/nonexistent-dir/d.sock", 0, NULL, f3_event, NULL, count_free, &s) == HEISEN_STATUS_OK, "connect");
    heisen_reactor_free(r);
    int at_free = ud_freed;
    heisen_status st = heisen_stream_write(s, (const uint8_t *)"x", 1);
    heisen_stream_free(s);
    CHECK(ud_freed == 1, "user_data_free ran %d times in all", ud_freed);
    CHECK(at_free == 1, "user_data_free did not run at heisen_reactor_free");
    CHECK(st == HEISEN_STATUS_CLOSED, "write after heisen_reactor_free: %s", heisen_strerror(st));
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * F4 (fixed in 26c57c0): inside HEISEN_STREAM_ERROR (and after it), heisen_stream_write() answered BUSY -- "the
 * data was accepted" -- when data was queued before the failure; the data is dropped. */
static heisen_status f4_st = HEISEN_STATUS_OK;
static int f4_done;
static void f4_event(heisen_stream *s, int32_t ev, int32_t err, void *ud)
{
    (void)err, (void)ud;
    if (ev == HEISEN_STREAM_ERROR) {
        f4_st = heisen_stream_write(s, (const uint8_t *)"late", 4);
        f4_done = 1;
    }
}

static int test_write_after_error(void)
{
    heisen_reactor *r;
    heisen_stream *s;
    f4_done = 0;
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    CHECK(heisen_stream_connect(r, "unix:/nonexistent-dir/c.sock", 0, NULL, f4_event, NULL, NULL, &s) == HEISEN_STATUS_OK, "connect");
    heisen_stream_write(s, (const uint8_t *)"queued before the connect failed", 32);
    int rc = run_until(r, &f4_done, 100);
    heisen_status after = heisen_stream_write(s, (const uint8_t *)"later", 5);
    heisen_stream_free(s);
    heisen_reactor_free(r);
    CHECK(rc == 0, "no HEISEN_STREAM_ERROR");
    CHECK(f4_st == HEISEN_STATUS_CLOSED, "write inside HEISEN_STREAM_ERROR: %s", heisen_strerror(f4_st));
    CHECK(after == HEISEN_STATUS_CLOSED, "write after HEISEN_STREAM_ERROR: %s", heisen_strerror(after));
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Guarantees checked here besides the findings (each was probed by the c_api fuzz target). */

/* a watch with interest 0 (back-pressure): a half-close waits; enabling reads delivers the data,
 * then HUP, once */
struct g1 {
    size_t got;
    int hups, reads_after_hup_with_data;
};
static int32_t g1_cb(heisen_watch *w, int fd, uint32_t ev, void *ud)
{
    (void)w;
    struct g1 *g = ud;
    char buf[4096];
    ssize_t n;
    if (ev == HEISEN_EV_READ) {
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            if (g->hups)
                g->reads_after_hup_with_data++;
            g->got += (size_t)n;
        }
    } else if (ev == HEISEN_EV_HUP) {
        g->hups++;
    }
    return HEISEN_IO_DONE;
}

static int test_backpressure_watch(void)
{
    heisen_reactor *r;
    heisen_watch *w;
    int sv[2];
    struct g1 g = {0, 0, 0};
    char data[10000];
    memset(data, 'd', sizeof data);
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    socket_pair(sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    CHECK(heisen_watch_new(r, sv[0], 0, g1_cb, &g, NULL, &w) == HEISEN_STATUS_OK, "watch_new");
    CHECK(write(sv[1], data, sizeof data) == (ssize_t)sizeof data, "write");
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 5; i++)
        heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
    int early_hups = g.hups;
    heisen_watch_set_interest(w, HEISEN_EV_READ);
    for (int i = 0; i < 20 && !g.hups; i++)
        heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
    heisen_watch_free(w);
    heisen_reactor_free(r);
    close(sv[0]);
    close(sv[1]);
    CHECK(early_hups == 0, "HUP for a half-close while reads were off");
    CHECK(g.got == sizeof data, "got %zu of %zu bytes", g.got, sizeof data);
    CHECK(g.hups == 1, "%d HUPs", g.hups);
    CHECK(g.reads_after_hup_with_data == 0, "data read after HUP");
    return 1;
}

/* a read callback that lies ("done" with bytes left) still gets every byte before HUP */
static int32_t g2_cb(heisen_watch *w, int fd, uint32_t ev, void *ud)
{
    (void)w;
    struct g1 *g = ud;
    char buf[7];
    ssize_t n;
    if (ev == HEISEN_EV_READ) {
        if ((n = read(fd, buf, sizeof buf)) > 0) {
            if (g->hups)
                g->reads_after_hup_with_data++;
            g->got += (size_t)n;
        }
    } else if (ev == HEISEN_EV_HUP) {
        g->hups++;
    }
    return HEISEN_IO_DONE;              /* a lie: at most 7 bytes read */
}

static int test_lying_reader_gets_all_before_hup(void)
{
    heisen_reactor *r;
    heisen_watch *w;
    int sv[2];
    struct g1 g = {0, 0, 0};
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    socket_pair(sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    CHECK(heisen_watch_new(r, sv[0], HEISEN_EV_READ, g2_cb, &g, NULL, &w) == HEISEN_STATUS_OK, "watch_new");
    CHECK(write(sv[1], "0123456789012345678901234567890123456789", 40) == 40, "write");
    close(sv[1]);
    for (int i = 0; i < 50 && !g.hups; i++)
        heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
    heisen_watch_free(w);
    heisen_reactor_free(r);
    close(sv[0]);
    CHECK(g.got == 40, "got %zu of 40 bytes (HUPs %d)", g.got, g.hups);
    CHECK(g.hups == 1, "%d HUPs", g.hups);
    return 1;
}


/* ------------------------------------------------------------------------------------------
 * F5 (fixed in 26c57c0): a listener that paused on EMFILE never resumed on its own. The header: "On EMFILE/ENFILE
 * the listener pauses accepting and retries every 100 ms". The retry re-enables read interest,
 * but the accept callback had reported "drained", so nothing re-delivers the connections that
 * wait in the backlog (edge-triggered: no new edge comes until another client connects). */
static int f5_accepted, f5_restored;
static int f5_fds[64];
static void f5_accept(heisen_listener *l, int fd, void *ud)
{
    (void)l, (void)ud;
    if (f5_restored) {
        close(fd);                  /* under valgrind the limit may stay low: never run out again */
        f5_accepted++;
        return;
    }
    if (f5_accepted < 64)
        f5_fds[f5_accepted] = fd;
    else
        close(fd);
    f5_accepted++;
}

static int test_listener_resumes_after_emfile(void)
{
    heisen_reactor *r;
    heisen_listener *l;
    uint16_t port = 0;
    enum { N = 12 };
    int clients[N];
    struct rlimit old, low;
    f5_accepted = f5_restored = 0;
    CHECK(heisen_reactor_new(&r) == HEISEN_STATUS_OK, "reactor_new");
    CHECK(heisen_listener_new(r, "tcp:127.0.0.1:0", 64, 0, f5_accept, NULL, NULL, &l) == HEISEN_STATUS_OK, "listener_new");
    CHECK(heisen_listener_port(l, &port) == HEISEN_STATUS_OK, "port");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < N; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(clients[i] >= 0 && connect(clients[i], (struct sockaddr *)&sa, sizeof sa) == 0, "connect %d", i);
    }
    /* leave room for 3 accepted connections, then EMFILE */
    int top = dup(0);
    close(top);
    getrlimit(RLIMIT_NOFILE, &old);
    low = old;
    low.rlim_cur = (rlim_t)top + 3;
    setrlimit(RLIMIT_NOFILE, &low);
    for (int i = 0; i < 20; i++)
        heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
    int first = f5_accepted;
    setrlimit(RLIMIT_NOFILE, &old);                 /* descriptors are there again */
    for (int i = 0; i < f5_accepted && i < 64; i++)
        close(f5_fds[i]);
    f5_restored = 1;
    /* the retry fires after 100 ms: give it up to 3 s (valgrind is slow), no new client arrives */
    for (int i = 0; i < 300 && f5_accepted < N; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
    }
    int total = f5_accepted;
    for (int i = 0; i < N; i++)
        close(clients[i]);
    heisen_listener_free(l);
    heisen_reactor_free(r);
    CHECK(first > 0 && first < N, "the limit did not bite (%d of %d accepted at first)", first, N);
    CHECK(total == N, "accepted %d of %d: the listener did not resume after EMFILE (%d before)", total, N, first);
    return 1;
}

/* F7 (fixed in ebe242f): freeing the reactor inside a listener's accept callback panicked inside the library
 * ("RefCell already borrowed": the reactor drops the listener's callback, whose guard closes the
 * listener, while it still holds its watcher table) -- heisen_reactor_run() returns
 * HEISEN_STATUS_PANIC. Found by the c_api fuzz target after 26c57c0
 * (fuzz/regressions/c_api/F2-accept-after-reactor-free). */
static heisen_reactor *f7_r;
static int f7_calls;
static void f7_accept(heisen_listener *l, int fd, void *ud)
{
    (void)l, (void)ud;
    close(fd);
    f7_calls++;
    if (f7_r) {
        heisen_reactor_free(f7_r);
        f7_r = NULL;
    }
}

static int test_reactor_free_in_accept(void)
{
    heisen_listener *l;
    uint16_t port = 0;
    f7_calls = 0;
    CHECK(heisen_reactor_new(&f7_r) == HEISEN_STATUS_OK, "reactor_new");
    heisen_reactor *r = f7_r;
    CHECK(heisen_listener_new(r, "tcp:127.0.0.1:0", 16, 0, f7_accept, NULL, NULL, &l) == HEISEN_STATUS_OK, "listener_new");
    CHECK(heisen_listener_port(l, &port) == HEISEN_STATUS_OK, "port");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c >= 0 && connect(c, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
    heisen_status st = HEISEN_STATUS_OK;
    for (int i = 0; i < 20 && f7_r; i++)
        st = heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
    if (f7_r) {
        heisen_reactor_free(f7_r);
        f7_r = NULL;
    }
    heisen_listener_free(l);
    close(c);
    CHECK(f7_calls == 1, "%d accept callbacks", f7_calls);
    CHECK(st == HEISEN_STATUS_OK, "heisen_reactor_run: %s", heisen_strerror(st));
    return 1;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *s = getenv("HARDENING_STRICT");
    strict = s && *s == '1';
    report("stream: reply then close arrives whole", NULL, test_reply_then_close());
    report("stream: EPIPE on write keeps the reply already received [F3]", NULL, test_epipe_keeps_reply());
    report("stream: EPIPE, then the peer sends more: all delivered before the end", NULL, test_epipe_then_more_data());
    report("reactor free in a callback: no deferred stream callback after it [F2]", NULL, test_deferred_after_free());
    report("reactor free in a callback: no post after it [F2]", NULL, test_posts_after_free());
    report("reactor free in a callback: no timer after it", NULL, test_timers_after_free());
    report("reactor free in a watch callback: its own post does not run [F2]", NULL, test_post_from_watch_after_free());
    report("reactor free closes streams and releases their user_data [F1]", NULL, test_reactor_free_closes_streams());
    report("reactor free releases a stream whose connect failed at once [F6]", NULL, test_reactor_free_releases_failed_connect());
    report("stream write after HEISEN_STREAM_ERROR answers CLOSED [F4]", NULL, test_write_after_error());
    /* valgrind virtualizes RLIMIT_NOFILE (it keeps descriptors of its own above the limit) */
    if (getenv("HARDENING_UNDER_VALGRIND"))
        printf("SKIP  listener resumes accepting after EMFILE [F5] (not under valgrind)\n");
    else
        report("listener resumes accepting after EMFILE [F5]", NULL, test_listener_resumes_after_emfile());
    report("reactor free inside an accept callback [F7]", NULL, test_reactor_free_in_accept());
    report("watch with interest 0: half-close waits, data then one HUP", NULL, test_backpressure_watch());
    report("watch: a reader that lies still gets every byte before HUP", NULL, test_lying_reader_gets_all_before_hup());
    printf("%d passed, %d failed\n", passed + xfailed * 0, failed);
    if (xfailed)
        printf("(%d open finding(s) reported as XFAIL; HARDENING_STRICT=1 makes them fail)\n", xfailed);
    return failed ? 1 : 0;
}
