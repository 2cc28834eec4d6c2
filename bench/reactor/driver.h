/*
 * driver.h - the method of libevent's test/bench.c, shared by every contender.
 *
 * N socketpairs; every read end gets a read watcher. A "active" writers each send one
 * byte; every read callback reads the byte and, while writes remain, sends one byte to
 * the next socketpair (idx+1, wrapping). The loop runs non-blocking iterations until
 * every byte sent has been read. Registrations are removed between runs (the dasynq
 * correction of the original, which re-used them).
 *
 * -t adds libev's variant: every watcher has a timer, re-armed to 10 s + U(0,1 s) on
 * every read, so timers never fire and the cost measured is re-scheduling.
 *
 * A contender file defines BE_NAME ("epoll", ...), includes this file, then defines:
 *   static void be_init(void);            create the loop (once per process)
 *   static void be_add(int i);            watch pipes[2i] for reading (and start the timer with -t)
 *   static void be_nowait(void);          one non-blocking loop iteration
 *   static void be_del(int i);            remove that registration (and stop the timer)
 *   static void be_rearm(int i);          -t only: re-arm timer i to 10 s + U(0, 1 s)
 *   static void be_fini(void);            destroy the loop (optional work)
 * and calls on_byte(i) for every byte read from pipes[2i] (the callback logic of bench.c).
 *
 * Output: one JSON line with medians over the measured runs (the first run is a warm-up).
 * With -C both (callgrind mode) the last run collects set-up and loop and dumps each as a
 * part of its own (callgrind.out.1 = set-up, .2 = loop); -C loop / -C total collect only
 * the loop / set-up plus loop. Run under valgrind --tool=callgrind --collect-atstart=no.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <valgrind/callgrind.h>

/* ---- syscall counting (built with -DCOUNT_SYSCALLS -rdynamic): the executable's
 * epoll_ctl/epoll_wait/epoll_pwait preempt libc's for every library in the process
 * (libev, libevent, libuv, libheisen.so), so calls are counted per phase of the last run
 * without touching the contender. A separate build, so the timed and callgrind binaries
 * carry no wrapper. */
enum { PH_NONE, PH_SETUP, PH_LOOP, PH_TEARDOWN, PH_COUNT };
static int phase __attribute__((unused)) = PH_NONE;
static long sc_ctl[PH_COUNT], sc_wait[PH_COUNT];
#ifdef COUNT_SYSCALLS
#include <dlfcn.h>
#include <signal.h>
#include <sys/epoll.h>
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    static int (*real)(int, int, int, struct epoll_event *);
    if (!real)
        real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
    sc_ctl[phase]++;
    return real(epfd, op, fd, ev);
}
int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
    static int (*real)(int, struct epoll_event *, int, int);
    if (!real)
        real = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT, "epoll_wait");
    sc_wait[phase]++;
    return real(epfd, evs, max, timeout);
}
int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *ss)
{
    static int (*real)(int, struct epoll_event *, int, int, const sigset_t *);
    if (!real)
        real = (int (*)(int, struct epoll_event *, int, int, const sigset_t *))dlsym(RTLD_NEXT, "epoll_pwait");
    sc_wait[phase]++;
    return real(epfd, evs, max, timeout, ss);
}
#define SET_PHASE(p) (phase = (p))
#else
#define SET_PHASE(p) ((void)0)
#endif

static int num_pipes = 100, num_active = 1, num_writes = -1, num_runs = 10, use_timers = 0;
static const char *pattern = "";
static const char *callgrind_mode = NULL; /* NULL, "loop" or "total" */
static int *pipes;
static long count, fired, writes, failures;

#define NOINLINE __attribute__((noinline))

static void be_init(void);
static void be_add(int i);
static void be_nowait(void);
static void be_del(int i);
static void be_rearm(int i);
static void be_fini(void);

/* bench.c's read_cb, after the contender has read `n` bytes (normally 1) from pipes[2i]:
 * each byte read is one event and, while writes remain, sends one byte to the next pair */
static inline void on_bytes(int idx, long n)
{
    count += n;
    for (long k = 0; k < n; k++) {
        if (use_timers)
            be_rearm(idx);
        if (writes) {
            int widx = idx + 1;
            if (widx >= num_pipes)
                widx -= num_pipes;
            if (send(pipes[2 * widx + 1], "e", 1, 0) != 1)
                failures++;
            writes--;
            fired++;
        }
    }
}

/* one recv of up to 64 bytes, every byte accounted as bench.c's callback does for its one
 * byte. bench.c reads exactly one byte; reading up to 64 lets an edge-triggered contender
 * (heisen) and the level-triggered ones make the same syscalls: when two chains meet on one
 * socket, everyone takes both bytes with one recv. */
static inline void on_readable(int idx, int fd)
{
    unsigned char ch[64];
    ssize_t n = recv(fd, ch, sizeof ch, 0);
    if (n > 0)
        on_bytes(idx, n);
    else if (n < 0 && errno != EAGAIN)
        failures++;
}

/* deterministic timer jitter: 0..999 ms (libev's bench used drand48(); fixed seed) */
static unsigned jitter_state = 12345;
static inline unsigned jitter_ms(void)
{
    jitter_state = jitter_state * 1103515245u + 12345u;
    return (jitter_state >> 16) % 1000u;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static NOINLINE void bench_setup(void)
{
    for (int i = 0; i < num_pipes; i++)
        be_add(i);
    be_nowait(); /* libevent and libev apply registrations lazily, inside the loop */
}

static NOINLINE long bench_loop(void)
{
    long iterations = 0;
    fired = 0;
    int space = (num_pipes / num_active) * 2;
    for (int i = 0; i < num_active; i++, fired++)
        (void)send(pipes[i * space + 1], "e", 1, 0);
    count = 0;
    writes = num_writes;
    do {
        be_nowait();
        iterations++;
    } while (count != fired);
    return iterations;
}

static NOINLINE void bench_teardown(void)
{
    for (int i = 0; i < num_pipes; i++)
        be_del(i);
    be_nowait(); /* let lazy back ends apply removals, as they would in a server */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [-n pipes] [-a active] [-w writes] [-r runs] [-t] [-p pattern] [-C both|loop|total]\n",
            argv0);
    exit(1);
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "n:a:w:r:tp:C:")) != -1) {
        switch (c) {
        case 'n': num_pipes = atoi(optarg); break;
        case 'a': num_active = atoi(optarg); break;
        case 'w': num_writes = atoi(optarg); break;
        case 'r': num_runs = atoi(optarg); break;
        case 't': use_timers = 1; break;
        case 'p': pattern = optarg; break;
        case 'C': callgrind_mode = optarg; break;
        default: usage(argv[0]);
        }
    }
    if (num_pipes < 1 || num_active < 1 || num_active > num_pipes || num_runs < 1)
        usage(argv[0]);
    if (num_writes < 0)
        num_writes = num_pipes;

    /* 2 fds per socketpair plus a few for the loop (epoll fd, eventfd, stdio) */
    struct rlimit rl;
    rlim_t need = (rlim_t)num_pipes * 2 + 24;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need) {
        rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < need) {
            fprintf(stderr, "RLIMIT_NOFILE %lu is too small for %d socketpairs (need %lu)\n",
                    (unsigned long)rl.rlim_cur, num_pipes, (unsigned long)need);
            return 2;
        }
    }
    pipes = calloc((size_t)num_pipes * 2, sizeof *pipes);
    for (int i = 0; i < num_pipes; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &pipes[2 * i]) == -1) {
            perror("socketpair");
            return 2;
        }
    }
    be_init();

    int measured = num_runs;
    double *setup = calloc(measured, sizeof(double)), *loop = calloc(measured, sizeof(double));
    double *total = calloc(measured, sizeof(double)), *tear = calloc(measured, sizeof(double));
    long iterations = 0;
    for (int run = -1; run < measured; run++) { /* run -1 is the warm-up */
        int cg = callgrind_mode && run == measured - 1;
        int cg_both = cg && strcmp(callgrind_mode, "both") == 0;
        int cg_total = cg && (cg_both || strcmp(callgrind_mode, "total") == 0);
        if (run == measured - 1)
            memset(sc_ctl, 0, sizeof sc_ctl), memset(sc_wait, 0, sizeof sc_wait);
        if (cg_total)
            CALLGRIND_TOGGLE_COLLECT;
        double t0 = now_us();
        SET_PHASE(PH_SETUP);
        bench_setup();
        SET_PHASE(PH_NONE);
        double t1 = now_us();
        if (cg_both)
            CALLGRIND_DUMP_STATS_AT("setup");
        if (cg && !cg_total)
            CALLGRIND_TOGGLE_COLLECT;
        SET_PHASE(PH_LOOP);
        iterations = bench_loop();
        SET_PHASE(PH_NONE);
        if (cg_both)
            CALLGRIND_DUMP_STATS_AT("loop");
        if (cg)
            CALLGRIND_TOGGLE_COLLECT;
        double t2 = now_us();
        SET_PHASE(PH_TEARDOWN);
        bench_teardown();
        SET_PHASE(PH_NONE);
        double t3 = now_us();
        if (run >= 0) {
            setup[run] = t1 - t0;
            loop[run] = t2 - t1;
            total[run] = t2 - t0;
            tear[run] = t3 - t2;
        }
    }
    be_fini();
    printf("{\"contender\":\"%s\",\"pattern\":\"%s\",\"n\":%d,\"a\":%d,\"w\":%d,\"timers\":%d,"
           "\"runs\":%d,\"events\":%ld,\"iterations\":%ld,\"failures\":%ld,"
           "\"setup_us\":%.1f,\"loop_us\":%.1f,\"total_us\":%.1f,\"teardown_us\":%.1f,"
           "\"epoll_ctl_setup\":%ld,\"epoll_ctl_loop\":%ld,\"epoll_ctl_teardown\":%ld,"
           "\"epoll_wait_loop\":%ld}\n",
           BE_NAME, pattern, num_pipes, num_active, num_writes, use_timers, measured, count,
           iterations, failures, median(setup, measured), median(loop, measured),
           median(total, measured), median(tear, measured),
#ifdef COUNT_SYSCALLS
           sc_ctl[PH_SETUP], sc_ctl[PH_LOOP], sc_ctl[PH_TEARDOWN], sc_wait[PH_LOOP]
#else
           -1L, -1L, -1L, -1L
#endif
    );
    return failures ? 3 : 0;
}
