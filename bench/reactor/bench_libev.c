/* libev (native API), epoll back end. Watchers are initialised once and started/stopped
 * per run; with -t every watcher has an ev_timer re-armed with ev_timer_again on each read
 * (exactly libev's own variant of bench.c). */
#define BE_NAME "libev"
#include "driver.h"
#include <ev.h>

static struct ev_loop *loop;
static ev_io *ios;
static ev_timer *timers;

static void io_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    (void)revents;
    on_readable((int)(w - ios), w->fd);
}

static void timer_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents; /* never fires: 10 s away and re-armed on every read */
}

static void be_init(void)
{
    loop = ev_loop_new(EVBACKEND_EPOLL);
    if (!loop) {
        fprintf(stderr, "ev_loop_new failed\n");
        exit(2);
    }
    ios = calloc(num_pipes, sizeof *ios);
    timers = calloc(num_pipes, sizeof *timers);
    for (int i = 0; i < num_pipes; i++) {
        ev_io_init(&ios[i], io_cb, pipes[2 * i], EV_READ);
        ev_init(&timers[i], timer_cb);
    }
}

static void be_add(int i)
{
    ev_io_start(loop, &ios[i]);
    if (use_timers) {
        timers[i].repeat = 10. + jitter_ms() / 1000.;
        ev_timer_again(loop, &timers[i]);
    }
}

static void be_rearm(int i)
{
    timers[i].repeat = 10. + jitter_ms() / 1000.;
    ev_timer_again(loop, &timers[i]);
}

static void be_nowait(void)
{
    ev_run(loop, EVRUN_NOWAIT);
}

static void be_del(int i)
{
    ev_io_stop(loop, &ios[i]);
    if (use_timers)
        ev_timer_stop(loop, &timers[i]);
}

static void be_fini(void)
{
    ev_loop_destroy(loop);
}
