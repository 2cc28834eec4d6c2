/* heisen-fcgi - a command-line FastCGI client and load generator on heisen's asynchronous API.
 *
 *   heisen-fcgi [options] BACKEND SCRIPT [QUERY]      one request, body to stdout
 *   heisen-fcgi -n 20000 -c 32 -k BACKEND SCRIPT      benchmark the backend directly
 *   heisen-fcgi --status BACKEND                      FCGI_GET_VALUES health check
 *
 * Exit status (docs/DESIGN.md): 0 complete; 1 usage; 2 bad gateway (cannot connect, reset,
 * malformed, CANT_MPX_CONN, UNKNOWN_ROLE); 3 truncated; 4 overloaded; 5 aborted/other; 124 timeout.
 * With -n, 0 when every request completed, else the code of the first failure seen.
 */
#define _GNU_SOURCE
#include <heisen.h>

#include "common.h"
#include "fcgi_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "heisen-fcgi"
#define MAX_LIST 256

enum { EXIT_OK = 0, EXIT_USAGE = 1, EXIT_BAD_GATEWAY = 2, EXIT_TRUNCATED = 3, EXIT_OVERLOADED = 4,
       EXIT_OTHER = 5, EXIT_TIMEOUT = 124 };

static struct options {
    const char *backend;            /* "unix:/a.sock" or "a,b,c" (balanced) */
    const char *script;
    const char *query;
    const char *method;
    const char *docroot;
    struct buf body;
    int has_body;
    const char *params[MAX_LIST];
    int nparams;
    const char *headers[MAX_LIST];
    int nheaders;
    double timeout_s;               /* 0 = library defaults */
    int keepalive;
    int show_headers;
    int raw;
    int quiet;
    int status_mode;
    int probe;
    uint64_t n;
    int c;
    int max_conns;
    int conns;                      /* the connection limit in use */
    const char *conns_why;
    /* derived */
    char docroot_buf[PATH_MAX];
    char script_name[PATH_MAX];
    char request_uri[PATH_MAX * 2];
} opt;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " [options] BACKEND SCRIPT [QUERY]\n"
        "       " PROG " -n REQUESTS -c CONCURRENCY [-k] [options] BACKEND SCRIPT [QUERY]\n"
        "       " PROG " --status BACKEND\n"
        "  BACKEND            unix:/path, /path, host:port, tcp:host:port; a,b,... balances\n"
        "  SCRIPT             the script's path on the backend (SCRIPT_FILENAME)\n"
        "  QUERY              QUERY_STRING (without '?')\n"
        "  -X METHOD          request method (default GET, POST with -d)\n"
        "  -d DATA|@FILE|-    request body (CONTENT_LENGTH set; CONTENT_TYPE\n"
        "                     application/octet-stream unless -H 'Content-Type: ...')\n"
        "  -p NAME=VALUE      extra FastCGI parameter (repeatable)\n"
        "  -H 'Name: value'   HTTP header, sent as HTTP_NAME (repeatable)\n"
        "  -t SECONDS         timeout for the whole request (exit 124)\n"
        "  -k                 keep-alive: reuse connections (FCGI_KEEP_CONN)\n"
        "  -i                 print \"Status: NNN\", the headers and a blank line before the body\n"
        "  --raw              print the backend's STDOUT unparsed (as cgi-fcgi does)\n"
        "  -q                 do not print the body\n"
        "  --docroot DIR      DOCUMENT_ROOT; SCRIPT is then relative to it (default: SCRIPT's directory)\n"
        "  -n REQUESTS        benchmark: send REQUESTS requests ...\n"
        "  -c CONCURRENCY     ... CONCURRENCY at a time; prints req/s, latency percentiles,\n"
        "                     outcomes by kind, connections opened and reused\n"
        "  -m CONNS           connections per backend (default: CONCURRENCY; with -k, the\n"
        "                     backend's FCGI_MAX_CONNS, else 4: php-fpm pins a worker to each\n"
        "                     kept connection, so match pm.max_children)\n"
        "  --no-probe         with -k and no -m, keep CONCURRENCY connections without asking\n"
        "  --status           ask the backend FCGI_GET_VALUES: 0 healthy, 2 unreachable/bad, 124 timeout\n"
        "exit: 0 complete, 1 usage, 2 bad gateway, 3 truncated, 4 overloaded, 5 other, 124 timeout\n");
}

static int exit_code_for(int32_t outcome)
{
    switch (outcome) {
    case HEISEN_STATUS_OK: return EXIT_OK;
    case HEISEN_STATUS_BAD_GATEWAY:
    case HEISEN_STATUS_CANT_MPX_CONN:
    case HEISEN_STATUS_UNKNOWN_ROLE:
    case HEISEN_STATUS_IO:
        return EXIT_BAD_GATEWAY;
    case HEISEN_STATUS_TRUNCATED: return EXIT_TRUNCATED;
    case HEISEN_STATUS_OVERLOADED: return EXIT_OVERLOADED;
    case HEISEN_STATUS_TIMEOUT: return EXIT_TIMEOUT;
    default: return EXIT_OTHER;
    }
}

static const char *outcome_name(int32_t outcome)
{
    switch (outcome) {
    case HEISEN_STATUS_OK: return "complete";
    case HEISEN_STATUS_BAD_GATEWAY: return "bad gateway";
    case HEISEN_STATUS_CANT_MPX_CONN: return "bad gateway (FCGI_CANT_MPX_CONN)";
    case HEISEN_STATUS_UNKNOWN_ROLE: return "bad gateway (FCGI_UNKNOWN_ROLE)";
    case HEISEN_STATUS_TRUNCATED: return "truncated";
    case HEISEN_STATUS_OVERLOADED: return "overloaded";
    case HEISEN_STATUS_TIMEOUT: return "timeout";
    case HEISEN_STATUS_ABORTED: return "aborted";
    default: return heisen_strerror(outcome);
    }
}

static int read_all(int fd, struct buf *b)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        buf_add(b, chunk, (size_t)n);
    }
}

static int parse_options(int argc, char **argv)
{
    const char *pos[3];
    int npos = 0, only_pos = 0;
    char *end;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (npos == 3) {
                fprintf(stderr, PROG ": too many arguments: %s\n", a);
                return -1;
            }
            pos[npos++] = a;
            continue;
        }
#define NEED() do { if (!val) { fprintf(stderr, PROG ": %s needs a value\n", a); return -1; } i++; } while (0)
        if (!strcmp(a, "--")) {
            only_pos = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "-X")) {
            NEED();
            opt.method = val;
        } else if (!strcmp(a, "-d")) {
            NEED();
            opt.has_body = 1;
            opt.body.len = 0;
            if (!strcmp(val, "-")) {
                if (read_all(STDIN_FILENO, &opt.body) != 0) {
                    fprintf(stderr, PROG ": reading stdin: %s\n", strerror(errno));
                    return -1;
                }
            } else if (val[0] == '@') {
                int fd = open(val + 1, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || read_all(fd, &opt.body) != 0) {
                    fprintf(stderr, PROG ": %s: %s\n", val + 1, strerror(errno));
                    if (fd >= 0)
                        close(fd);
                    return -1;
                }
                close(fd);
            } else {
                buf_str(&opt.body, val);
            }
            buf_reserve(&opt.body, 0);  /* never a NULL pointer, even when empty */
        } else if (!strcmp(a, "-p")) {
            NEED();
            if (!strchr(val, '=') || val[0] == '=' || opt.nparams == MAX_LIST) {
                fprintf(stderr, PROG ": -p wants NAME=VALUE\n");
                return -1;
            }
            opt.params[opt.nparams++] = val;
        } else if (!strcmp(a, "-H")) {
            NEED();
            if (!strchr(val, ':') || val[0] == ':' || opt.nheaders == MAX_LIST) {
                fprintf(stderr, PROG ": -H wants 'Name: value'\n");
                return -1;
            }
            opt.headers[opt.nheaders++] = val;
        } else if (!strcmp(a, "-t")) {
            NEED();
            opt.timeout_s = strtod(val, &end);
            if (*end || opt.timeout_s <= 0 || opt.timeout_s > 4e6) {
                fprintf(stderr, PROG ": bad -t %s\n", val);
                return -1;
            }
        } else if (!strcmp(a, "-k")) {
            opt.keepalive = 1;
        } else if (!strcmp(a, "-i")) {
            opt.show_headers = 1;
        } else if (!strcmp(a, "--raw")) {
            opt.raw = 1;
        } else if (!strcmp(a, "-q")) {
            opt.quiet = 1;
        } else if (!strcmp(a, "--status")) {
            opt.status_mode = 1;
        } else if (!strcmp(a, "--no-probe")) {
            opt.probe = -1;
        } else if (!strcmp(a, "--docroot")) {
            NEED();
            opt.docroot = val;
        } else if (!strcmp(a, "-n") || !strcmp(a, "-c") || !strcmp(a, "-m")) {
            NEED();
            unsigned long long v = strtoull(val, &end, 10);
            if (*end || val[0] == '-' || v == 0 || (a[1] != 'n' && v > 100000)) {
                fprintf(stderr, PROG ": bad %s %s\n", a, val);
                return -1;
            }
            if (a[1] == 'n')
                opt.n = v;
            else if (a[1] == 'c')
                opt.c = (int)v;
            else
                opt.max_conns = (int)v;
        } else {
            fprintf(stderr, PROG ": unknown option %s (try --help)\n", a);
            return -1;
        }
#undef NEED
    }
    if (opt.status_mode) {
        if (npos != 1) {
            fprintf(stderr, PROG ": --status takes just BACKEND\n");
            return -1;
        }
        opt.backend = pos[0];
        return 0;
    }
    if (npos < 2) {
        usage(stderr);
        return -1;
    }
    opt.backend = pos[0];
    opt.script = pos[1];
    opt.query = npos == 3 ? pos[2] : NULL;
    if (opt.query && opt.query[0] == '?')
        opt.query++;
    if (!opt.method)
        opt.method = opt.has_body ? "POST" : "GET";
    if (opt.c && !opt.n)
        opt.n = (uint64_t)opt.c;
    if (opt.n && !opt.c)
        opt.c = 1;

    /* SCRIPT_FILENAME = DOCUMENT_ROOT + SCRIPT_NAME */
    if (opt.docroot) {
        snprintf(opt.docroot_buf, sizeof(opt.docroot_buf), "%s", opt.docroot);
        size_t l = strlen(opt.docroot_buf);
        while (l > 1 && opt.docroot_buf[l - 1] == '/')
            opt.docroot_buf[--l] = '\0';
        snprintf(opt.script_name, sizeof(opt.script_name), "%s%s", opt.script[0] == '/' ? "" : "/",
                 opt.script);
    } else {
        char abs[PATH_MAX];
        if (opt.script[0] == '/') {
            snprintf(abs, sizeof(abs), "%s", opt.script);
        } else {
            char cwd[PATH_MAX / 2];
            if (!getcwd(cwd, sizeof(cwd)))
                snprintf(cwd, sizeof(cwd), "/");
            snprintf(abs, sizeof(abs), "%s/%.*s", strcmp(cwd, "/") ? cwd : "", PATH_MAX / 2 - 2, opt.script);
        }
        char *slash = strrchr(abs, '/');
        snprintf(opt.script_name, sizeof(opt.script_name), "%s", slash);
        *slash = '\0';
        snprintf(opt.docroot_buf, sizeof(opt.docroot_buf), "%s", abs[0] ? abs : "/");
    }
    snprintf(opt.request_uri, sizeof(opt.request_uri), "%s%s%s", opt.script_name,
             opt.query ? "?" : "", opt.query ? opt.query : "");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

struct run {
    heisen_reactor *reactor;
    heisen_fcgi_client *client;
    heisen_timer *progress;
    heisen_timer *deadline;
    int bench;
    int exit_code;
    int first_failure;              /* exit code of the first failed request (bench) */
    char first_reason[256];
    uint64_t sent, done, in_flight;
    uint64_t outcomes[32];          /* by heisen_status value */
    uint64_t classes[6];            /* HTTP status / 100 */
    uint64_t stderr_bytes;
    uint32_t *latency_us;
    double t0;
    int tty;
};

struct req_ctx {
    struct run *run;
    double start;
};

/* Control characters from the backend are escaped before they reach a terminal. */
static void write_stderr_safe(const uint8_t *data, size_t len)
{
    struct buf b = {0};
    for (size_t i = 0; i < len; i++) {
        unsigned char c = data[i];
        if (c == '\0')
            continue;
        if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f))
            buf_add(&b, &c, 1);
        else
            buf_printf(&b, "\\x%02x", c);
    }
    if (b.len)
        fwrite(b.p, 1, b.len, stderr);
    buf_free(&b);
}

static int32_t on_headers(heisen_fcgi_request *q, int32_t status, void *user_data)
{
    struct req_ctx *ctx = user_data;
    struct run *run = ctx->run;
    if (status >= 100 && status < 600)
        run->classes[status / 100]++;
    if (run->bench || !opt.show_headers)
        return 0;
    size_t count = 0;
    heisen_fcgi_request_header_count(q, &count);
    printf("Status: %d\r\n", (int)status);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *name, *value;
        size_t nl, vl;
        if (heisen_fcgi_request_header(q, i, &name, &nl, &value, &vl) != HEISEN_STATUS_OK)
            continue;
        fwrite(name, 1, nl, stdout);
        fputs(": ", stdout);
        fwrite(value, 1, vl, stdout);
        fputs("\r\n", stdout);
    }
    fputs("\r\n", stdout);
    return 0;
}

static int32_t on_body(heisen_fcgi_request *q, const uint8_t *data, size_t len, void *user_data)
{
    struct req_ctx *ctx = user_data;
    (void)q;
    if (!ctx->run->bench && !opt.quiet)
        fwrite(data, 1, len, stdout);
    return 0;
}

static int32_t on_stderr(heisen_fcgi_request *q, const uint8_t *data, size_t len, void *user_data)
{
    struct req_ctx *ctx = user_data;
    (void)q;
    ctx->run->stderr_bytes += len;
    if (!ctx->run->bench)
        write_stderr_safe(data, len);
    return 0;
}

static void send_more(struct run *run);

static void record_end(struct run *run, int32_t outcome, const char *reason, double start)
{
    if (outcome >= 0 && outcome < 32)
        run->outcomes[outcome]++;
    else
        run->outcomes[31]++;
    if (run->latency_us && run->done < opt.n) {
        double us = (mono_seconds() - start) * 1e6;
        run->latency_us[run->done] = us > 4e9 ? 4000000000u : (uint32_t)us;
    }
    run->done++;
    if (outcome != HEISEN_STATUS_OK && run->first_failure == 0) {
        run->first_failure = exit_code_for(outcome);
        snprintf(run->first_reason, sizeof(run->first_reason), "%s: %s", outcome_name(outcome),
                 reason ? reason : heisen_strerror(outcome));
    }
    if (!run->bench) {
        run->exit_code = exit_code_for(outcome);
        if (outcome != HEISEN_STATUS_OK)
            fprintf(stderr, PROG ": %s: %s\n", outcome_name(outcome), reason ? reason : heisen_strerror(outcome));
    }
}

static void on_end(heisen_fcgi_request *q, heisen_status outcome, void *user_data)
{
    struct req_ctx *ctx = user_data;
    struct run *run = ctx->run;
    run->in_flight--;
    record_end(run, (int32_t)outcome, heisen_fcgi_request_reason(q), ctx->start);
    if (run->done >= (run->bench ? opt.n : 1))
        heisen_reactor_stop(run->reactor);
    else
        send_more(run);
}

static heisen_fcgi_request *build_request(void)
{
    heisen_fcgi_request *q = NULL;
    if (heisen_fcgi_request_new(&q) != HEISEN_STATUS_OK)
        return NULL;
    heisen_fcgi_request_set_cgi(q, opt.method, opt.request_uri, "HTTP/1.1", opt.docroot_buf,
                                opt.script_name, NULL);
    int have_ct = 0;
    for (int i = 0; i < opt.nheaders; i++) {
        const char *h = opt.headers[i];
        const char *colon = strchr(h, ':');
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t nl = (size_t)(colon - h);
        if (nl == 12 && !strncasecmp(h, "content-type", 12))
            have_ct = 1;
        heisen_fcgi_request_add_http_header(q, (const uint8_t *)h, nl, (const uint8_t *)v, strlen(v));
    }
    if (opt.has_body) {
        if (!have_ct)
            heisen_fcgi_request_add_http_header(q, (const uint8_t *)"Content-Type", 12,
                                                (const uint8_t *)"application/octet-stream", 24);
        heisen_fcgi_request_set_body(q, (const uint8_t *)opt.body.p, opt.body.len);
    }
    for (int i = 0; i < opt.nparams; i++) {
        const char *eq = strchr(opt.params[i], '=');
        heisen_fcgi_request_add_param(q, (const uint8_t *)opt.params[i], (size_t)(eq - opt.params[i]),
                                      (const uint8_t *)eq + 1, strlen(eq + 1));
    }
    if (opt.raw)
        heisen_fcgi_request_set_raw(q, 1);
    if (opt.timeout_s > 0)
        heisen_fcgi_request_set_timeout(q, (uint32_t)(opt.timeout_s * 1000.0 + 0.5));
    return q;
}

/* Keeps CONCURRENCY requests in flight until all are sent. A request whose send fails counts
 * as ended (its callbacks never run). */
static void send_more(struct run *run)
{
    uint64_t total = run->bench ? opt.n : 1;
    uint64_t width = run->bench ? (uint64_t)opt.c : 1;
    while (run->sent < total && run->in_flight < width) {
        heisen_fcgi_request *q = build_request();
        struct req_ctx *ctx = malloc(sizeof(*ctx));
        run->sent++;
        if (!q || !ctx) {
            free(ctx);
            heisen_fcgi_request_free(q);
            record_end(run, HEISEN_STATUS_NO_MEMORY, "out of memory", mono_seconds());
            continue;
        }
        ctx->run = run;
        ctx->start = mono_seconds();
        heisen_status st = heisen_fcgi_request_set_callbacks(q, on_headers, on_body, on_stderr, on_end,
                                                             NULL, ctx, free);
        if ((int32_t)st != HEISEN_STATUS_OK) {
            heisen_fcgi_request_free(q);
            record_end(run, (int32_t)st, "set_callbacks failed", mono_seconds());
            continue;
        }
        double start = ctx->start;
        st = heisen_fcgi_request_send(run->client, q);   /* takes q (and ctx) on every path */
        if ((int32_t)st != HEISEN_STATUS_OK) {
            record_end(run, (int32_t)st, heisen_strerror(st), start);
            continue;
        }
        run->in_flight++;
    }
    if (run->done >= total)
        heisen_reactor_stop(run->reactor);
}

static void on_progress(heisen_timer *t, void *user_data)
{
    struct run *run = user_data;
    (void)t;
    double el = mono_seconds() - run->t0;
    uint64_t failed = run->done - run->outcomes[HEISEN_STATUS_OK];
    fprintf(stderr, "\r%llu/%llu requests  %.0f req/s  %llu failed  %llu in flight \033[K",
            (unsigned long long)run->done, (unsigned long long)opt.n, el > 0 ? (double)run->done / el : 0.0,
            (unsigned long long)failed, (unsigned long long)run->in_flight);
    fflush(stderr);
}

static void on_deadline(heisen_timer *t, void *user_data)
{
    struct run *run = user_data;
    (void)t;
    /* the library's own timeout should have fired already; this is the tool's safety net */
    fprintf(stderr, PROG ": timeout: no answer within %.3g s\n", opt.timeout_s);
    run->exit_code = EXIT_TIMEOUT;
    heisen_reactor_stop(run->reactor);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *sorted, uint64_t n, double p)
{
    if (n == 0)
        return 0.0;
    uint64_t idx = (uint64_t)(p * (double)(n - 1) + 0.5);
    return sorted[idx] / 1000.0;
}

static void print_summary(struct run *run, double elapsed)
{
    uint64_t stat[20] = {0};
    for (int i = 0; i < 20; i++)
        heisen_fcgi_client_stat(run->client, i, &stat[i]);
    uint64_t n = run->done;
    qsort(run->latency_us, (size_t)n, sizeof(uint32_t), cmp_u32);
    uint64_t other = 0;
    for (int i = 0; i < 32; i++)
        if (i != HEISEN_STATUS_OK && i != HEISEN_STATUS_BAD_GATEWAY && i != HEISEN_STATUS_TRUNCATED &&
            i != HEISEN_STATUS_OVERLOADED && i != HEISEN_STATUS_TIMEOUT && i != HEISEN_STATUS_ABORTED &&
            i != HEISEN_STATUS_CANT_MPX_CONN && i != HEISEN_STATUS_UNKNOWN_ROLE)
            other += run->outcomes[i];
    printf("backend:      %s\n", opt.backend);
    printf("script:       %s%s%s%s\n", opt.docroot_buf, opt.script_name, opt.query ? "?" : "",
           opt.query ? opt.query : "");
    if (opt.keepalive)
        printf("requests:     %llu (concurrency %d, keep-alive, at most %d connections%s%s)\n",
               (unsigned long long)n, opt.c, opt.conns, opt.conns_why ? ": " : "",
               opt.conns_why ? opt.conns_why : "");
    else
        printf("requests:     %llu (concurrency %d, a connection per request)\n", (unsigned long long)n, opt.c);
    printf("time:         %.3f s\n", elapsed);
    printf("req/s:        %.1f\n", elapsed > 0 ? (double)n / elapsed : 0.0);
    printf("latency:      p50 %.3f ms   p90 %.3f ms   p99 %.3f ms   max %.3f ms\n",
           pct_ms(run->latency_us, n, 0.50), pct_ms(run->latency_us, n, 0.90),
           pct_ms(run->latency_us, n, 0.99), n ? run->latency_us[n - 1] / 1000.0 : 0.0);
    printf("outcomes:     complete %llu   bad gateway %llu   truncated %llu   overloaded %llu   "
           "timeout %llu   aborted %llu   cant-mpx %llu   unknown-role %llu   other %llu\n",
           (unsigned long long)run->outcomes[HEISEN_STATUS_OK],
           (unsigned long long)run->outcomes[HEISEN_STATUS_BAD_GATEWAY],
           (unsigned long long)run->outcomes[HEISEN_STATUS_TRUNCATED],
           (unsigned long long)run->outcomes[HEISEN_STATUS_OVERLOADED],
           (unsigned long long)run->outcomes[HEISEN_STATUS_TIMEOUT],
           (unsigned long long)run->outcomes[HEISEN_STATUS_ABORTED],
           (unsigned long long)run->outcomes[HEISEN_STATUS_CANT_MPX_CONN],
           (unsigned long long)run->outcomes[HEISEN_STATUS_UNKNOWN_ROLE], (unsigned long long)other);
    printf("http status:  1xx %llu   2xx %llu   3xx %llu   4xx %llu   5xx %llu\n",
           (unsigned long long)run->classes[1], (unsigned long long)run->classes[2],
           (unsigned long long)run->classes[3], (unsigned long long)run->classes[4],
           (unsigned long long)run->classes[5]);
    printf("connections:  opened %llu   reused %llu   peak %llu   retries %llu   failovers %llu\n",
           (unsigned long long)stat[HEISEN_FCGI_STAT_CONNS_OPENED],
           (unsigned long long)stat[HEISEN_FCGI_STAT_CONNS_REUSED],
           (unsigned long long)stat[HEISEN_FCGI_STAT_PEAK_CONNS],
           (unsigned long long)stat[HEISEN_FCGI_STAT_RETRIES],
           (unsigned long long)stat[HEISEN_FCGI_STAT_FAILOVERS]);
    if (stat[HEISEN_FCGI_STAT_QUEUE_WAIT_US_MAX])
        printf("queue wait:   max %.3f ms   mean %.3f ms\n",
               stat[HEISEN_FCGI_STAT_QUEUE_WAIT_US_MAX] / 1000.0,
               n ? (double)stat[HEISEN_FCGI_STAT_QUEUE_WAIT_US_TOTAL] / 1000.0 / (double)n : 0.0);
    if (run->stderr_bytes)
        printf("stderr:       %llu bytes from the backend\n", (unsigned long long)run->stderr_bytes);
    if (run->first_failure)
        printf("first failure: %s\n", run->first_reason);
}

/* ---- --status ---------------------------------------------------------------------------- */

static void on_values(heisen_status status, const char *values, void *user_data)
{
    struct run *run = user_data;
    if ((int32_t)status == HEISEN_STATUS_OK) {
        printf("%s", values ? values : "");
        if (values && *values && values[strlen(values) - 1] != '\n')
            printf("\n");
        run->exit_code = EXIT_OK;
    } else {
        fprintf(stderr, PROG ": %s: %s\n", opt.backend, outcome_name((int32_t)status));
        run->exit_code = (int32_t)status == HEISEN_STATUS_TIMEOUT ? EXIT_TIMEOUT : EXIT_BAD_GATEWAY;
    }
    heisen_reactor_stop(run->reactor);
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct run run;
    heisen_status st;
    heisen_fcgi_config *cfg = NULL;

    memset(&run, 0, sizeof(run));
    if (parse_options(argc, argv) != 0)
        return EXIT_USAGE;
    if (opt.status_mode && opt.timeout_s == 0)
        opt.timeout_s = 5;
    run.bench = opt.n > 0;
    run.exit_code = EXIT_OTHER;

    if ((st = heisen_reactor_new(&run.reactor)) != HEISEN_STATUS_OK) {
        fprintf(stderr, PROG ": reactor: %s\n", heisen_strerror(st));
        return EXIT_OTHER;
    }
    if (heisen_fcgi_config_new(&cfg) != HEISEN_STATUS_OK)
        return EXIT_OTHER;
    char *list = strdup(opt.backend), *save = NULL;
    for (char *b = strtok_r(list, ",", &save); b; b = strtok_r(NULL, ",", &save)) {
        st = heisen_fcgi_config_add_backend(cfg, b);
        if (st != HEISEN_STATUS_OK) {
            fprintf(stderr, PROG ": bad backend address %s: %s\n", b, heisen_strerror(st));
            free(list);
            heisen_fcgi_config_free(cfg);
            heisen_reactor_free(run.reactor);
            return EXIT_USAGE;
        }
    }
    free(list);
    int conns = opt.max_conns ? opt.max_conns : (run.bench ? opt.c : 1);
    if (run.bench && opt.keepalive && !opt.max_conns && opt.probe >= 0) {
        /* php-fpm pins a worker to each kept connection: never keep more than it has workers */
        char first[512];
        snprintf(first, sizeof(first), "%s", opt.backend);
        first[strcspn(first, ",")] = '\0';
        long max = fcgi_probe_max_conns(first, opt.timeout_s > 0 ? (uint32_t)(opt.timeout_s * 1000) : 3000);
        if (max > 0) {
            opt.conns_why = "the backend's FCGI_MAX_CONNS";
            if (max < conns)
                conns = (int)max;
        } else if (conns > 4) {
            conns = 4;
            opt.conns_why = "the backend does not report FCGI_MAX_CONNS; -m to change";
        }
    }
    opt.conns = conns;
    heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_KEEP_ALIVE, opt.keepalive);
    heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_MAX_CONNS, conns);
    heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_MAX_IDLE, conns);
    if (run.bench && opt.c > 4096)
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_QUEUE_LIMIT, opt.c);
    if (opt.timeout_s > 0) {
        int64_t ms = (int64_t)(opt.timeout_s * 1000.0 + 0.5);
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_CONNECT_TIMEOUT_MS, ms);
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_READ_TIMEOUT_MS, ms);
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_SEND_TIMEOUT_MS, ms);
    }
    st = heisen_fcgi_client_new(run.reactor, cfg, &run.client);
    heisen_fcgi_config_free(cfg);
    if (st != HEISEN_STATUS_OK) {
        fprintf(stderr, PROG ": FastCGI client: %s\n", heisen_strerror(st));
        heisen_reactor_free(run.reactor);
        return EXIT_OTHER;
    }

    if (opt.timeout_s > 0 && !run.bench &&
        heisen_timer_new(run.reactor, on_deadline, &run, NULL, &run.deadline) == HEISEN_STATUS_OK)
        heisen_timer_start(run.deadline, (uint64_t)(opt.timeout_s * 1000.0) + 1000, 0);

    if (opt.status_mode) {
        st = heisen_fcgi_client_get_values(run.client, 0, on_values, &run, NULL);
        if (st != HEISEN_STATUS_OK) {
            fprintf(stderr, PROG ": %s: %s\n", opt.backend, heisen_strerror(st));
            run.exit_code = EXIT_BAD_GATEWAY;
        } else {
            heisen_reactor_run(run.reactor, HEISEN_RUN_DEFAULT);
        }
    } else {
        if (run.bench) {
            run.latency_us = calloc((size_t)opt.n, sizeof(uint32_t));
            if (!run.latency_us) {
                fprintf(stderr, PROG ": -n %llu: out of memory\n", (unsigned long long)opt.n);
                return EXIT_USAGE;
            }
            run.tty = isatty(STDERR_FILENO);
            if (run.tty && heisen_timer_new(run.reactor, on_progress, &run, NULL, &run.progress) == HEISEN_STATUS_OK)
                heisen_timer_start(run.progress, 250, 250);
        }
        run.t0 = mono_seconds();
        send_more(&run);
        if (run.done < (run.bench ? opt.n : 1))
            heisen_reactor_run(run.reactor, HEISEN_RUN_DEFAULT);
        double elapsed = mono_seconds() - run.t0;
        if (run.progress)
            fprintf(stderr, "\r\033[K");
        if (run.bench) {
            print_summary(&run, elapsed);
            run.exit_code = run.first_failure;
        }
        fflush(stdout);
    }
    heisen_timer_free(run.progress);
    heisen_timer_free(run.deadline);
    heisen_fcgi_client_free(run.client);
    heisen_reactor_free(run.reactor);
    free(run.latency_us);
    buf_free(&opt.body);
    return run.exit_code;
}
