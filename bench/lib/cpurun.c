/* cpurun: run a command and report what it cost, the same way for every contender.
 *   cpurun -o FILE -- CMD [ARGS...]
 * Appends one JSON line to FILE: wall seconds, user+system CPU microseconds of the command
 * and every descendant it waited for (wait4 rusage), peak RSS, exit status. The command's
 * stdout and stderr pass through. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *out = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else
            break;
    }
    if (!out || i >= argc) {
        fprintf(stderr, "usage: cpurun -o FILE -- CMD [ARGS...]\n");
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t p = fork();
    if (p == 0) {
        execvp(argv[i], argv + i);
        perror(argv[i]);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(p, &status, 0, &ru) < 0) {
        perror("wait4");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double cpu = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
    double usr = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *f = fopen(out, "a");
    if (f) {
        fprintf(f, "{\"wall_s\":%.4f,\"cpu_us\":%.0f,\"user_us\":%.0f,\"maxrss_kb\":%ld,\"exit\":%d}\n", wall, cpu, usr,
                ru.ru_maxrss, code);
        fclose(f);
    }
    return code;
}
