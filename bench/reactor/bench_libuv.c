/* libuv: uv_poll_t (readiness on a raw fd, libuv's equivalent of a watcher), initialised
 * once, uv_poll_start per run and uv_poll_stop between runs. With -t every watcher has a
 * uv_timer_t restarted with uv_timer_start on every read. */
#define BE_NAME "libuv"
#include "driver.h"
#include <uv.h>

static uv_loop_t loop;
static uv_poll_t *polls;
static uv_timer_t *timers;

static void poll_cb(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    int i = (int)(h - polls);
    on_readable(i, pipes[2 * i]);
}

static void timer_cb(uv_timer_t *t)
{
    (void)t; /* never fires */
}

static void be_init(void)
{
    uv_loop_init(&loop);
    polls = calloc(num_pipes, sizeof *polls);
    timers = calloc(num_pipes, sizeof *timers);
    for (int i = 0; i < num_pipes; i++) {
        if (uv_poll_init_socket(&loop, &polls[i], pipes[2 * i]) != 0) {
            fprintf(stderr, "uv_poll_init_socket failed\n");
            exit(2);
        }
        uv_timer_init(&loop, &timers[i]);
    }
}

static void be_add(int i)
{
    uv_poll_start(&polls[i], UV_READABLE, poll_cb);
    if (use_timers)
        uv_timer_start(&timers[i], timer_cb, 10000 + jitter_ms(), 0);
}

static void be_rearm(int i)
{
    uv_timer_start(&timers[i], timer_cb, 10000 + jitter_ms(), 0);
}

static void be_nowait(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void be_del(int i)
{
    uv_poll_stop(&polls[i]);
    if (use_timers)
        uv_timer_stop(&timers[i]);
}

static void be_fini(void)
{
    for (int i = 0; i < num_pipes; i++) {
        uv_close((uv_handle_t *)&polls[i], NULL);
        uv_close((uv_handle_t *)&timers[i], NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}
