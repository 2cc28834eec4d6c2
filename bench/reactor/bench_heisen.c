/* heisen through its C API (include/heisen.h, libheisen.so). A watch is created per run
 * with heisen_watch_new(HEISEN_EV_READ) and freed between runs (the API has no
 * stop/start: freeing is how a registration is removed). With -t every watch has a
 * heisen_timer restarted with heisen_timer_start on every read.
 *
 * heisen is edge-triggered underneath (mio), so the callback must tell the reactor
 * whether it drained the socket. Patterns (-p):
 *   short  recv up to 64 bytes once; a short read on a stream socket means the queue was
 *          empty at that instant, so return HEISEN_IO_DONE (else HEISEN_IO_AGAIN).
 *          One recv per event, like the level-triggered contenders. (default)
 *   drain  recv until EAGAIN, return HEISEN_IO_DONE: two recvs per event.
 *   again  recv 1 byte and return HEISEN_IO_AGAIN; the reactor calls back, recv gets
 *          EAGAIN, return HEISEN_IO_DONE (bench.c's literal callback, level-triggered feel).
 * Every byte read is accounted (and forwarded) exactly as bench.c does, so all three are
 * correct whatever arrives. */
#define BE_NAME "heisen"
#include "driver.h"
#include <heisen.h>

enum { P_SHORT, P_DRAIN, P_AGAIN };
static int pat = P_SHORT;
static heisen_reactor *reactor;
static heisen_watch **watches;
static heisen_timer **timers;

static int32_t read_cb(heisen_watch *w, int fd, uint32_t events, void *user_data)
{
    (void)w;
    if (!(events & HEISEN_EV_READ))
        return HEISEN_IO_DONE;
    int idx = (int)(intptr_t)user_data;
    unsigned char buf[64];
    switch (pat) {
    case P_SHORT: {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            on_bytes(idx, n);
            return n == (ssize_t)sizeof buf ? HEISEN_IO_AGAIN : HEISEN_IO_DONE;
        }
        if (n < 0 && errno != EAGAIN)
            failures++;
        return HEISEN_IO_DONE;
    }
    case P_DRAIN:
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                on_bytes(idx, n);
                continue;
            }
            if (n < 0 && errno != EAGAIN)
                failures++;
            return HEISEN_IO_DONE;
        }
    default: {
        ssize_t n = recv(fd, buf, 1, 0);
        if (n > 0) {
            on_bytes(idx, n);
            return HEISEN_IO_AGAIN;
        }
        if (n < 0 && errno != EAGAIN)
            failures++;
        return HEISEN_IO_DONE;
    }
    }
}

static void timer_cb(heisen_timer *t, void *user_data)
{
    (void)t;
    (void)user_data; /* never fires */
}

static void check(heisen_status st, const char *what)
{
    if (st != HEISEN_STATUS_OK) {
        fprintf(stderr, "%s: %s\n", what, heisen_strerror(st));
        exit(2);
    }
}

static void be_init(void)
{
    if (strcmp(pattern, "drain") == 0)
        pat = P_DRAIN;
    else if (strcmp(pattern, "again") == 0)
        pat = P_AGAIN;
    else
        pattern = "short";
    check(heisen_reactor_new(&reactor), "heisen_reactor_new");
    watches = calloc(num_pipes, sizeof *watches);
    timers = calloc(num_pipes, sizeof *timers);
    if (use_timers)
        for (int i = 0; i < num_pipes; i++)
            check(heisen_timer_new(reactor, timer_cb, NULL, NULL, &timers[i]), "heisen_timer_new");
}

static void be_add(int i)
{
    check(heisen_watch_new(reactor, pipes[2 * i], HEISEN_EV_READ, read_cb, (void *)(intptr_t)i, NULL,
                           &watches[i]),
          "heisen_watch_new");
    if (use_timers)
        heisen_timer_start(timers[i], 10000 + jitter_ms(), 0);
}

static void be_rearm(int i)
{
    heisen_timer_start(timers[i], 10000 + jitter_ms(), 0);
}

static void be_nowait(void)
{
    heisen_reactor_run(reactor, HEISEN_RUN_NOWAIT);
}

static void be_del(int i)
{
    heisen_watch_free(watches[i]);
    watches[i] = NULL;
    if (use_timers)
        heisen_timer_stop(timers[i]);
}

static void be_fini(void)
{
    if (use_timers)
        for (int i = 0; i < num_pipes; i++)
            heisen_timer_free(timers[i]);
    heisen_reactor_free(reactor);
}
