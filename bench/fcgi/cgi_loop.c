/* cgi_loop: "a loop of cgi-fcgi" measured like the other clients. Runs
 * `cgi-fcgi -bind -connect SOCKET` N times with at most C at once, each with the same CGI
 * environment the other clients send as parameters (cgi-fcgi sends its environment) and
 * stdin from /dev/null, stdout to /dev/null. A new process and a new connection per
 * request - this is what shell scripts and health checks do today.
 *
 *   cgi_loop -s SOCKET -f SCRIPT_FILENAME [-n REQUESTS] [-c CONCURRENCY] [-b PATH_TO_CGI_FCGI]
 *
 * Prints one JSON line; cpu_us_per_req is the children's user+system time. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *script = NULL, *bin = "/usr/bin/cgi-fcgi";
    long n = 1000;
    int conc = 1, opt;
    while ((opt = getopt(argc, argv, "s:f:n:c:b:")) != -1) {
        switch (opt) {
        case 's': sock = optarg; break;
        case 'f': script = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'c': conc = atoi(optarg); break;
        case 'b': bin = optarg; break;
        default: goto usage;
        }
    }
    if (!sock || !script || n < 1 || conc < 1) {
    usage:
        fprintf(stderr, "usage: %s -s SOCKET -f SCRIPT_FILENAME [-n N] [-c C] [-b cgi-fcgi]\n", argv[0]);
        return 1;
    }
    char sf[4096];
    snprintf(sf, sizeof sf, "SCRIPT_FILENAME=%s", script);
    char *envp[] = {sf, "REQUEST_METHOD=GET", "SCRIPT_NAME=/bench", "QUERY_STRING=", "REQUEST_URI=/bench",
                    "DOCUMENT_URI=/bench", "DOCUMENT_ROOT=/", "SERVER_PROTOCOL=HTTP/1.1",
                    "GATEWAY_INTERFACE=CGI/1.1", "SERVER_SOFTWARE=bench", "REMOTE_ADDR=127.0.0.1",
                    "REMOTE_PORT=40000", "SERVER_ADDR=127.0.0.1", "SERVER_PORT=80",
                    "SERVER_NAME=localhost", "CONTENT_TYPE=", "CONTENT_LENGTH=0", NULL};
    char *args[] = {(char *)bin, "-bind", "-connect", (char *)sock, NULL};
    int devnull = open("/dev/null", O_RDWR);
    double *lat = malloc(sizeof *lat * (size_t)n);
    pid_t *pids = calloc((size_t)conc, sizeof *pids);
    double *t0s = calloc((size_t)conc, sizeof *t0s);
    long started = 0, finished = 0, ok = 0, errors = 0;
    int running = 0;
    double t0 = now_us();
    while (finished < n) {
        while (running < conc && started < n) {
            int slot = 0;
            while (pids[slot])
                slot++;
            t0s[slot] = now_us();
            pid_t p = fork();
            if (p == 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
                execve(bin, args, envp);
                _exit(127);
            }
            if (p < 0) {
                perror("fork");
                return 2;
            }
            pids[slot] = p;
            running++;
            started++;
        }
        int status;
        pid_t p = wait(&status);
        if (p < 0)
            break;
        for (int s = 0; s < conc; s++) {
            if (pids[s] == p) {
                pids[s] = 0;
                running--;
                finished++;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                    lat[ok++] = now_us() - t0s[s];
                else
                    errors++;
                break;
            }
        }
    }
    double secs = (now_us() - t0) / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double cpu = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
    qsort(lat, (size_t)ok, sizeof *lat, cmpd);
#define PCT(p) (ok ? lat[(long)((p) / 100.0 * (double)(ok - 1) + 0.5)] : 0)
    printf("{\"client\":\"cgi-fcgi\",\"requests\":%ld,\"ok\":%ld,\"errors\":%ld,\"seconds\":%.4f,\"rps\":%.1f,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"cpu_us_per_req\":%.2f}\n",
           n, ok, errors, secs, ok / secs, PCT(50), PCT(90), PCT(99), PCT(100), ok ? cpu / ok : 0);
    return errors ? 3 : 0;
}
