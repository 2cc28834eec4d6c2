/* tests/harness/harness.h -- start the harness's helpers from C tests (header only, C99 + POSIX).
 *
 *   #include "harness.h"          (cc -I tests/harness ...)
 *
 *   harness_proc peer;
 *   char addr[256];
 *   if (harness_peer_start(&peer, "story", "unix:/tmp/t/peer.sock", addr, sizeof addr) != 0) fail;
 *   ... connect heisen to addr ...
 *   harness_proc_stop(&peer);      // SIGTERM, waits; returns the exit status
 *
 *   harness_proc fpm;               // a private php-fpm (scripts/php-fpm.sh start DIR)
 *   if (harness_fpm_start(&fpm, "/tmp/t/fpm", 2, addr, sizeof addr) != 0) skip-or-fail;
 *   ... SCRIPT_FILENAME = "/tmp/t/fpm/www/hello.php" ...
 *   harness_fpm_stop(&fpm);
 *
 * Paths: the repository root is taken from $HEISEN_ROOT, else the HARNESS_ROOT macro
 * (define it with -DHARNESS_ROOT="\"$(pwd)\""), else "." (run the test from the root).
 * Python: $PYTHON, else "python3".
 * harness_peer_start waits (up to 10 s) for the peer's "ready" line; with tcp port 0 the
 * chosen address is returned in addr_out. Every function returns 0 on success, -1 on failure
 * (with a line on stderr).
 */
#ifndef HEISEN_TESTS_HARNESS_H
#define HEISEN_TESTS_HARNESS_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef HARNESS_ROOT
#define HARNESS_ROOT "."
#endif

typedef struct harness_proc {
    pid_t pid;
    char dir[512]; /* php-fpm: its DIR */
} harness_proc;

static const char *harness_root(void) {
    const char *r = getenv("HEISEN_ROOT");
    return (r && *r) ? r : HARNESS_ROOT;
}

static const char *harness_python(void) {
    const char *p = getenv("PYTHON");
    return (p && *p) ? p : "python3";
}

/* Reads one line (without '\n') from fd into buf within timeout_ms. 0 ok, -1 EOF/timeout. */
static int harness_read_line(int fd, char *buf, size_t cap, int timeout_ms) {
    size_t n = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n + 1 < cap) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L);
        if (left <= 0) return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        char c;
        ssize_t k = read(fd, &c, 1);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        if (c == '\n') break;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return 0;
}

/* Runs argv with stdout on a pipe; returns the pid and the pipe's read end. */
static pid_t harness_spawn(char *const argv[], int *stdout_fd) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) { close(fds[0]); close(fds[1]); return -1; }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    *stdout_fd = fds[0];
    return pid;
}

/* SIGTERM (then SIGKILL after 5 s); returns the wait status, or -1. */
static int harness_proc_stop(harness_proc *p) {
    if (p->pid <= 0) return -1;
    int status = 0;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) { p->pid = 0; return status; }
        if (r < 0 && errno != EINTR) { p->pid = 0; return -1; }
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return status;
}

/* Starts tests/harness/fcgi_peer.py --listen LISTEN --mode MODE [extra args, NULL-terminated
   list in extra (may be NULL)] and waits for "ready". addr_out (may be NULL) gets the address. */
static int harness_peer_start_args(harness_proc *p, const char *mode, const char *listen,
                                   const char *const *extra, char *addr_out, size_t addr_cap) {
    char script[1024];
    const char *argv[32];
    int n = 0, fd = -1;
    snprintf(script, sizeof script, "%s/tests/harness/fcgi_peer.py", harness_root());
    argv[n++] = harness_python();
    argv[n++] = script;
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--mode";
    argv[n++] = mode;
    argv[n++] = "--quiet";
    for (int i = 0; extra && extra[i] && n < 31; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    memset(p, 0, sizeof *p);
    if (addr_out && addr_cap) addr_out[0] = '\0';
    p->pid = harness_spawn((char *const *)argv, &fd);
    if (p->pid < 0) { fprintf(stderr, "harness: fork: %s\n", strerror(errno)); return -1; }
    char line[512];
    int ok = harness_read_line(fd, line, sizeof line, 10000) == 0 && strncmp(line, "ready", 5) == 0;
    close(fd);
    if (!ok) {
        fprintf(stderr, "harness: fcgi_peer.py (%s on %s) did not become ready\n", mode, listen);
        harness_proc_stop(p);
        return -1;
    }
    if (addr_out && addr_cap) {
        snprintf(addr_out, addr_cap, "%s", line[5] == ' ' ? line + 6 : listen);
    }
    return 0;
}

static int harness_peer_start(harness_proc *p, const char *mode, const char *listen,
                              char *addr_out, size_t addr_cap) {
    return harness_peer_start_args(p, mode, listen, NULL, addr_out, addr_cap);
}

/* scripts/php-fpm.sh start DIR --workers N --quiet; addr_out gets its address.
   Returns -1 when php-fpm is missing or fails (the script explains on stderr). */
static int harness_fpm_start(harness_proc *p, const char *dir, int workers, char *addr_out, size_t addr_cap) {
    char script[1024], w[16];
    int fd = -1, status = 0;
    snprintf(script, sizeof script, "%s/scripts/php-fpm.sh", harness_root());
    snprintf(w, sizeof w, "%d", workers > 0 ? workers : 4);
    const char *argv[] = {"bash", script, "start", dir, "--workers", w, "--quiet", NULL};
    memset(p, 0, sizeof *p);
    if (addr_out && addr_cap) addr_out[0] = '\0';
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    pid_t pid = harness_spawn((char *const *)argv, &fd);
    if (pid < 0) return -1;
    char line[512] = "";
    int got = harness_read_line(fd, line, sizeof line, 20000);
    close(fd);
    waitpid(pid, &status, 0);
    if (got != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    if (addr_out && addr_cap) snprintf(addr_out, addr_cap, "%s", line);
    return 0;
}

static int harness_fpm_stop(harness_proc *p) {
    char script[1024];
    int fd = -1, status = 0;
    snprintf(script, sizeof script, "%s/scripts/php-fpm.sh", harness_root());
    const char *argv[] = {"bash", script, "stop", p->dir, NULL};
    pid_t pid = harness_spawn((char *const *)argv, &fd);
    if (pid < 0) return -1;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {}
    close(fd);
    waitpid(pid, &status, 0);
    return (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? 0 : -1;
}

#endif
