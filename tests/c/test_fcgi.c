/* C test of the FastCGI client's asynchronous API (and the synchronous fetch) against a real
 * php-fpm started by the harness (scripts/php-fpm.sh), through include/heisen.h only.
 * Run by tests/c/run.sh, also under valgrind: zero errors, zero leaks. */
#define _POSIX_C_SOURCE 200809L
#include "heisen.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                             \
        }                                                                           \
    } while (0)
#define OK(expr) CHECK((expr) == HEISEN_STATUS_OK)

static char www[600];      /* DIR/www of the private php-fpm */
static int user_data_frees; /* user_data_free calls */
static int ended;           /* on_end calls */

/* ------------------------------------------------------------------ one request's state */
struct call {
    int index;
    int status;         /* from on_headers */
    char ctype[128];    /* Content-type header */
    char *body;
    size_t len, cap;
    char err[256];      /* stderr */
    size_t err_len;
    int outcome;        /* from on_end, -1 before */
    int protocol_status;
    uint32_t app_status;
    int in_abort;       /* set while heisen_fcgi_request_abort runs */
    int pause_once;     /* pause at the first body chunk */
    heisen_fcgi_request *paused;
};

static void call_free(struct call *c) {
    free(c->body);
    free(c);
}

/* user_data_free: counts; the tests free their calls after checking them. */
static void count_free(void *p) {
    (void)p;
    user_data_frees++;
}

static int32_t on_headers(heisen_fcgi_request *req, int32_t http_status, void *ud) {
    struct call *c = ud;
    c->status = http_status;
    size_t n = 0;
    OK(heisen_fcgi_request_header_count(req, &n));
    for (size_t i = 0; i < n; i++) {
        const uint8_t *name, *value;
        size_t nl, vl;
        OK(heisen_fcgi_request_header(req, i, &name, &nl, &value, &vl));
        if (nl == 12 && strncmp((const char *)name, "Content-type", 12) == 0 && vl < sizeof c->ctype) {
            memcpy(c->ctype, value, vl);
            c->ctype[vl] = '\0';
        }
    }
    const uint8_t *name, *value;
    size_t nl, vl;
    CHECK(heisen_fcgi_request_header(req, n, &name, &nl, &value, &vl) == HEISEN_STATUS_INVALID_ARGUMENT);
    return 0;
}

static int32_t on_body(heisen_fcgi_request *req, const uint8_t *data, size_t len, void *ud) {
    struct call *c = ud;
    CHECK(len > 0);
    if (c->len + len > c->cap) {
        c->cap = (c->len + len) * 2;
        c->body = realloc(c->body, c->cap);
    }
    memcpy(c->body + c->len, data, len);
    c->len += len;
    if (c->pause_once) {
        c->pause_once = 0;
        c->paused = req;
        return 1; /* pause; resumed from the main loop */
    }
    return 0;
}

static int32_t on_stderr(heisen_fcgi_request *req, const uint8_t *data, size_t len, void *ud) {
    struct call *c = ud;
    (void)req;
    if (c->err_len + len < sizeof c->err) {
        memcpy(c->err + c->err_len, data, len);
        c->err_len += len;
    }
    return 0;
}

static void on_end(heisen_fcgi_request *req, heisen_status outcome, void *ud) {
    struct call *c = ud;
    CHECK(!c->in_abort); /* never inside heisen_fcgi_request_abort */
    CHECK(c->outcome == -1);  /* exactly once */
    c->outcome = (int)outcome;
    OK(heisen_fcgi_request_app_status(req, &c->app_status));
    OK(heisen_fcgi_request_protocol_status(req, &c->protocol_status));
    CHECK(heisen_fcgi_request_reason(req) != NULL);
    ended++;
}

static struct call *new_call(int index) {
    struct call *c = calloc(1, sizeof *c);
    c->index = index;
    c->outcome = -1;
    return c;
}

/* A request for www/script?query with the CGI variables set the way a web server would. */
static heisen_fcgi_request *make_request(const char *script, const char *query, struct call *c) {
    heisen_fcgi_request *req = NULL;
    OK(heisen_fcgi_request_new(&req));
    char uri[256], name[128];
    snprintf(uri, sizeof uri, "/%s%s%s", script, *query ? "?" : "", query);
    snprintf(name, sizeof name, "/%s", script);
    OK(heisen_fcgi_request_set_cgi(req, "GET", uri, "HTTP/1.1", www, name, NULL));
    OK(heisen_fcgi_request_set_peer(req, "127.0.0.1", 40000, "127.0.0.1", 80, "localhost"));
    OK(heisen_fcgi_request_add_http_header(req, (const uint8_t *)"Host", 4, (const uint8_t *)"localhost", 9));
    OK(heisen_fcgi_request_add_http_header(req, (const uint8_t *)"Proxy", 5, (const uint8_t *)"evil", 4)); /* dropped */
    if (c) OK(heisen_fcgi_request_set_callbacks(req, on_headers, on_body, on_stderr, on_end, NULL, c, count_free));
    return req;
}

static void run_until(heisen_reactor *r, int want_ended) {
    for (int i = 0; ended < want_ended && i < 200000; i++) OK(heisen_reactor_run(r, HEISEN_RUN_ONCE));
    CHECK(ended >= want_ended);
}

/* ------------------------------------------------------------------ tests */

/* 40 concurrent requests over 2 connections, every body exact. */
static void test_many(heisen_fcgi_client *cl, heisen_reactor *r) {
    enum { N = 40 };
    struct call *calls[N];
    int base = ended;
    for (int i = 0; i < N; i++) {
        char q[32];
        snprintf(q, sizeof q, "n=%d", i);
        calls[i] = new_call(i);
        OK(heisen_fcgi_request_send(cl, make_request("echo.php", q, calls[i])));
    }
    run_until(r, base + N);
    for (int i = 0; i < N; i++) {
        struct call *c = calls[i];
        char want[512];
        snprintf(want, sizeof want,
                 "method=GET\nquery=n=%d\ncontent_type=\ncontent_length=\nlength=0\n"
                 "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
                 i);
        CHECK(c->outcome == HEISEN_STATUS_OK);
        CHECK(c->status == 200);
        CHECK(c->protocol_status == 0 && c->app_status == 0);
        CHECK(strcmp(c->ctype, "text/plain;charset=UTF-8") == 0);
        CHECK(c->len == strlen(want) && memcmp(c->body, want, c->len) == 0);
        call_free(c);
    }
}

/* Status, Location, stderr channel. */
static void test_scripts(heisen_fcgi_client *cl, heisen_reactor *r) {
    struct call *a = new_call(0), *b = new_call(1), *s = new_call(2);
    int base = ended, frees = user_data_frees;
    /* keep the calls alive past on_end: no user_data_free for these */
    heisen_fcgi_request *ra = make_request("notfound.php", "", NULL);
    heisen_fcgi_request *rb = make_request("redirect.php", "", NULL);
    heisen_fcgi_request *rs = make_request("stderr.php", "", NULL);
    OK(heisen_fcgi_request_set_callbacks(ra, on_headers, on_body, on_stderr, on_end, NULL, a, NULL));
    OK(heisen_fcgi_request_set_callbacks(rb, on_headers, on_body, on_stderr, on_end, NULL, b, NULL));
    OK(heisen_fcgi_request_set_callbacks(rs, on_headers, on_body, on_stderr, on_end, NULL, s, NULL));
    OK(heisen_fcgi_request_send(cl, ra));
    OK(heisen_fcgi_request_send(cl, rb));
    OK(heisen_fcgi_request_send(cl, rs));
    run_until(r, base + 3);
    CHECK(a->outcome == HEISEN_STATUS_OK && a->status == 404 && a->len == 10 && memcmp(a->body, "not found\n", 10) == 0);
    CHECK(b->outcome == HEISEN_STATUS_OK && b->status == 302 && b->len == 12);
    CHECK(s->outcome == HEISEN_STATUS_OK && s->status == 200 && s->len == 12 && memcmp(s->body, "stderr sent\n", 12) == 0);
    CHECK(s->err_len >= 30 && memcmp(s->err, "PHP message: heisen stderr test", 30) == 0);
    CHECK(user_data_frees == frees);
    call_free(a);
    call_free(b);
    call_free(s);
}

/* Back-pressure: pause at the first chunk of a 1 MiB body, resume later, every byte arrives. */
static void test_pause(heisen_fcgi_client *cl, heisen_reactor *r) {
    struct call *c = new_call(0);
    c->pause_once = 1;
    int base = ended;
    heisen_fcgi_request *req = make_request("big.php", "n=1048576", NULL);
    OK(heisen_fcgi_request_set_callbacks(req, on_headers, on_body, on_stderr, on_end, NULL, c, NULL));
    OK(heisen_fcgi_request_send(cl, req));
    for (int i = 0; i < 100000 && !c->paused; i++) OK(heisen_reactor_run(r, HEISEN_RUN_ONCE));
    CHECK(c->paused != NULL);
    size_t at_pause = c->len;
    for (int i = 0; i < 50; i++) OK(heisen_reactor_run(r, HEISEN_RUN_NOWAIT));
    struct timespec ms50 = {0, 50 * 1000 * 1000};
    nanosleep(&ms50, NULL);
    for (int i = 0; i < 50; i++) OK(heisen_reactor_run(r, HEISEN_RUN_NOWAIT));
    CHECK(c->len == at_pause); /* nothing delivered while paused */
    CHECK(c->outcome == -1);
    OK(heisen_fcgi_request_resume(c->paused));
    run_until(r, base + 1);
    CHECK(c->outcome == HEISEN_STATUS_OK);
    CHECK(c->len == 1048576);
    static const char P[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/";
    int exact = c->len == 1048576;
    for (size_t i = 0; exact && i < c->len; i++) exact = c->body[i] == P[i & 63];
    CHECK(exact);
    call_free(c);
}

/* Abort: on_end(ABORTED) comes later, never inside the abort call. */
static void test_abort(heisen_fcgi_client *cl, heisen_reactor *r) {
    struct call *c = new_call(0);
    int base = ended;
    heisen_fcgi_request *req = make_request("sleep.php", "s=3", NULL);
    OK(heisen_fcgi_request_set_callbacks(req, on_headers, on_body, on_stderr, on_end, NULL, c, NULL));
    OK(heisen_fcgi_request_send(cl, req));
    for (int i = 0; i < 20; i++) OK(heisen_reactor_run(r, HEISEN_RUN_NOWAIT));
    c->in_abort = 1;
    OK(heisen_fcgi_request_abort(req));
    c->in_abort = 0;
    CHECK(c->outcome == -1);
    run_until(r, base + 1);
    CHECK(c->outcome == HEISEN_STATUS_ABORTED);
    CHECK(c->protocol_status == -1);
    call_free(c);
}

/* The synchronous call. */
static void test_fetch(heisen_fcgi_client *cl) {
    heisen_fcgi_response *resp = NULL;
    heisen_fcgi_request *req = make_request("hello.php", "", NULL);
    OK(heisen_fcgi_client_fetch(cl, req, &resp));
    int32_t outcome = -1, status = 0;
    OK(heisen_fcgi_response_outcome(resp, &outcome));
    OK(heisen_fcgi_response_status(resp, &status));
    CHECK(outcome == HEISEN_STATUS_OK && status == 200);
    const uint8_t *body;
    size_t len;
    OK(heisen_fcgi_response_body(resp, &body, &len));
    CHECK(len == 14 && memcmp(body, "Hello, world!\n", 14) == 0);
    size_t n = 0;
    OK(heisen_fcgi_response_header_count(resp, &n));
    CHECK(n >= 1);
    const uint8_t *hn, *hv;
    size_t hnl, hvl;
    OK(heisen_fcgi_response_header(resp, 0, &hn, &hnl, &hv, &hvl));
    CHECK(hnl == 12 && memcmp(hn, "Content-type", 12) == 0);
    OK(heisen_fcgi_response_stderr(resp, &body, &len));
    CHECK(len == 0);
    CHECK(strcmp(heisen_fcgi_response_reason(resp), "complete") == 0);
    heisen_fcgi_response_free(resp);

    /* A POST body. */
    req = make_request("echo.php", "", NULL);
    OK(heisen_fcgi_request_add_param(req, (const uint8_t *)"REQUEST_METHOD", 14, (const uint8_t *)"POST", 4));
    OK(heisen_fcgi_request_add_http_header(req, (const uint8_t *)"Content-Type", 12, (const uint8_t *)"application/octet-stream", 24));
    OK(heisen_fcgi_request_set_body(req, (const uint8_t *)"hello", 5));
    OK(heisen_fcgi_client_fetch(cl, req, &resp));
    OK(heisen_fcgi_response_body(resp, &body, &len));
    static const char want[] = "method=POST\nquery=\ncontent_type=application/octet-stream\ncontent_length=5\nlength=5\n"
                               "sha256=2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n";
    CHECK(len == strlen(want) && memcmp(body, want, len) == 0);
    heisen_fcgi_response_free(resp);
}

static void values_cb(heisen_status st, const char *values, void *ud) {
    char *out = ud;
    CHECK(st == HEISEN_STATUS_OK);
    snprintf(out, 128, "%s", values);
}

static void test_get_values(heisen_fcgi_client *cl, heisen_reactor *r) {
    char values[128] = "";
    OK(heisen_fcgi_client_get_values(cl, 0, values_cb, values, NULL));
    CHECK(values[0] == '\0'); /* never inside the call */
    for (int i = 0; i < 10000 && !values[0]; i++) OK(heisen_reactor_run(r, HEISEN_RUN_ONCE));
    CHECK(strcmp(values, "FCGI_MPXS_CONNS=0\n") == 0);
    int frees = user_data_frees;
    CHECK(heisen_fcgi_client_get_values(cl, 5, values_cb, values, count_free) == HEISEN_STATUS_INVALID_ARGUMENT);
    CHECK(user_data_frees == frees + 1); /* released although the call failed */
}

int main(void) {
    char dir[256], addr[512];
    snprintf(dir, sizeof dir, "/tmp/heisen-test-fcgi-c-%ld", (long)getpid());
    harness_proc fpm;
    (void)harness_peer_start; /* the harness's other helper, unused here */
    if (harness_fpm_start(&fpm, dir, 2, addr, sizeof addr) != 0) {
        fprintf(stderr, "test_fcgi: cannot start php-fpm (install it: apt-get install php-fpm)\n");
        return 1;
    }
    snprintf(www, sizeof www, "%s/www", dir);

    heisen_reactor *r = NULL;
    OK(heisen_reactor_new(&r));
    heisen_fcgi_config *cfg = NULL;
    OK(heisen_fcgi_config_new(&cfg));
    OK(heisen_fcgi_config_add_backend(cfg, addr));
    OK(heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_MAX_CONNS, 2));
    OK(heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_READ_TIMEOUT_MS, 10000));
    CHECK(heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_MAX_CONNS, 0) == HEISEN_STATUS_INVALID_ARGUMENT);
    CHECK(heisen_fcgi_config_set(cfg, 999, 1) == HEISEN_STATUS_INVALID_ARGUMENT);
    CHECK(heisen_fcgi_config_add_backend(cfg, "unix:") != HEISEN_STATUS_OK);
    heisen_fcgi_client *cl = NULL;
    OK(heisen_fcgi_client_new(r, cfg, &cl));
    heisen_fcgi_config_free(cfg); /* the client has its copy */

    test_many(cl, r);
    test_scripts(cl, r);
    test_pause(cl, r);
    test_abort(cl, r);
    test_fetch(cl);
    test_get_values(cl, r);

    /* Errors: the request and its user_data are released on every path. */
    {
        int frees = user_data_frees;
        struct call *c = new_call(0);
        heisen_fcgi_request *req = make_request("hello.php", "", c);
        CHECK(heisen_fcgi_request_send(NULL, req) == HEISEN_STATUS_NULL_ARGUMENT);
        CHECK(user_data_frees == frees + 1);
        CHECK(c->outcome == -1); /* never called */
        call_free(c);
        uint8_t big[70 * 1024];
        memset(big, 'x', sizeof big);
        OK(heisen_fcgi_request_new(&req));
        CHECK(heisen_fcgi_request_add_param(req, (const uint8_t *)"BIG", 3, big, sizeof big) == HEISEN_STATUS_INVALID_ARGUMENT);
        CHECK(heisen_fcgi_request_set_role(req, 7) == HEISEN_STATUS_INVALID_ARGUMENT);
        heisen_fcgi_request_free(req);
    }

    /* Statistics: keep-alive reuse is visible. */
    uint64_t v = 0;
    OK(heisen_fcgi_client_stat(cl, HEISEN_FCGI_STAT_CONNS_OPENED, &v));
    CHECK(v >= 1 && v <= 4);
    OK(heisen_fcgi_client_stat(cl, HEISEN_FCGI_STAT_CONNS_REUSED, &v));
    CHECK(v >= 40);
    OK(heisen_fcgi_client_stat(cl, HEISEN_FCGI_STAT_ABORTED, &v));
    CHECK(v == 1);
    OK(heisen_fcgi_client_stat(cl, HEISEN_FCGI_STAT_PEAK_CONNS, &v));
    CHECK(v <= 2);
    CHECK(heisen_fcgi_client_stat(cl, 99, &v) == HEISEN_STATUS_INVALID_ARGUMENT);

    /* Freeing the client ends in-flight requests with ABORTED (during the free). */
    {
        struct call *c = new_call(0);
        int base = ended, frees = user_data_frees;
        OK(heisen_fcgi_request_send(cl, make_request("sleep.php", "s=2", c)));
        for (int i = 0; i < 5; i++) OK(heisen_reactor_run(r, HEISEN_RUN_NOWAIT));
        heisen_fcgi_client_free(cl);
        CHECK(ended == base + 1);
        CHECK(c->outcome == HEISEN_STATUS_ABORTED);
        CHECK(user_data_frees == frees + 1);
        call_free(c);
    }
    heisen_reactor_free(r);
    harness_fpm_stop(&fpm);
    if (failures) {
        fprintf(stderr, "test_fcgi: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_fcgi: ok\n");
    return 0;
}
