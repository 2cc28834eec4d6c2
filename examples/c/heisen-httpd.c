/* heisen-httpd - a small HTTP/1.1 server in front of FastCGI backends, built only on heisen's
 * C API: listener, streams, timers, waker and the FastCGI client.
 *
 *   heisen-httpd -bind 8080 -sandbox /srv/http \
 *                -fastcgi .php unix:/run/php/php8.2-fpm.sock -indexfiles index.php -cpu 1 -foreground
 *
 * Layout of this file:
 *   options ............ command line
 *   connection ......... per-client state machine: HEAD -> BODY -> WAIT -> (HEAD | CLOSING)
 *   static files ....... sandboxed paths, Content-Type, Last-Modified / If-Modified-Since
 *   FastCGI ............ CGI parameters, streamed request body, streamed response, outcome mapping
 *   workers ............ one thread per -cpu, each with its own reactor and SO_REUSEPORT listener
 *   main ............... signals (sigwait in the main thread -> heisen_waker_wake), startup, shutdown
 */
#define _GNU_SOURCE
#include <heisen.h>

#include "common.h"
#include "fcgi_probe.h"
#include "http_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUTES 16
#define MAX_BACKENDS 32
#define MAX_INDEX 16
#define MAX_WORKERS 256
#define SERVER_NAME "heisen-httpd"

/* ------------------------------------------------------------------------------------------ */
/* options                                                                                     */

struct route {
    char *ext;                          /* ".php" */
    size_t ext_len;
    const char *backends[MAX_BACKENDS];
    int nbackends;
    int keepalive;                      /* decided at startup (see decide_keepalive) */
    int conns;                          /* FastCGI connections per backend and worker, 0 = default */
};

static struct options {
    const char *bind;
    char sandbox[PATH_MAX];             /* realpath of -sandbox */
    size_t sandbox_len;
    struct route routes[MAX_ROUTES];
    int nroutes;
    char *index[MAX_INDEX];
    int nindex;
    int cpu;
    int foreground;
    const char *accesslog;
    const char *pidfile;
    uint32_t header_timeout_ms;         /* whole request head must arrive within this */
    uint32_t keepalive_timeout_ms;      /* idle between requests */
    uint32_t io_timeout_ms;             /* idle while reading a body or while a client does not read */
    uint32_t fastcgi_timeout_ms;        /* 0 = library defaults */
    int fastcgi_keepalive;              /* 0, 1, or -1 = auto */
    int fastcgi_conns;                  /* 0 = decided at startup */
    int fastcgi_balance;
    size_t max_header_bytes;
    uint64_t max_body_bytes;
    int max_conns;                      /* per worker */
    uint32_t grace_ms;                  /* shutdown: time given to requests in flight */
} opt;

static FILE *g_log;                     /* access log, NULL = off */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: heisen-httpd [options]\n"
        "  -bind PORT|ADDR:PORT         listen address (default 8080; port 0 picks one)\n"
        "  -sandbox DIR                 document root; nothing outside it is served (default .)\n"
        "  -fastcgi EXT BACKEND         send *EXT requests to BACKEND (unix:/path, /path, host:port);\n"
        "                               repeat for more extensions, or more backends for one (balanced)\n"
        "  -indexfiles A[,B...]         directory index files, in order (default index.html)\n"
        "  -cpu N                       worker threads, each with its own reactor (default 1, 0 = all)\n"
        "  -foreground                  do not detach from the terminal\n"
        "  -accesslog FILE|-|off        one line per request (default - = stdout)\n"
        "  -pidfile FILE                write the server's pid there once it listens\n"
        "  -header-timeout MS           time to receive a request head (default 10000)\n"
        "  -keepalive-timeout MS        idle time between requests (default 15000)\n"
        "  -io-timeout MS               idle time reading a body / writing to a slow client (default 30000)\n"
        "  -fastcgi-timeout MS          FastCGI connect/send/read timeout (default: library's)\n"
        "  -fastcgi-keepalive 0|1|auto  reuse FastCGI connections; auto (default): only when the\n"
        "                               backend reports FCGI_MAX_CONNS (php-fpm does not), as a\n"
        "                               kept connection pins a php-fpm worker\n"
        "  -fastcgi-conns N             FastCGI connections per backend and worker; with keep-alive\n"
        "                               keep N x cpu <= pm.max_children (default: FCGI_MAX_CONNS / cpu)\n"
        "  -fastcgi-balance rr|lc       round-robin or least-connections (default rr)\n"
        "  -max-header-bytes N          request head limit (default 32768, beyond: 431)\n"
        "  -max-body-bytes N            request body limit (default 67108864, beyond: 413)\n"
        "  -max-conns N                 connections per worker (default 16384)\n"
        "  -grace MS                    on SIGTERM/SIGINT, time left to requests in flight (default 10000)\n"
        "signals: SIGTERM/SIGINT shut down cleanly; SIGUSR1 prints each worker's FastCGI client\n"
        "statistics to stderr\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv)
{
    const char *sandbox = ".";
    uint64_t v;

    opt.bind = "8080";
    opt.cpu = 1;
    opt.accesslog = "-";
    opt.header_timeout_ms = 10000;
    opt.keepalive_timeout_ms = 15000;
    opt.io_timeout_ms = 30000;
    opt.fastcgi_keepalive = -1;
    opt.max_header_bytes = 32768;
    opt.max_body_bytes = 64u << 20;
    opt.max_conns = 16384;
    opt.grace_ms = 10000;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() do { if (!val) { fprintf(stderr, "heisen-httpd: %s needs a value\n", a); return -1; } i++; } while (0)
#define NUM_VALUE(dst, max) do { NEED_VALUE(); if (parse_u64(val, &v) || v > (uint64_t)(max)) { \
            fprintf(stderr, "heisen-httpd: bad value for %s: %s\n", a, val); return -1; } (dst) = v; } while (0)
        if (a[0] == '-' && a[1] == '-')
            a++;                        /* --bind works too */
        if (!strcmp(a, "-h") || !strcmp(a, "-help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "-bind")) {
            NEED_VALUE();
            opt.bind = val;
        } else if (!strcmp(a, "-sandbox")) {
            NEED_VALUE();
            sandbox = val;
        } else if (!strcmp(a, "-fastcgi")) {
            if (i + 2 >= argc) {
                fprintf(stderr, "heisen-httpd: -fastcgi needs EXT BACKEND\n");
                return -1;
            }
            const char *ext = argv[i + 1], *backend = argv[i + 2];
            i += 2;
            if (ext[0] != '.' || strlen(ext) < 2 || strchr(ext, '/')) {
                fprintf(stderr, "heisen-httpd: -fastcgi extension must look like .php, not %s\n", ext);
                return -1;
            }
            struct route *r = NULL;
            for (int k = 0; k < opt.nroutes; k++)
                if (!strcmp(opt.routes[k].ext, ext))
                    r = &opt.routes[k];
            if (!r) {
                if (opt.nroutes == MAX_ROUTES) {
                    fprintf(stderr, "heisen-httpd: too many -fastcgi extensions\n");
                    return -1;
                }
                r = &opt.routes[opt.nroutes++];
                r->ext = (char *)ext;
                r->ext_len = strlen(ext);
            }
            if (r->nbackends == MAX_BACKENDS) {
                fprintf(stderr, "heisen-httpd: too many backends for %s\n", ext);
                return -1;
            }
            r->backends[r->nbackends++] = backend;
        } else if (!strcmp(a, "-indexfiles")) {
            NEED_VALUE();
            char *copy = strdup(val), *save = NULL;
            for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
                if (opt.nindex == MAX_INDEX || strchr(t, '/')) {
                    fprintf(stderr, "heisen-httpd: bad or too many -indexfiles\n");
                    free(copy);
                    return -1;
                }
                opt.index[opt.nindex++] = strdup(t);
            }
            free(copy);
        } else if (!strcmp(a, "-cpu")) {
            NUM_VALUE(opt.cpu, MAX_WORKERS);
        } else if (!strcmp(a, "-foreground")) {
            opt.foreground = 1;
        } else if (!strcmp(a, "-accesslog")) {
            NEED_VALUE();
            opt.accesslog = val;
        } else if (!strcmp(a, "-pidfile")) {
            NEED_VALUE();
            opt.pidfile = val;
        } else if (!strcmp(a, "-header-timeout")) {
            NUM_VALUE(opt.header_timeout_ms, UINT32_MAX);
        } else if (!strcmp(a, "-keepalive-timeout")) {
            NUM_VALUE(opt.keepalive_timeout_ms, UINT32_MAX);
        } else if (!strcmp(a, "-io-timeout")) {
            NUM_VALUE(opt.io_timeout_ms, UINT32_MAX);
        } else if (!strcmp(a, "-fastcgi-timeout")) {
            NUM_VALUE(opt.fastcgi_timeout_ms, UINT32_MAX);
        } else if (!strcmp(a, "-fastcgi-keepalive")) {
            if (val && !strcmp(val, "auto")) {
                i++;
                opt.fastcgi_keepalive = -1;
            } else {
                NUM_VALUE(opt.fastcgi_keepalive, 1);
            }
        } else if (!strcmp(a, "-fastcgi-conns")) {
            NUM_VALUE(opt.fastcgi_conns, 100000);
        } else if (!strcmp(a, "-fastcgi-balance")) {
            NEED_VALUE();
            if (!strcmp(val, "rr"))
                opt.fastcgi_balance = 0;
            else if (!strcmp(val, "lc"))
                opt.fastcgi_balance = 1;
            else {
                fprintf(stderr, "heisen-httpd: -fastcgi-balance is rr or lc\n");
                return -1;
            }
        } else if (!strcmp(a, "-max-header-bytes")) {
            NUM_VALUE(opt.max_header_bytes, 1u << 24);
        } else if (!strcmp(a, "-max-body-bytes")) {
            NUM_VALUE(opt.max_body_bytes, UINT64_MAX);
        } else if (!strcmp(a, "-max-conns")) {
            NUM_VALUE(opt.max_conns, 10000000);
        } else if (!strcmp(a, "-grace")) {
            NUM_VALUE(opt.grace_ms, UINT32_MAX);
        } else {
            fprintf(stderr, "heisen-httpd: unknown option %s (try -help)\n", argv[i]);
            return -1;
        }
#undef NEED_VALUE
#undef NUM_VALUE
    }
    if (opt.cpu == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        opt.cpu = n > 0 ? (n > MAX_WORKERS ? MAX_WORKERS : (int)n) : 1;
    }
    if (opt.nindex == 0)
        opt.index[opt.nindex++] = strdup("index.html");
    if (opt.max_header_bytes < 256)
        opt.max_header_bytes = 256;
    if (!realpath(sandbox, opt.sandbox)) {
        fprintf(stderr, "heisen-httpd: -sandbox %s: %s\n", sandbox, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(opt.sandbox, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "heisen-httpd: -sandbox %s is not a directory\n", sandbox);
        return -1;
    }
    opt.sandbox_len = strlen(opt.sandbox);
    if (opt.sandbox_len == 1)
        opt.sandbox_len = 0;            /* sandbox "/" : every path is inside */
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP helpers                                                                                */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
    }
}

static const char *mime_type(const char *path)
{
    static const char *const table[][2] = {
        {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"}, {".md", "text/markdown; charset=utf-8"},
        {".csv", "text/csv; charset=utf-8"}, {".xml", "application/xml"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"}, {".gif", "image/gif"}, {".webp", "image/webp"},
        {".avif", "image/avif"}, {".ico", "image/vnd.microsoft.icon"}, {".pdf", "application/pdf"},
        {".wasm", "application/wasm"}, {".woff", "font/woff"}, {".woff2", "font/woff2"},
        {".ttf", "font/ttf"}, {".otf", "font/otf"}, {".mp3", "audio/mpeg"}, {".ogg", "audio/ogg"},
        {".mp4", "video/mp4"}, {".webm", "video/webm"}, {".zip", "application/zip"},
        {".gz", "application/gzip"}, {".tar", "application/x-tar"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
            if (!strcasecmp(dot, table[i][0]))
                return table[i][1];
    return "application/octet-stream";
}

static void http_date(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* RFC 9110 IMF-fixdate only (the obsolete formats are answered with a full 200, which is safe). */
static int parse_http_date(const char *s, size_t n, time_t *out)
{
    char tmp[64];
    struct tm tm;
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    *out = timegm(&tm);
    return 0;
}

static int valid_token(const uint8_t *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr("!#$%&'*+-.^_`|~", c))))
            return 0;
    }
    return 1;
}

static int valid_field_value(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return 0;               /* CR, LF, NUL never reach the client: no response splitting */
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* connections                                                                                 */

enum conn_state {
    ST_HEAD,        /* waiting for (more of) a request head */
    ST_BODY,        /* reading the request body (the response may already be going out) */
    ST_WAIT,        /* body read, response in progress */
    ST_CLOSING      /* response flushed or abandoned; waiting for the client to go (lingering close) */
};

enum body_mode { BODY_DISCARD, BODY_FCGI, BODY_BUFFER };
enum framing { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_CLOSE };

struct worker;

struct conn {
    struct worker *w;
    struct conn *prev, *next;
    int refs;
    int closed;
    heisen_stream *stream;
    heisen_timer *timer;
    char remote_addr[INET6_ADDRSTRLEN];
    uint16_t remote_port;
    char local_addr[INET6_ADDRSTRLEN];
    uint16_t local_port;

    struct buf in;                  /* received, not yet consumed */
    enum conn_state state;
    int processing, reprocess;
    int peer_eof;                   /* client sent FIN */
    int read_paused;
    int out_busy;                   /* a write returned BUSY, DRAIN not seen yet */
    int head_timer;                 /* header timeout running for the current head */
    uint64_t linger_deadline;

    /* the current request */
    int in_request;
    char method[24];
    char *target;                   /* raw request target (origin-form) */
    int minor;
    int keep_alive;
    int head_only;
    int expect_continue;
    int continue_sent;              /* "100 Continue" written */
    double t_start;
    int status;
    const char *note;               /* for the access log */
    uint64_t body_bytes_out;
    enum body_mode body_mode;
    int body_kind;
    uint64_t body_left;
    struct http_chunked chunk;
    struct buf body;                /* BODY_BUFFER: chunked body collected for FastCGI */
    int body_blocked;               /* FastCGI write returned BUSY: wait for on_drain */
    int body_done;
    int resp_done;

    /* static response */
    int file_fd;
    uint64_t file_left;

    /* FastCGI response */
    int route;
    heisen_fcgi_request *pending;   /* built, not sent yet (chunked body being collected) */
    heisen_fcgi_request *freq;      /* sent, on_end not seen yet */
    int headers_sent;
    int fcgi_paused;
    enum framing framing;
    int64_t resp_cl;
    uint64_t resp_sent;
};

struct worker {
    int index;
    pthread_t thread;
    sem_t ready;
    int ready_status;
    char bind_addr[300];
    uint16_t port;
    heisen_reactor *reactor;
    heisen_listener *listener;
    heisen_waker *waker;
    heisen_timer *grace;
    heisen_fcgi_client *clients[MAX_ROUTES];
    struct conn *conns;
    int nconns;
    int shutting_down;
    time_t date_time;
    char date[40];
    struct http_request scratch;    /* the parser's output (large: kept out of the stack) */
};

static void conn_process(struct conn *c);
static void conn_close(struct conn *c);
static void static_pump(struct conn *c);
static void fcgi_send(struct conn *c, heisen_fcgi_request *q);

static void conn_ref(struct conn *c)
{
    c->refs++;
}

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->body);
    free(c->target);
    free(c);
}

static void conn_unref_cb(void *user_data)
{
    conn_unref(user_data);
}

static const char *worker_date(struct worker *w)
{
    time_t now = time(NULL);
    if (now != w->date_time) {
        w->date_time = now;
        http_date(now, w->date, sizeof(w->date));
    }
    return w->date;
}

static uint64_t now_ms(struct worker *w)
{
    uint64_t ms = 0;
    heisen_reactor_now_ms(w->reactor, &ms);
    return ms;
}

static void timer_arm(struct conn *c, uint32_t ms)
{
    if (c->timer) {
        if (ms)
            heisen_timer_start(c->timer, ms, 0);
        else
            heisen_timer_stop(c->timer);
    }
}

static void worker_check_done(struct worker *w)
{
    if (w->shutting_down && w->nconns == 0)
        heisen_reactor_stop(w->reactor);
}

static void access_log(struct conn *c)
{
    if (!g_log || !c->in_request)
        return;
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S +0000", &tm);
    struct buf line = {0};
    buf_printf(&line, "%s - - [%s] \"", c->remote_addr, when);
    buf_escaped(&line, c->method[0] ? c->method : "-", c->method[0] ? strlen(c->method) : 1, 0);
    buf_str(&line, " ");
    if (c->target)
        buf_escaped(&line, c->target, strlen(c->target), line.len + 2048);
    else
        buf_str(&line, "-");
    buf_printf(&line, " HTTP/1.%d\" %d %llu %.3fms %s\n", c->minor, c->status,
               (unsigned long long)c->body_bytes_out, (mono_seconds() - c->t_start) * 1000.0,
               c->note ? c->note : "-");
    fwrite(line.p, 1, line.len, g_log);   /* one call: lines of different threads never mix */
    buf_free(&line);
}

/* Writes to the client. BUSY means accepted but above the high-water mark. */
static void conn_write(struct conn *c, const void *data, size_t n)
{
    if (c->closed || !c->stream || n == 0)
        return;
    int32_t st = heisen_stream_write(c->stream, data, n);
    if (st == HEISEN_STATUS_BUSY) {
        if (!c->out_busy) {
            c->out_busy = 1;
            if (c->state == ST_WAIT)
                timer_arm(c, opt.io_timeout_ms);   /* slow reader */
        }
    } else if (st != HEISEN_STATUS_OK) {
        c->keep_alive = 0;          /* the error event will close the connection */
    }
}

static void conn_update_read(struct conn *c)
{
    if (c->closed || !c->stream)
        return;
    int pause = c->body_blocked ||
                (c->state == ST_WAIT && c->in.len > opt.max_header_bytes + 65536) ||
                (c->state == ST_HEAD && c->out_busy && c->in.len > opt.max_header_bytes + 65536);
    if (pause && !c->read_paused) {
        c->read_paused = 1;
        heisen_stream_pause_read(c->stream);
    } else if (!pause && c->read_paused) {
        c->read_paused = 0;
        heisen_stream_resume_read(c->stream);
    }
}

/* The end of the connection, now. Aborts a FastCGI request in flight (on_end(ABORTED) comes
 * later and finds c->closed set), closes the socket, drops the owner's reference. */
static void conn_close(struct conn *c)
{
    if (c->closed)
        return;
    if (c->in_request && !c->resp_done) {
        if (!c->note || !strcmp(c->note, "fcgi") || !strcmp(c->note, "static"))
            c->note = "client-gone";
        if (!c->status)
            c->status = 499;        /* nginx's "client closed request" */
        access_log(c);
    }
    c->closed = 1;
    if (c->freq) {
        heisen_fcgi_request_abort(c->freq);
        c->freq = NULL;
    }
    if (c->pending) {
        heisen_fcgi_request_free(c->pending);
        c->pending = NULL;
    }
    if (c->file_fd >= 0) {
        close(c->file_fd);
        c->file_fd = -1;
    }
    heisen_timer *t = c->timer;
    heisen_stream *s = c->stream;
    c->timer = NULL;
    c->stream = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->w->nconns--;
    struct worker *w = c->w;
    conn_unref(c);                  /* the owner's reference; the handles still hold theirs */
    heisen_timer_free(t);
    heisen_stream_free(s);
    worker_check_done(w);
}

/* Close after everything queued has been sent: SHUT_WR, then wait for the client's FIN (or a
 * short linger) so that unread request bytes never turn into a reset that destroys the
 * response on the client's side. */
static void conn_linger_close(struct conn *c)
{
    if (c->closed)
        return;
    if (c->in_request) {            /* a response cut short: log it now */
        if (!c->resp_done && !c->status)
            c->status = 499;
        access_log(c);
        c->in_request = 0;
    }
    if (c->freq) {
        heisen_fcgi_request_abort(c->freq);
        c->freq = NULL;
    }
    if (c->pending) {
        heisen_fcgi_request_free(c->pending);
        c->pending = NULL;
    }
    c->body_blocked = 0;
    if (c->file_fd >= 0) {
        close(c->file_fd);
        c->file_fd = -1;
    }
    c->state = ST_CLOSING;
    c->in.len = 0;
    c->keep_alive = 0;
    if (c->read_paused) {
        c->read_paused = 0;
        heisen_stream_resume_read(c->stream);
    }
    heisen_stream_shutdown(c->stream);
    c->linger_deadline = now_ms(c->w) + 5000;
    if (c->peer_eof) {
        size_t queued = 0;
        if (heisen_stream_queued(c->stream, &queued) == HEISEN_STATUS_OK && queued == 0) {
            conn_close(c);
            return;
        }
        timer_arm(c, 20);           /* poll until the queue is flushed */
    } else {
        timer_arm(c, 5000);
    }
}

static void on_conn_timer(heisen_timer *timer, void *user_data)
{
    struct conn *c = user_data;
    (void)timer;
    if (c->closed)
        return;
    conn_ref(c);
    if (c->state == ST_CLOSING) {
        size_t queued = 0;
        if (c->peer_eof && now_ms(c->w) < c->linger_deadline &&
            heisen_stream_queued(c->stream, &queued) == HEISEN_STATUS_OK && queued > 0)
            timer_arm(c, 20);
        else
            conn_close(c);
    } else {
        if (c->in_request) {
            c->note = "timeout";
            if (!c->status)
                c->status = 408;
        }
        conn_close(c);
    }
    conn_unref(c);
}

/* ---- responses --------------------------------------------------------------------------- */

static void connection_header(struct conn *c, struct buf *h)
{
    if (c->w->shutting_down)
        c->keep_alive = 0;
    if (c->expect_continue && c->state == ST_BODY && !c->continue_sent)
        c->keep_alive = 0;          /* answered without asking for the body: it may or may not come */
    if (!c->keep_alive)
        buf_str(h, "Connection: close\r\n");
    else if (c->minor == 0)
        buf_str(h, "Connection: keep-alive\r\n");
}

/* The response is complete; conn_process() moves on once the request body is read too. */
static void response_complete(struct conn *c)
{
    c->resp_done = 1;
    conn_process(c);
}

/* A complete small response generated here (errors, redirects, 304). */
static void respond_simple(struct conn *c, int status, const char *extra_headers, int with_body)
{
    char body[128];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, reason_phrase(status));
    struct buf h = {0};
    if (status >= 400 && c->state == ST_BODY) {
        /* nobody wants the rest of the body: read and drop it, unless it is large */
        if (c->pending) {
            heisen_fcgi_request_free(c->pending);
            c->pending = NULL;
        }
        c->body_mode = BODY_DISCARD;
        c->body_blocked = 0;
        if (c->body_left > (1u << 20) || status == 413)
            c->keep_alive = 0;
    }
    buf_printf(&h, "HTTP/1.%d %d %s\r\nServer: " SERVER_NAME "\r\nDate: %s\r\n", c->minor == 0 ? 0 : 1,
               status, reason_phrase(status), worker_date(c->w));
    if (extra_headers)
        buf_str(&h, extra_headers);
    if (with_body)
        buf_printf(&h, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n", blen);
    connection_header(c, &h);
    buf_str(&h, "\r\n");
    if (with_body && !c->head_only) {
        buf_add(&h, body, (size_t)blen);
        c->body_bytes_out = (uint64_t)blen;
    }
    c->status = status;
    conn_write(c, h.p, h.len);
    buf_free(&h);
    response_complete(c);
}

static void respond_error(struct conn *c, int status)
{
    respond_simple(c, status, status == 405 ? "Allow: GET, HEAD\r\n" : NULL, status != 304);
}

/* ---- request lifecycle ------------------------------------------------------------------- */

static void reset_request(struct conn *c)
{
    free(c->target);
    c->target = NULL;
    c->in_request = 0;
    c->method[0] = '\0';
    c->status = 0;
    c->note = NULL;
    c->body_bytes_out = 0;
    c->body_mode = BODY_DISCARD;
    c->body_kind = HTTP_BODY_NONE;
    c->body_left = 0;
    memset(&c->chunk, 0, sizeof(c->chunk));
    buf_free(&c->body);
    c->body_blocked = 0;
    c->body_done = 0;
    c->resp_done = 0;
    c->expect_continue = 0;
    c->continue_sent = 0;
    c->head_only = 0;
    c->route = -1;
    c->headers_sent = 0;
    c->fcgi_paused = 0;
    c->framing = FR_NONE;
    c->resp_cl = -1;
    c->resp_sent = 0;
    c->head_timer = 0;
}

/* Called from the conn_process() loop only: log, then the next request or the end. */
static void finish_request(struct conn *c)
{
    if (c->closed)
        return;
    access_log(c);
    int keep = c->keep_alive && !c->w->shutting_down;
    reset_request(c);
    if (!keep) {
        conn_linger_close(c);
        return;
    }
    c->state = ST_HEAD;
    if (c->in.len == 0) {
        if (c->peer_eof) {
            conn_linger_close(c);
            return;
        }
        timer_arm(c, opt.keepalive_timeout_ms);
    }
}

static void body_finished(struct conn *c)
{
    c->body_done = 1;
    c->body_blocked = 0;
    if (c->body_mode == BODY_FCGI && c->freq)
        heisen_fcgi_request_finish(c->freq);
    c->state = ST_WAIT;
    timer_arm(c, c->out_busy ? opt.io_timeout_ms : 0);
    if (c->body_mode == BODY_BUFFER && c->pending) {
        heisen_fcgi_request *q = c->pending;
        c->pending = NULL;
        heisen_fcgi_request_set_body(q, (const uint8_t *)c->body.p, c->body.len);
        buf_free(&c->body);
        fcgi_send(c, q);
    }
}

static void body_deliver(struct conn *c, const char *data, size_t n)
{
    if (n == 0)
        return;
    if (c->body_mode == BODY_FCGI && c->freq) {
        int32_t st = heisen_fcgi_request_write(c->freq, (const uint8_t *)data, n);
        if (st == HEISEN_STATUS_BUSY) {
            c->body_blocked = 1;    /* accepted; take no more until on_drain */
            timer_arm(c, 0);        /* waiting for the backend, which has its own timeouts */
        }
        /* CLOSED etc.: the request ended early, on_end tells the client; the rest is dropped */
    } else if (c->body_mode == BODY_BUFFER) {
        buf_add(&c->body, data, n);
    }
}

/* Consumes request-body bytes from c->in. */
static void feed_body(struct conn *c)
{
    while (c->state == ST_BODY && !c->closed && !c->body_blocked && c->in.len > 0) {
        if (c->body_kind == HTTP_BODY_LENGTH) {
            size_t n = c->in.len;
            if ((uint64_t)n > c->body_left)
                n = (size_t)c->body_left;
            body_deliver(c, c->in.p, n);
            buf_consume(&c->in, n);
            c->body_left -= n;
            if (c->body_left == 0)
                body_finished(c);
        } else {
            size_t off, dlen;
            long used = http_chunked_feed(&c->chunk, c->in.p, c->in.len, &off, &dlen);
            if (used < 0) {
                c->note = "bad-chunked";
                c->keep_alive = 0;
                if (!c->resp_done && !c->headers_sent && !c->freq) {
                    if (c->pending) {
                        heisen_fcgi_request_free(c->pending);
                        c->pending = NULL;
                    }
                    c->body_mode = BODY_DISCARD;
                    respond_error(c, 400);
                }
                if (!c->closed)
                    conn_linger_close(c);
                return;
            }
            if (c->chunk.total > opt.max_body_bytes) {
                c->keep_alive = 0;
                if (!c->resp_done && !c->headers_sent && !c->freq) {
                    if (c->pending) {
                        heisen_fcgi_request_free(c->pending);
                        c->pending = NULL;
                    }
                    c->body_mode = BODY_DISCARD;
                    respond_error(c, 413);
                }
                if (!c->closed)
                    conn_linger_close(c);
                return;
            }
            if (dlen)
                body_deliver(c, c->in.p + off, dlen);
            buf_consume(&c->in, (size_t)used);
            if (c->chunk.done)
                body_finished(c);
        }
    }
    if (c->closed)
        return;
    if (c->state == ST_BODY) {
        if (c->peer_eof && c->in.len == 0) {
            c->note = "incomplete-body";
            conn_close(c);
        } else if (!c->body_blocked) {
            timer_arm(c, opt.io_timeout_ms);
        }
    }
}

/* ---- static files ------------------------------------------------------------------------ */

static int inside_sandbox(const char *real)
{
    return strncmp(real, opt.sandbox, opt.sandbox_len) == 0 &&
           (real[opt.sandbox_len] == '/' || real[opt.sandbox_len] == '\0');
}

/* realpath() + sandbox check. 0: ok; else an HTTP status. */
static int resolve(const char *fs_path, char *real)
{
    if (!realpath(fs_path, real))
        return errno == EACCES ? 403 : 404;
    if (!inside_sandbox(real))
        return 403;                 /* a symlink that leaves the sandbox */
    return 0;
}

/* out = a + b + c; -1 when it does not fit. */
static int path_join(char *out, size_t n, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    if (la + lb + lc + 1 > n)
        return -1;
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc + 1);
    return 0;
}

static const struct http_header *find_header(const struct http_request *r, const char *name)
{
    for (size_t i = 0; i < r->header_count; i++)
        if (http_name_is(r->headers[i].name, r->headers[i].name_len, name))
            return &r->headers[i];
    return NULL;
}

static void serve_static(struct conn *c, const struct http_request *r, const char *real)
{
    if (strcmp(c->method, "GET") && strcmp(c->method, "HEAD")) {
        respond_error(c, 405);
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        respond_error(c, errno == ENOENT ? 404 : 403);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        respond_error(c, 403);
        return;
    }
    char lm[40];
    http_date(st.st_mtime, lm, sizeof(lm));
    c->note = "static";
    const struct http_header *ims = find_header(r, "if-modified-since");
    time_t since;
    if (ims && parse_http_date(ims->value, ims->value_len, &since) == 0 && st.st_mtime <= since) {
        close(fd);
        char extra[80];
        snprintf(extra, sizeof(extra), "Last-Modified: %s\r\n", lm);
        respond_simple(c, 304, extra, 0);
        return;
    }
    struct buf h = {0};
    buf_printf(&h, "HTTP/1.%d 200 OK\r\nServer: " SERVER_NAME "\r\nDate: %s\r\nContent-Type: %s\r\n"
               "Content-Length: %llu\r\nLast-Modified: %s\r\n", c->minor, worker_date(c->w),
               mime_type(real), (unsigned long long)st.st_size, lm);
    connection_header(c, &h);
    buf_str(&h, "\r\n");
    c->status = 200;
    conn_write(c, h.p, h.len);
    buf_free(&h);
    if (c->head_only || st.st_size == 0) {
        close(fd);
        response_complete(c);
        return;
    }
    c->file_fd = fd;
    c->file_left = (uint64_t)st.st_size;
    static_pump(c);
}

/* Reads the file into the stream until it is done or the stream says BUSY (then DRAIN resumes). */
static void static_pump(struct conn *c)
{
    char chunk[65536];
    while (!c->closed && c->file_fd >= 0 && c->file_left > 0 && !c->out_busy) {
        size_t want = c->file_left < sizeof(chunk) ? (size_t)c->file_left : sizeof(chunk);
        ssize_t n = read(c->file_fd, chunk, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* the file shrank under us: the promised length cannot be met, so end the connection */
            c->note = "file-shrank";
            conn_linger_close(c);
            return;
        }
        conn_write(c, chunk, (size_t)n);
        c->file_left -= (uint64_t)n;
        c->body_bytes_out += (uint64_t)n;
    }
    if (!c->closed && c->file_fd >= 0 && c->file_left == 0) {
        close(c->file_fd);
        c->file_fd = -1;
        response_complete(c);
    }
}

/* ---- FastCGI ----------------------------------------------------------------------------- */

static int outcome_status(heisen_status outcome)
{
    switch ((int32_t)outcome) {
    case HEISEN_STATUS_OVERLOADED: return 503;
    case HEISEN_STATUS_TIMEOUT: return 504;
    default: return 502;            /* BAD_GATEWAY, CANT_MPX_CONN, UNKNOWN_ROLE, TRUNCATED, ... */
    }
}

static const char *outcome_note(heisen_status outcome)
{
    switch ((int32_t)outcome) {
    case HEISEN_STATUS_OK: return "fcgi";
    case HEISEN_STATUS_BAD_GATEWAY: return "fcgi-bad-gateway";
    case HEISEN_STATUS_OVERLOADED: return "fcgi-overloaded";
    case HEISEN_STATUS_TIMEOUT: return "fcgi-timeout";
    case HEISEN_STATUS_TRUNCATED: return "fcgi-truncated";
    case HEISEN_STATUS_ABORTED: return "fcgi-aborted";
    case HEISEN_STATUS_CANT_MPX_CONN: return "fcgi-cant-mpx";
    case HEISEN_STATUS_UNKNOWN_ROLE: return "fcgi-unknown-role";
    default: return "fcgi-error";
    }
}

static int32_t fcgi_on_headers(heisen_fcgi_request *q, int32_t status, void *user_data)
{
    struct conn *c = user_data;
    if (c->closed)
        return 0;
    size_t count = 0;
    heisen_fcgi_request_header_count(q, &count);
    int64_t cl = -1;
    int cl_bad = 0;
    struct buf h = {0};
    if (status < 200 || status > 999)
        status = 502;               /* 1xx cannot be the final answer */
    buf_printf(&h, "HTTP/1.%d %d %s\r\nServer: " SERVER_NAME "\r\nDate: %s\r\n", c->minor, status,
               reason_phrase(status), worker_date(c->w));
    for (size_t i = 0; i < count; i++) {
        const uint8_t *name, *value;
        size_t nl, vl;
        if (heisen_fcgi_request_header(q, i, &name, &nl, &value, &vl) != HEISEN_STATUS_OK)
            continue;
        if (!valid_token(name, nl) || !valid_field_value(value, vl))
            continue;               /* never split a header on the client's side */
        const char *n = (const char *)name;
        if (http_name_is(n, nl, "status") || http_name_is(n, nl, "connection") ||
            http_name_is(n, nl, "transfer-encoding") || http_name_is(n, nl, "keep-alive") ||
            http_name_is(n, nl, "date") || http_name_is(n, nl, "server") ||
            http_name_is(n, nl, "upgrade") || http_name_is(n, nl, "trailer"))
            continue;
        if (http_name_is(n, nl, "content-length")) {
            uint64_t v = 0;
            int ok = vl > 0 && vl <= 18;
            for (size_t k = 0; ok && k < vl; k++) {
                if (value[k] < '0' || value[k] > '9')
                    ok = 0;
                else
                    v = v * 10 + (uint64_t)(value[k] - '0');
            }
            if (!ok || (cl >= 0 && (uint64_t)cl != v))
                cl_bad = 1;
            else
                cl = (int64_t)v;
            continue;
        }
        buf_add(&h, name, nl);
        buf_str(&h, ": ");
        buf_add(&h, value, vl);
        buf_str(&h, "\r\n");
    }
    if (cl_bad)
        cl = -1;                    /* do not repeat a broken length: frame the body ourselves */
    int no_body = c->head_only || status == 204 || status == 304;
    if (no_body) {
        c->framing = FR_NONE;
        if (cl >= 0 && status != 204 && status != 304)
            buf_printf(&h, "Content-Length: %lld\r\n", (long long)cl);
    } else if (cl >= 0) {
        c->framing = FR_LENGTH;
        c->resp_cl = cl;
        buf_printf(&h, "Content-Length: %lld\r\n", (long long)cl);
    } else if (c->minor == 1) {
        c->framing = FR_CHUNKED;
        buf_str(&h, "Transfer-Encoding: chunked\r\n");
    } else {
        c->framing = FR_CLOSE;      /* HTTP/1.0 and no length: the end of the connection frames it */
        c->keep_alive = 0;
    }
    connection_header(c, &h);
    buf_str(&h, "\r\n");
    c->status = status;
    c->headers_sent = 1;
    conn_write(c, h.p, h.len);
    buf_free(&h);
    if (c->out_busy && !c->closed) {
        c->fcgi_paused = 1;
        return 1;
    }
    return 0;
}

static int32_t fcgi_on_body(heisen_fcgi_request *q, const uint8_t *data, size_t len, void *user_data)
{
    struct conn *c = user_data;
    (void)q;
    if (c->closed || len == 0)
        return 0;
    switch (c->framing) {
    case FR_NONE:
        return 0;
    case FR_LENGTH:
        if (c->resp_sent + len > (uint64_t)c->resp_cl) {
            len = (size_t)((uint64_t)c->resp_cl - c->resp_sent);   /* more than announced: cut */
            c->keep_alive = 0;
            c->note = "fcgi-overlong";
        }
        conn_write(c, data, len);
        break;
    case FR_CHUNKED: {
        char line[24];
        int n = snprintf(line, sizeof(line), "%zx\r\n", len);
        conn_write(c, line, (size_t)n);
        conn_write(c, data, len);
        conn_write(c, "\r\n", 2);
        break;
    }
    case FR_CLOSE:
        conn_write(c, data, len);
        break;
    }
    c->resp_sent += len;
    c->body_bytes_out += len;
    if (c->out_busy && !c->closed) {
        c->fcgi_paused = 1;
        return 1;                   /* pause: resumed on the client's DRAIN */
    }
    return 0;
}

static int32_t fcgi_on_stderr(heisen_fcgi_request *q, const uint8_t *data, size_t len, void *user_data)
{
    struct conn *c = user_data;
    (void)q;
    struct buf line = {0};
    buf_printf(&line, SERVER_NAME ": FastCGI stderr [%s ", c->remote_addr);
    buf_escaped(&line, c->target ? c->target : "-", c->target ? strlen(c->target) : 1, 256);
    buf_str(&line, "]: ");
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\0'))
        len--;
    buf_escaped(&line, data, len, line.len + 4096);    /* escaped: no forged log lines */
    buf_str(&line, "\n");
    fwrite(line.p, 1, line.len, stderr);
    buf_free(&line);
    return 0;
}

static void fcgi_on_drain(heisen_fcgi_request *q, void *user_data)
{
    struct conn *c = user_data;
    (void)q;
    if (c->closed || !c->body_blocked)
        return;
    conn_ref(c);
    c->body_blocked = 0;
    conn_process(c);
    conn_unref(c);
}

static void fcgi_on_end(heisen_fcgi_request *q, heisen_status outcome, void *user_data)
{
    struct conn *c = user_data;
    if (c->freq == q)
        c->freq = NULL;
    if (c->closed)
        return;
    conn_ref(c);
    c->note = outcome_note(outcome);
    if (c->body_blocked) {          /* nobody takes the rest of the body now: discard it */
        c->body_blocked = 0;
    }
    if ((int32_t)outcome == HEISEN_STATUS_ABORTED) {
        conn_close(c);
    } else if (!c->headers_sent) {
        if ((int32_t)outcome != HEISEN_STATUS_OK) {
            fprintf(stderr, SERVER_NAME ": FastCGI %s: %s\n", c->target ? c->target : "-",
                    heisen_fcgi_request_reason(q));
        }
        respond_error(c, outcome_status(outcome));
    } else if ((int32_t)outcome == HEISEN_STATUS_OK) {
        if (c->framing == FR_CHUNKED)
            conn_write(c, "0\r\n\r\n", 5);
        if (c->framing == FR_LENGTH && c->resp_sent != (uint64_t)c->resp_cl) {
            /* shorter than announced: the client must see it was cut */
            c->note = "fcgi-short";
            conn_linger_close(c);
        } else {
            if (c->framing == FR_CLOSE)
                c->keep_alive = 0;
            response_complete(c);
        }
    } else {
        /* TRUNCATED (or a timeout/reset after the response started): no pretending. The bytes
         * already queued are flushed, then the connection ends without the closing chunk. */
        fprintf(stderr, SERVER_NAME ": FastCGI %s: %s (response cut, connection closed)\n",
                c->target ? c->target : "-", heisen_fcgi_request_reason(q));
        conn_linger_close(c);
    }
    if (!c->closed)
        conn_process(c);
    conn_unref(c);
}

static void fcgi_send(struct conn *c, heisen_fcgi_request *q)
{
    conn_ref(c);                    /* released by user_data_free, on every path */
    heisen_status st = heisen_fcgi_request_set_callbacks(q, fcgi_on_headers, fcgi_on_body, fcgi_on_stderr,
                                                         fcgi_on_end, fcgi_on_drain, c, conn_unref_cb);
    if ((int32_t)st != HEISEN_STATUS_OK) {
        heisen_fcgi_request_free(q);
        c->note = "fcgi-error";
        respond_error(c, 500);
        return;
    }
    st = heisen_fcgi_request_send(c->w->clients[c->route], q);
    if ((int32_t)st != HEISEN_STATUS_OK) {
        c->note = outcome_note(st);
        fprintf(stderr, SERVER_NAME ": FastCGI send %s: %s\n", c->target ? c->target : "-",
                heisen_strerror(st));
        respond_error(c, outcome_status(st));
        return;
    }
    c->freq = q;
}

/* Builds the FastCGI request: CGI parameters, peer, HTTP_* headers; sends it now (Content-Length
 * body streamed after it) or after a chunked body has been collected. */
static void fcgi_start(struct conn *c, const struct http_request *r, int route,
                       const char *script_name, const char *path_info)
{
    heisen_fcgi_request *q = NULL;
    if (heisen_fcgi_request_new(&q) != HEISEN_STATUS_OK) {
        respond_error(c, 500);
        return;
    }
    c->route = route;
    c->note = "fcgi";
    heisen_fcgi_request_set_cgi(q, c->method, c->target, c->minor ? "HTTP/1.1" : "HTTP/1.0",
                                opt.sandbox, script_name, path_info && *path_info ? path_info : NULL);
    char server_name[256];
    if (r->host && r->host_len > 0 && r->host_len < sizeof(server_name)) {
        memcpy(server_name, r->host, r->host_len);
        server_name[r->host_len] = '\0';
        char *colon = strrchr(server_name, ':');
        if (colon && !strchr(colon, ']'))
            *colon = '\0';          /* drop the port, keep [v6] literals whole */
    } else {
        snprintf(server_name, sizeof(server_name), "%s", c->local_addr);
    }
    heisen_fcgi_request_set_peer(q, c->remote_addr, c->remote_port, c->local_addr, c->local_port,
                                 server_name);
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        if (http_name_is(h->name, h->name_len, "proxy") ||          /* httpoxy */
            http_name_is(h->name, h->name_len, "transfer-encoding"))
            continue;
        heisen_fcgi_request_add_http_header(q, (const uint8_t *)h->name, h->name_len,
                                            (const uint8_t *)h->value, h->value_len);
    }
    if (r->body == HTTP_BODY_CHUNKED) {
        c->body_mode = BODY_BUFFER; /* php-fpm needs CONTENT_LENGTH: collect, then send */
        c->pending = q;
        if (c->expect_continue) {
            c->continue_sent = 1;
            conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        return;
    }
    if (r->body == HTTP_BODY_LENGTH) {
        heisen_fcgi_request_set_streaming_body(q, 1);
        c->body_mode = BODY_FCGI;
    }
    fcgi_send(c, q);
    if (c->freq && c->expect_continue && r->body != HTTP_BODY_NONE && !c->resp_done) {
        c->continue_sent = 1;
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
}

/* ---- routing ----------------------------------------------------------------------------- */

static int match_route(const char *path, size_t *script_len)
{
    for (size_t i = 0; path[i]; i++) {
        if (path[i] != '.')
            continue;
        for (int k = 0; k < opt.nroutes; k++) {
            const struct route *rt = &opt.routes[k];
            if (strncmp(path + i, rt->ext, rt->ext_len) == 0 &&
                (path[i + rt->ext_len] == '/' || path[i + rt->ext_len] == '\0')) {
                *script_len = i + rt->ext_len;
                return k;
            }
        }
    }
    return -1;
}

static void route_request(struct conn *c, const struct http_request *r)
{
    const char *t = c->target;
    size_t tl = strlen(t);
    if (tl == 1 && t[0] == '*') {
        respond_error(c, strcmp(c->method, "OPTIONS") ? 400 : 405);
        return;
    }
    const char *q = memchr(t, '?', tl);
    size_t plen = q ? (size_t)(q - t) : tl;
    char path[PATH_MAX];
    if (plen >= sizeof(path) - 256) {
        respond_error(c, 414);
        return;
    }
    long dl = http_decode_path(t, plen, path, sizeof(path) - 256);
    if (dl < 0 || path[0] != '/') {
        c->note = "bad-path";
        respond_error(c, 400);      /* bad escape or an encoded NUL */
        return;
    }
    /* no ".." segment, however it was spelled (%2e%2e, .%2E, ...) */
    for (const char *s = path; *s; ) {
        const char *e = strchr(s + 1, '/');
        size_t n = e ? (size_t)(e - s - 1) : strlen(s + 1);
        if (n == 2 && s[1] == '.' && s[2] == '.') {
            c->note = "sandbox";
            respond_error(c, 403);
            return;
        }
        if (!e)
            break;
        s = e;
    }
    char fs[PATH_MAX + 256], real[PATH_MAX];
    size_t script_len = 0;
    int route = match_route(path, &script_len);
    if (route >= 0) {
        char script[PATH_MAX];
        memcpy(script, path, script_len);
        script[script_len] = '\0';
        int err = path_join(fs, sizeof(fs), opt.sandbox, script, "") ? 414 : resolve(fs, real);
        struct stat st;
        if (!err && (stat(real, &st) != 0 || !S_ISREG(st.st_mode)))
            err = 404;
        if (err) {
            c->note = err == 403 ? "sandbox" : err == 404 ? "no-script" : NULL;
            respond_error(c, err);
            return;
        }
        fcgi_start(c, r, route, script, path + script_len);
        return;
    }
    int err = path_join(fs, sizeof(fs), opt.sandbox, path, "") ? 414 : resolve(fs, real);
    if (err) {
        c->note = err == 403 ? "sandbox" : NULL;
        respond_error(c, err);
        return;
    }
    struct stat st;
    if (stat(real, &st) != 0) {
        respond_error(c, 404);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (path[dl - 1] != '/') {
            struct buf loc = {0};
            buf_str(&loc, "Location: ");
            buf_add(&loc, t, plen);
            buf_str(&loc, "/");
            if (q)
                buf_add(&loc, q, tl - plen);
            buf_str(&loc, "\r\n");
            respond_simple(c, 301, loc.p, 1);
            buf_free(&loc);
            return;
        }
        for (int i = 0; i < opt.nindex; i++) {
            char cand[PATH_MAX + 256], creal[PATH_MAX];
            char script[PATH_MAX + 64];
            struct stat cst;
            if (path_join(cand, sizeof(cand), real, "/", opt.index[i]) ||
                path_join(script, sizeof(script), path, opt.index[i], "") ||
                resolve(cand, creal) != 0 || stat(creal, &cst) != 0 || !S_ISREG(cst.st_mode))
                continue;
            route = match_route(script, &script_len);
            if (route >= 0 && script[script_len] == '\0') {
                fcgi_start(c, r, route, script, NULL);
                return;
            }
            serve_static(c, r, creal);
            return;
        }
        respond_error(c, 403);      /* no index, and no listings */
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        respond_error(c, 403);
        return;
    }
    serve_static(c, r, real);
}

/* A complete head was parsed (n bytes of c->in). */
static void start_request(struct conn *c, const struct http_request *r, size_t n)
{
    c->in_request = 1;
    c->minor = r->minor;
    c->keep_alive = r->keep_alive && !c->w->shutting_down;
    c->expect_continue = r->expect_continue;
    if (r->method_len >= sizeof(c->method)) {
        memcpy(c->method, r->method, sizeof(c->method) - 1);
        c->method[sizeof(c->method) - 1] = '\0';
    } else {
        memcpy(c->method, r->method, r->method_len);
        c->method[r->method_len] = '\0';
    }
    const char *t = r->target;
    size_t tl = r->target_len;
    if (t[0] != '/' && tl > 1) {    /* absolute-form: keep path and query */
        const char *p = memchr(t, ':', tl);
        p = p ? p + 3 : t;
        const char *slash = p < t + tl ? memchr(p, '/', (size_t)(t + tl - p)) : NULL;
        const char *qm = p < t + tl ? memchr(p, '?', (size_t)(t + tl - p)) : NULL;
        if (qm && (!slash || qm < slash))
            slash = NULL;
        if (slash) {
            tl -= (size_t)(slash - t);
            t = slash;
        } else {
            t = "/";
            tl = 1;
        }
    }
    c->target = malloc(tl + 1);
    if (!c->target)
        abort();
    memcpy(c->target, t, tl);
    c->target[tl] = '\0';
    c->head_only = !strcmp(c->method, "HEAD");
    c->body_kind = r->body;
    c->body_left = r->body == HTTP_BODY_LENGTH ? r->content_length : 0;
    c->body_mode = BODY_DISCARD;
    c->state = r->body == HTTP_BODY_NONE ? ST_WAIT : ST_BODY;
    timer_arm(c, c->state == ST_BODY ? opt.io_timeout_ms : 0);

    if (r->method_len >= sizeof(c->method)) {
        c->keep_alive = 0;
        respond_error(c, 501);
    } else if (r->body == HTTP_BODY_LENGTH && r->content_length > opt.max_body_bytes) {
        c->keep_alive = 0;
        c->note = "body-too-large";
        respond_error(c, 413);
    } else {
        route_request(c, r);
        if (!c->closed && c->body_mode == BODY_DISCARD && r->body != HTTP_BODY_NONE &&
            c->body_left > (1u << 20))
            c->keep_alive = 0;      /* a large body nobody wants: close rather than read it all */
    }
    if (c->closed)
        return;
    if (c->state == ST_BODY && c->resp_done && !c->keep_alive) {
        buf_consume(&c->in, n);
        conn_linger_close(c);       /* answered already, the body is not worth reading */
        return;
    }
    buf_consume(&c->in, n);
}

static void parse_head(struct conn *c)
{
    if (c->in.len == 0) {
        if (c->peer_eof)
            conn_close(c);
        return;
    }
    if (c->out_busy)
        return;                     /* pipelined: answer the next request once the last one drained */
    if (!c->head_timer) {
        c->head_timer = 1;
        c->t_start = mono_seconds();
        timer_arm(c, opt.header_timeout_ms);
    }
    struct http_request *r = &c->w->scratch;
    long n = http_parse_request(c->in.p, c->in.len, opt.max_header_bytes, r);
    if (n == 0) {
        if (c->peer_eof)
            conn_close(c);          /* half a request, then EOF */
        return;
    }
    if (n < 0) {
        c->in_request = 1;
        c->minor = 1;
        c->keep_alive = 0;
        c->note = "bad-request";
        c->state = ST_WAIT;
        c->in.len = 0;
        respond_error(c, (int)-n);
        return;
    }
    start_request(c, r, (size_t)n);
}

static void conn_process(struct conn *c)
{
    if (c->closed)
        return;
    if (c->processing) {
        c->reprocess = 1;
        return;
    }
    conn_ref(c);
    c->processing = 1;
    do {
        enum conn_state before = c->state;
        c->reprocess = 0;
        switch (c->state) {
        case ST_HEAD:
            parse_head(c);
            break;
        case ST_BODY:
            feed_body(c);
            break;
        case ST_WAIT:
            if (c->resp_done)
                finish_request(c);
            break;                  /* else bytes of the next request wait in c->in */
        case ST_CLOSING:
            c->in.len = 0;
            break;
        }
        if (c->state != before)
            c->reprocess = 1;
    } while (c->reprocess && !c->closed);
    c->processing = 0;
    conn_update_read(c);
    conn_unref(c);
}

static void on_stream_data(heisen_stream *s, const uint8_t *data, size_t len, void *user_data)
{
    struct conn *c = user_data;
    (void)s;
    if (c->closed)
        return;
    if (c->state == ST_CLOSING)
        return;                     /* lingering: read and drop */
    buf_add(&c->in, data, len);
    conn_process(c);
}

static void on_stream_event(heisen_stream *s, int32_t event, int32_t err, void *user_data)
{
    struct conn *c = user_data;
    (void)s;
    (void)err;
    if (c->closed)
        return;
    conn_ref(c);
    switch (event) {
    case HEISEN_STREAM_END:
        c->peer_eof = 1;
        if (c->state == ST_CLOSING) {
            size_t queued = 0;
            if (heisen_stream_queued(c->stream, &queued) == HEISEN_STATUS_OK && queued > 0)
                timer_arm(c, 20);   /* flush what is left, then close */
            else
                conn_close(c);
        } else if (c->state == ST_WAIT) {
            c->keep_alive = 0;      /* answer, then close */
        } else {
            conn_process(c);
        }
        break;
    case HEISEN_STREAM_ERROR:
        if (c->in_request && !c->resp_done)
            c->note = "client-error";
        conn_close(c);
        break;
    case HEISEN_STREAM_DRAIN:
        c->out_busy = 0;
        if (c->state == ST_WAIT)
            timer_arm(c, 0);
        if (c->file_fd >= 0)
            static_pump(c);
        if (!c->closed && c->fcgi_paused && c->freq && !c->out_busy) {
            c->fcgi_paused = 0;
            heisen_fcgi_request_resume(c->freq);
        }
        conn_process(c);
        break;
    default:
        break;
    }
    conn_unref(c);
}

static void sockaddr_text(const struct sockaddr_storage *ss, char *out, size_t n, uint16_t *port)
{
    *port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, out, (socklen_t)n);
        *port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, out, (socklen_t)n);
        if (!strncmp(out, "::ffff:", 7) && strchr(out, '.'))
            memmove(out, out + 7, strlen(out + 7) + 1);
        *port = ntohs(a->sin6_port);
    } else {
        snprintf(out, n, "unix");
    }
}

static void on_accept(heisen_listener *l, int fd, void *user_data)
{
    struct worker *w = user_data;
    (void)l;
    if (w->shutting_down || w->nconns >= opt.max_conns) {
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    c->refs = 1;
    c->file_fd = -1;
    c->route = -1;
    c->resp_cl = -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        sockaddr_text(&ss, c->remote_addr, sizeof(c->remote_addr), &c->remote_port);
    else
        snprintf(c->remote_addr, sizeof(c->remote_addr), "-");
    sl = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        sockaddr_text(&ss, c->local_addr, sizeof(c->local_addr), &c->local_port);
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    conn_ref(c);
    if (heisen_stream_open_fd(w->reactor, fd, on_stream_data, on_stream_event, c, conn_unref_cb,
                              &c->stream) != HEISEN_STATUS_OK) {
        conn_unref(c);              /* the stream's reference was released by user_data_free */
        return;
    }
    conn_ref(c);
    if (heisen_timer_new(w->reactor, on_conn_timer, c, conn_unref_cb, &c->timer) != HEISEN_STATUS_OK) {
        c->timer = NULL;
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    c->state = ST_HEAD;
    timer_arm(c, opt.header_timeout_ms);    /* connect and say nothing: closed */
    if (!c->timer)
        conn_close(c);
}

/* ------------------------------------------------------------------------------------------ */
/* workers                                                                                     */

static void on_grace(heisen_timer *t, void *user_data)
{
    struct worker *w = user_data;
    (void)t;
    while (w->conns)
        conn_close(w->conns);
    heisen_reactor_stop(w->reactor);
}

/* Runs on the worker's thread after the main thread called heisen_waker_wake(). */
static void on_wake(heisen_waker *waker, void *user_data)
{
    struct worker *w = user_data;
    (void)waker;
    if (w->shutting_down)
        return;
    w->shutting_down = 1;
    if (w->listener) {
        heisen_listener_free(w->listener);
        w->listener = NULL;
    }
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == ST_HEAD && c->in.len == 0 && !c->in_request)
            conn_close(c);          /* idle keep-alive connections go now */
        else
            c->keep_alive = 0;      /* the others after their current response */
    }
    if (heisen_timer_new(w->reactor, on_grace, w, NULL, &w->grace) == HEISEN_STATUS_OK)
        heisen_timer_start(w->grace, opt.grace_ms, 0);
    worker_check_done(w);
}

static int worker_setup(struct worker *w)
{
    heisen_status st;
    if ((st = heisen_reactor_new(&w->reactor)) != HEISEN_STATUS_OK) {
        fprintf(stderr, SERVER_NAME ": reactor: %s\n", heisen_strerror(st));
        return -1;
    }
    for (int k = 0; k < opt.nroutes; k++) {
        heisen_fcgi_config *cfg = NULL;
        if (heisen_fcgi_config_new(&cfg) != HEISEN_STATUS_OK)
            return -1;
        for (int b = 0; b < opt.routes[k].nbackends; b++) {
            st = heisen_fcgi_config_add_backend(cfg, opt.routes[k].backends[b]);
            if (st != HEISEN_STATUS_OK) {
                fprintf(stderr, SERVER_NAME ": backend %s: %s\n", opt.routes[k].backends[b],
                        heisen_strerror(st));
                heisen_fcgi_config_free(cfg);
                return -1;
            }
        }
        if (opt.fastcgi_timeout_ms) {
            heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_CONNECT_TIMEOUT_MS,
                                   opt.fastcgi_timeout_ms < 5000 ? opt.fastcgi_timeout_ms : 5000);
            heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_SEND_TIMEOUT_MS, opt.fastcgi_timeout_ms);
            heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_READ_TIMEOUT_MS, opt.fastcgi_timeout_ms);
        }
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_KEEP_ALIVE, opt.routes[k].keepalive);
        if (opt.routes[k].conns) {
            heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_MAX_CONNS, opt.routes[k].conns);
            heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_MAX_IDLE, opt.routes[k].conns);
        }
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_BALANCE, opt.fastcgi_balance);
        st = heisen_fcgi_client_new(w->reactor, cfg, &w->clients[k]);
        heisen_fcgi_config_free(cfg);
        if (st != HEISEN_STATUS_OK) {
            fprintf(stderr, SERVER_NAME ": FastCGI client: %s\n", heisen_strerror(st));
            return -1;
        }
    }
    st = heisen_listener_new(w->reactor, w->bind_addr, 1024, opt.cpu > 1 ? HEISEN_LISTEN_REUSEPORT : 0,
                             on_accept, w, NULL, &w->listener);
    if (st != HEISEN_STATUS_OK) {
        fprintf(stderr, SERVER_NAME ": listen %s: %s%s%s\n", w->bind_addr, heisen_strerror(st),
                st == HEISEN_STATUS_IO ? ": " : "", st == HEISEN_STATUS_IO ? strerror(heisen_last_errno()) : "");
        return -1;
    }
    heisen_listener_port(w->listener, &w->port);
    st = heisen_waker_new(w->reactor, on_wake, w, NULL, &w->waker);
    if (st != HEISEN_STATUS_OK) {
        fprintf(stderr, SERVER_NAME ": waker: %s\n", heisen_strerror(st));
        return -1;
    }
    return 0;
}

/* Runs on a worker's reactor thread (posted by the main thread on SIGUSR1). */
static void dump_stats(void *user_data)
{
    static const struct { int32_t which; const char *name; } names[] = {
        {HEISEN_FCGI_STAT_REQUESTS, "requests"},       {HEISEN_FCGI_STAT_COMPLETE, "complete"},
        {HEISEN_FCGI_STAT_TRUNCATED, "truncated"},     {HEISEN_FCGI_STAT_BAD_GATEWAY, "bad_gateway"},
        {HEISEN_FCGI_STAT_TIMEOUT, "timeout"},         {HEISEN_FCGI_STAT_OVERLOADED, "overloaded"},
        {HEISEN_FCGI_STAT_ABORTED, "aborted"},         {HEISEN_FCGI_STAT_CANT_MPX_CONN, "cant_mpx_conn"},
        {HEISEN_FCGI_STAT_UNKNOWN_ROLE, "unknown_role"}, {HEISEN_FCGI_STAT_RETRIES, "retries"},
        {HEISEN_FCGI_STAT_CONNS_OPENED, "conns_opened"}, {HEISEN_FCGI_STAT_CONNS_REUSED, "conns_reused"},
        {HEISEN_FCGI_STAT_IN_FLIGHT, "in_flight"},     {HEISEN_FCGI_STAT_QUEUE_WAIT_US_MAX, "queue_wait_us_max"},
    };
    struct worker *w = user_data;
    for (int k = 0; k < opt.nroutes; k++) {
        if (!w->clients[k])
            continue;
        char line[1024];
        int n = snprintf(line, sizeof line, SERVER_NAME ": fastcgi stats, worker %d, *%s:", w->index,
                         opt.routes[k].ext);
        for (size_t i = 0; i < sizeof names / sizeof names[0] && n > 0 && (size_t)n < sizeof line; i++) {
            uint64_t v = 0;
            heisen_fcgi_client_stat(w->clients[k], names[i].which, &v);
            n += snprintf(line + n, sizeof line - (size_t)n, " %s=%llu", names[i].name, (unsigned long long)v);
        }
        fprintf(stderr, "%s\n", line);
    }
}

static void worker_teardown(struct worker *w)
{
    while (w->conns)
        conn_close(w->conns);
    heisen_timer_free(w->grace);
    w->grace = NULL;
    heisen_listener_free(w->listener);
    w->listener = NULL;
    for (int k = 0; k < opt.nroutes; k++) {
        heisen_fcgi_client_free(w->clients[k]);
        w->clients[k] = NULL;
    }
    heisen_reactor_free(w->reactor);   /* the waker is freed by the main thread, after join */
    w->reactor = NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (worker_setup(w) != 0) {
        worker_teardown(w);
        w->ready_status = -1;
        sem_post(&w->ready);
        return NULL;
    }
    w->ready_status = 0;
    sem_post(&w->ready);
    heisen_status st = heisen_reactor_run(w->reactor, HEISEN_RUN_DEFAULT);
    if (st != HEISEN_STATUS_OK)
        fprintf(stderr, SERVER_NAME ": worker %d: reactor: %s\n", w->index, heisen_strerror(st));
    worker_teardown(w);
    if (!w->shutting_down)
        kill(getpid(), SIGTERM);    /* an unexpected end: bring the others down too */
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* main                                                                                        */

/* FastCGI keep-alive per extension. A kept connection pins a php-fpm worker; with more kept
 * connections than workers, requests on the surplus ones wait in the backlog until the read
 * timeout. So connections are kept only when their number is known to fit: given with
 * -fastcgi-conns, or FCGI_MAX_CONNS reported by every backend (divided among the workers). */
static void decide_keepalive(struct route *rt, char *why, size_t why_len)
{
    why[0] = '\0';
    if (opt.fastcgi_keepalive == 0) {
        rt->keepalive = 0;
        rt->conns = opt.fastcgi_conns;
        snprintf(why, why_len, "FastCGI keep-alive off");
        return;
    }
    if (opt.fastcgi_conns) {
        rt->keepalive = 1;
        rt->conns = opt.fastcgi_conns;
        snprintf(why, why_len, "FastCGI keep-alive, %d connection%s per backend and worker", rt->conns,
                 rt->conns > 1 ? "s" : "");
        return;
    }
    long min = -1;
    for (int b = 0; b < rt->nbackends; b++) {
        long m = fcgi_probe_max_conns(rt->backends[b], 1000);
        if (m <= 0) {
            min = -1;
            break;
        }
        if (min < 0 || m < min)
            min = m;
    }
    if (min > 0) {
        rt->keepalive = 1;
        rt->conns = (int)(min / opt.cpu > 0 ? min / opt.cpu : 1);
        snprintf(why, why_len, "FastCGI keep-alive, %d connection%s per backend and worker (FCGI_MAX_CONNS %ld)",
                 rt->conns, rt->conns > 1 ? "s" : "", min);
    } else if (opt.fastcgi_keepalive == 1) {
        rt->keepalive = 1;
        rt->conns = 4 / opt.cpu > 0 ? 4 / opt.cpu : 1;
        snprintf(why, why_len, "FastCGI keep-alive, %d connection%s per backend and worker (FCGI_MAX_CONNS "
                 "unknown; -fastcgi-conns N to change)", rt->conns, rt->conns > 1 ? "s" : "");
    } else {
        rt->keepalive = 0;
        rt->conns = 0;
        snprintf(why, why_len, "FastCGI keep-alive off: FCGI_MAX_CONNS unknown (use -fastcgi-conns N, "
                 "N x cpu <= pm.max_children)");
    }
}

/* "8080" -> host 0.0.0.0; "127.0.0.1:8080"; "[::1]:8080"; "unix:/path" is passed through. */
static int split_bind(const char *bind, char *host, size_t hn, char *port, size_t pn)
{
    const char *colon = strrchr(bind, ':');
    if (!colon) {
        snprintf(host, hn, "0.0.0.0");
        snprintf(port, pn, "%s", bind);
    } else {
        size_t l = (size_t)(colon - bind);
        if (l >= hn)
            return -1;
        memcpy(host, bind, l);
        host[l] = '\0';
        snprintf(port, pn, "%s", colon + 1);
        if (!*host)
            snprintf(host, hn, "0.0.0.0");
    }
    uint64_t v;
    if (parse_u64(port, &v) || v > 65535)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    static struct worker workers[MAX_WORKERS];
    char host[256], port[16];
    int unix_bind = 0;
    int ready_pipe[2] = {-1, -1};

    if (parse_options(argc, argv) != 0)
        return 1;
    if (!strncmp(opt.bind, "unix:", 5) || opt.bind[0] == '/') {
        unix_bind = 1;
        if (opt.cpu > 1) {
            fprintf(stderr, SERVER_NAME ": a unix socket takes -cpu 1\n");
            return 1;
        }
    } else {
        if (!strncmp(opt.bind, "tcp:", 4))
            opt.bind += 4;
        if (split_bind(opt.bind, host, sizeof(host), port, sizeof(port)) != 0) {
            fprintf(stderr, SERVER_NAME ": bad -bind %s (PORT or ADDR:PORT)\n", opt.bind);
            return 1;
        }
    }
    if (!strcmp(opt.accesslog, "-")) {
        g_log = stdout;
    } else if (strcmp(opt.accesslog, "off") != 0) {
        g_log = fopen(opt.accesslog, "a");
        if (!g_log) {
            fprintf(stderr, SERVER_NAME ": -accesslog %s: %s\n", opt.accesslog, strerror(errno));
            return 1;
        }
    }
    if (g_log)
        setvbuf(g_log, NULL, _IOLBF, 0);

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;                   /* one descriptor per connection: take what we may */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!opt.foreground) {
        /* detach; the parent waits until the server listens (or failed) to report it */
        if (pipe(ready_pipe) != 0) {
            perror("pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid > 0) {
            char ok = 0;
            close(ready_pipe[1]);
            ssize_t n = read(ready_pipe[0], &ok, 1);
            return n == 1 && ok == 1 ? 0 : 1;
        }
        close(ready_pipe[0]);
        setsid();
        int dn = open("/dev/null", O_RDWR);
        if (dn >= 0) {
            dup2(dn, STDIN_FILENO);
            if (dn > STDERR_FILENO)
                close(dn);
        }
    }

    /* SIGINT/SIGTERM are taken by sigwait() below; blocked before the threads exist, so no
     * worker is ever interrupted by them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char why[MAX_ROUTES][200];
    for (int k = 0; k < opt.nroutes; k++)
        decide_keepalive(&opt.routes[k], why[k], sizeof(why[k]));

    int started = 0, failed = 0;
    uint16_t chosen = 0;
    for (int i = 0; i < opt.cpu; i++) {
        struct worker *w = &workers[i];
        w->index = i;
        int v6 = strchr(host, ':') && host[0] != '[';
        if (unix_bind)
            snprintf(w->bind_addr, sizeof(w->bind_addr), "%s", opt.bind);
        else if (i > 0)             /* the others join worker 0's port (it may have been 0) */
            snprintf(w->bind_addr, sizeof(w->bind_addr), "tcp:%s%s%s:%u", v6 ? "[" : "", host,
                     v6 ? "]" : "", (unsigned)chosen);
        else
            snprintf(w->bind_addr, sizeof(w->bind_addr), "tcp:%s%s%s:%s", v6 ? "[" : "", host,
                     v6 ? "]" : "", port);
        sem_init(&w->ready, 0, 0);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            fprintf(stderr, SERVER_NAME ": cannot start worker %d\n", i);
            sem_destroy(&w->ready);
            failed = 1;
            break;
        }
        started++;
        while (sem_wait(&w->ready) != 0 && errno == EINTR)
            ;
        if (w->ready_status != 0) {
            failed = 1;
            break;
        }
        if (i == 0)
            chosen = w->port;
    }
    if (!failed) {
        if (unix_bind)
            fprintf(stderr, SERVER_NAME ": listening on %s, sandbox %s, %d worker%s\n", opt.bind,
                    opt.sandbox_len ? opt.sandbox : "/", opt.cpu, opt.cpu > 1 ? "s" : "");
        else
            fprintf(stderr, SERVER_NAME ": listening on %s:%u, sandbox %s, %d worker%s\n", host,
                    (unsigned)chosen, opt.sandbox_len ? opt.sandbox : "/", opt.cpu,
                    opt.cpu > 1 ? "s" : "");
        for (int k = 0; k < opt.nroutes; k++) {
            for (int b = 0; b < opt.routes[k].nbackends; b++)
                fprintf(stderr, SERVER_NAME ": *%s -> %s\n", opt.routes[k].ext, opt.routes[k].backends[b]);
            fprintf(stderr, SERVER_NAME ": *%s: %s\n", opt.routes[k].ext, why[k]);
        }
        if (opt.pidfile) {
            FILE *pf = fopen(opt.pidfile, "w");
            if (pf) {
                fprintf(pf, "%ld\n", (long)getpid());
                fclose(pf);
            } else {
                fprintf(stderr, SERVER_NAME ": -pidfile %s: %s\n", opt.pidfile, strerror(errno));
            }
        }
        if (ready_pipe[1] >= 0) {
            char ok = 1;
            if (write(ready_pipe[1], &ok, 1) != 1) {
                /* the parent is gone; keep serving */
            }
            close(ready_pipe[1]);
            ready_pipe[1] = -1;
        }
        int sig = 0;
        for (;;) {
            while (sigwait(&set, &sig) != 0)
                ;
            if (sig != SIGUSR1)
                break;
            for (int i = 0; i < started; i++)   /* each worker prints its own, on its thread */
                heisen_waker_post(workers[i].waker, dump_stats, &workers[i], NULL);
        }
        fprintf(stderr, SERVER_NAME ": %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    for (int i = 0; i < started; i++)
        if (workers[i].ready_status == 0 && workers[i].waker)
            heisen_waker_wake(workers[i].waker);
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i].thread, NULL);
        sem_destroy(&workers[i].ready);
        heisen_waker_free(workers[i].waker);
    }
    if (ready_pipe[1] >= 0)
        close(ready_pipe[1]);
    if (opt.pidfile && !failed)
        unlink(opt.pidfile);
    for (int i = 0; i < opt.nindex; i++)
        free(opt.index[i]);
    if (g_log && g_log != stdout)
        fclose(g_log);
    return failed ? 1 : 0;
}
