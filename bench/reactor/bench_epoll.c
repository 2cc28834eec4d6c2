/* Raw epoll, level-triggered, the floor: what a C programmer writes by hand.
 * With -t: a binary min-heap of deadlines with back-indices (re-arm = change key + sift),
 * the clock read once per iteration, expired timers checked after epoll_wait. */
#define BE_NAME "epoll"
#include "driver.h"
#include <sys/epoll.h>

#define MAX_EVENTS 1024
static int epfd;
static struct epoll_event events[MAX_EVENTS];

/* ---- timer heap (only with -t) ---- */
static uint64_t *deadline; /* per watcher, ms */
static int *heap, *heap_pos, heap_len;
static uint64_t loop_now_ms;

static inline void heap_swap(int a, int b)
{
    int t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap_pos[heap[a]] = a;
    heap_pos[heap[b]] = b;
}
static inline void sift_up(int k)
{
    while (k > 0) {
        int p = (k - 1) / 2;
        if (deadline[heap[p]] <= deadline[heap[k]])
            break;
        heap_swap(p, k);
        k = p;
    }
}
static inline void sift_down(int k)
{
    for (;;) {
        int l = 2 * k + 1, r = l + 1, m = k;
        if (l < heap_len && deadline[heap[l]] < deadline[heap[m]])
            m = l;
        if (r < heap_len && deadline[heap[r]] < deadline[heap[m]])
            m = r;
        if (m == k)
            break;
        heap_swap(k, m);
        k = m;
    }
}
static inline void timer_set(int i, uint64_t when)
{
    uint64_t old = deadline[i];
    deadline[i] = when;
    int k = heap_pos[i];
    if (k < 0) {
        k = heap_len++;
        heap[k] = i;
        heap_pos[i] = k;
        sift_up(k);
    } else if (when < old) {
        sift_up(k);
    } else {
        sift_down(k);
    }
}
static inline void timer_del(int i)
{
    int k = heap_pos[i];
    if (k < 0)
        return;
    int last = --heap_len;
    if (k != last) {
        heap_swap(k, last);
        heap_pos[i] = -1;
        sift_down(k);
        sift_up(k);
    } else {
        heap_pos[i] = -1;
    }
}
static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void be_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (use_timers) {
        deadline = calloc(num_pipes, sizeof *deadline);
        heap = calloc(num_pipes, sizeof *heap);
        heap_pos = malloc(num_pipes * sizeof *heap_pos);
        for (int i = 0; i < num_pipes; i++)
            heap_pos[i] = -1;
        loop_now_ms = mono_ms();
    }
}

static void be_add(int i)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, pipes[2 * i], &ev) == -1)
        failures++;
    if (use_timers)
        timer_set(i, loop_now_ms + 10000 + jitter_ms());
}

static void be_rearm(int i)
{
    timer_set(i, loop_now_ms + 10000 + jitter_ms());
}

static void be_nowait(void)
{
    int n = epoll_wait(epfd, events, MAX_EVENTS, 0);
    if (use_timers)
        loop_now_ms = mono_ms();
    for (int k = 0; k < n; k++) {
        int i = (int)events[k].data.u32;
        on_readable(i, pipes[2 * i]);
    }
    if (use_timers) {
        while (heap_len && deadline[heap[0]] <= loop_now_ms) { /* never happens here */
            int i = heap[0];
            timer_del(i);
        }
    }
}

static void be_del(int i)
{
    if (epoll_ctl(epfd, EPOLL_CTL_DEL, pipes[2 * i], NULL) == -1)
        failures++;
    if (use_timers)
        timer_del(i);
}

static void be_fini(void)
{
    close(epfd);
}
