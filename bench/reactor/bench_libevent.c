/* libevent 2 (epoll back end, the default on Linux): event_assign + event_add per run,
 * event_del between runs, exactly as test/bench.c. With -t the event is re-added with a
 * new timeout on every read (event_add on a pending event reschedules it). */
#define BE_NAME "libevent"
#include "driver.h"
#include <event2/event.h>
#include <event2/event_struct.h>

static struct event_base *base;
static struct event *evs;

static void read_cb(evutil_socket_t fd, short which, void *arg)
{
    (void)which;
    on_readable((int)(intptr_t)arg, fd);
}

static inline struct timeval tv_timeout(void)
{
    unsigned j = jitter_ms();
    struct timeval tv = {.tv_sec = 10, .tv_usec = (long)j * 1000};
    return tv;
}

static void be_init(void)
{
    struct event_config *cfg = event_config_new();
    event_config_require_features(cfg, 0);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!base || strcmp(event_base_get_method(base), "epoll") != 0) {
        fprintf(stderr, "libevent: no epoll back end\n");
        exit(2);
    }
    evs = calloc(num_pipes, sizeof *evs);
}

static void be_add(int i)
{
    event_assign(&evs[i], base, pipes[2 * i], EV_READ | EV_PERSIST, read_cb, (void *)(intptr_t)i);
    if (use_timers) {
        struct timeval tv = tv_timeout();
        event_add(&evs[i], &tv);
    } else {
        event_add(&evs[i], NULL);
    }
}

static void be_rearm(int i)
{
    struct timeval tv = tv_timeout();
    event_add(&evs[i], &tv);
}

static void be_nowait(void)
{
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void be_del(int i)
{
    event_del(&evs[i]);
}

static void be_fini(void)
{
    event_base_free(base);
}
