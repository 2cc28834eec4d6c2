/* malloc_count.so: an LD_PRELOAD heap counter for the memory benchmarks.
 *
 * Counts calls that allocate (malloc, calloc, realloc of NULL or to a new block,
 * memalign/posix_memalign/aligned_alloc/valloc/pvalloc), frees, and live heap bytes (by
 * malloc_usable_size, so what the process really holds). Thread-safe (atomics); forked
 * children (nginx workers) keep counting on their own.
 *
 * Reports one line per process, appended to the file named by MALLOC_COUNT_OUT (read at
 * start-up): at exit, and whenever the process receives MALLOC_COUNT_SIGNAL (default
 * SIGRTMIN+4; nginx and heisen use no real-time signal):
 *   pid=1234 tag=exit|signal allocs=N frees=N live=BYTES peak=BYTES
 * The handler uses only async-signal-safe calls. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static uint64_t n_allocs, n_frees;
static int64_t live, peak;
static char out_path[512];

static inline void on_alloc(void *p)
{
    if (!p)
        return;
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    int64_t now = __atomic_add_fetch(&live, (int64_t)malloc_usable_size(p), __ATOMIC_RELAXED);
    int64_t pk = __atomic_load_n(&peak, __ATOMIC_RELAXED);
    while (now > pk && !__atomic_compare_exchange_n(&peak, &pk, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static inline void on_free(void *p)
{
    if (!p)
        return;
    __atomic_add_fetch(&n_frees, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&live, (int64_t)malloc_usable_size(p), __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    on_alloc(p);
    return p;
}
void *calloc(size_t a, size_t b)
{
    void *p = __libc_calloc(a, b);
    on_alloc(p);
    return p;
}
void free(void *p)
{
    on_free(p);
    __libc_free(p);
}
void *realloc(void *old, size_t n)
{
    if (!old)
        return malloc(n);
    if (n == 0) {
        free(old);
        return NULL;
    }
    size_t before = malloc_usable_size(old);
    void *p = __libc_realloc(old, n);
    if (!p)
        return NULL;
    /* a realloc is an allocation (it may copy); account the size change */
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&n_frees, 1, __ATOMIC_RELAXED);
    int64_t now = __atomic_add_fetch(&live, (int64_t)malloc_usable_size(p) - (int64_t)before, __ATOMIC_RELAXED);
    int64_t pk = __atomic_load_n(&peak, __ATOMIC_RELAXED);
    while (now > pk && !__atomic_compare_exchange_n(&peak, &pk, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    return p;
}
void *memalign(size_t al, size_t n)
{
    void *p = __libc_memalign(al, n);
    on_alloc(p);
    return p;
}
void *aligned_alloc(size_t al, size_t n)
{
    return memalign(al, n);
}
int posix_memalign(void **res, size_t al, size_t n)
{
    void *p = __libc_memalign(al, n);
    if (!p)
        return 12; /* ENOMEM */
    on_alloc(p);
    *res = p;
    return 0;
}
void *valloc(size_t n)
{
    void *p = __libc_valloc(n);
    on_alloc(p);
    return p;
}
void *pvalloc(size_t n)
{
    void *p = __libc_pvalloc(n);
    on_alloc(p);
    return p;
}

static char *put_u(char *o, uint64_t v)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        *o++ = tmp[--k];
    return o;
}
static char *put_s(char *o, const char *s)
{
    while (*s)
        *o++ = *s++;
    return o;
}

static void report(const char *tag)
{
    if (!out_path[0])
        return;
    char line[256], *o = line;
    int64_t l = __atomic_load_n(&live, __ATOMIC_RELAXED), pk = __atomic_load_n(&peak, __ATOMIC_RELAXED);
    o = put_s(o, "pid=");
    o = put_u(o, (uint64_t)getpid());
    o = put_s(o, " tag=");
    o = put_s(o, tag);
    o = put_s(o, " allocs=");
    o = put_u(o, __atomic_load_n(&n_allocs, __ATOMIC_RELAXED));
    o = put_s(o, " frees=");
    o = put_u(o, __atomic_load_n(&n_frees, __ATOMIC_RELAXED));
    o = put_s(o, " live=");
    o = put_u(o, (uint64_t)(l < 0 ? 0 : l));
    o = put_s(o, " peak=");
    o = put_u(o, (uint64_t)(pk < 0 ? 0 : pk));
    *o++ = '\n';
    int fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)(o - line));
        (void)w;
        close(fd);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    report("signal");
}

__attribute__((constructor)) static void init(void)
{
    const char *p = getenv("MALLOC_COUNT_OUT");
    if (p && strlen(p) < sizeof out_path)
        strcpy(out_path, p);
    const char *s = getenv("MALLOC_COUNT_SIGNAL");
    int sig = s ? atoi(s) : SIGRTMIN + 4;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, NULL);
}

__attribute__((destructor)) static void fini(void)
{
    report("exit");
}
