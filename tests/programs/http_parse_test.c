/* Unit test of examples/c/http_parse.c: accepted shapes, hostile shapes (issue 7 §3), every
 * split point of a request, the chunked decoder. Exit 0 when all pass.
 * With arguments, each is a file parsed as one request (a tiny fuzz/regression driver). */
#define _GNU_SOURCE
#include "http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static long parse(const char *s, struct http_request *r)
{
    return http_parse_request(s, strlen(s), 32768, r);
}

struct expect {
    const char *req;
    long result;            /* >0: exact consumed length expected is strlen; 1 means "ok" */
};

static void test_table(void)
{
    static const struct expect cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\n\r\n", 1},
        {"GET / HTTP/1.1\nHost: a\n\n", 1},                             /* bare LF is accepted */
        {"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 1},                   /* leading empty line */
        {"GET /x?y=1 HTTP/1.1\r\nHost: a:8080\r\nX-A:  b  \r\n\r\n", 1},
        {"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 1},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\n\r\n", -400},                               /* no Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -501},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", -400},   /* obs-fold */
        {"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", -400},      /* bare CR */
        {"GET / HTTP/1.1\rHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400},                  /* space before colon */
        {"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7f\r\n\r\n", -400},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400},
        {"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET x HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505},
        {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", -505},
        {"GET / HTTX/1.1\r\nHost: a\r\n\r\n", -400},
        {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", -417},
        {"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\n\r", 0},
        {"GET / HTT", 0},
        {"", 0},
    };
    struct http_request r;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long got = parse(cases[i].req, &r);
        long want = cases[i].result == 1 ? (long)strlen(cases[i].req) : cases[i].result;
        CHECK(got == want, "case %zu: got %ld want %ld: %.60s", i, got, want, cases[i].req);
    }
}

static void test_fields(void)
{
    struct http_request r;
    const char *s = "POST /p?q HTTP/1.1\r\nHost: ex:1\r\nContent-Length: 12\r\nConnection: close\r\n"
                    "Expect: 100-continue\r\nX-Empty:\r\n\r\nBODY";
    long n = parse(s, &r);
    CHECK(n == (long)strlen(s) - 4, "consumed %ld", n);
    CHECK(r.method_len == 4 && !memcmp(r.method, "POST", 4), "method");
    CHECK(r.target_len == 4 && !memcmp(r.target, "/p?q", 4), "target");
    CHECK(r.minor == 1 && r.keep_alive == 0 && r.expect_continue == 1, "flags");
    CHECK(r.body == HTTP_BODY_LENGTH && r.content_length == 12, "body");
    CHECK(r.host_len == 4 && !memcmp(r.host, "ex:1", 4), "host");
    CHECK(r.header_count == 5 && r.headers[4].value_len == 0, "headers %zu", r.header_count);

    CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r) > 0 && r.keep_alive == 1, "1.0 ka");
    CHECK(parse("GET / HTTP/1.0\r\n\r\n", &r) > 0 && r.keep_alive == 0, "1.0 close");
    CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, keep-alive\r\n\r\n", &r) > 0 && r.keep_alive == 1, "1.1");
    CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &r) > 0 && r.body == HTTP_BODY_NONE, "CL 0");
}

static void test_limits(void)
{
    struct http_request r;
    char *big = malloc(20000);
    /* an over-long header line */
    int n = sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\nX-Long: ");
    memset(big + n, 'a', 9000);
    strcpy(big + n + 9000, "\r\n\r\n");
    CHECK(http_parse_request(big, strlen(big), 65536, &r) == -400, "long line");
    /* over-long, still incomplete: rejected early */
    CHECK(http_parse_request(big, (size_t)n + 8500, 65536, &r) == -400, "long partial line");
    /* head larger than the limit */
    CHECK(http_parse_request(big, strlen(big), 4096, &r) == -431 || http_parse_request(big, strlen(big), 4096, &r) == -400,
          "head limit");
    /* too many headers */
    char *p = big + sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
        p += sprintf(p, "X-%d: v\r\n", i);
    strcpy(p, "\r\n");
    CHECK(http_parse_request(big, strlen(big), 65536, &r) == -431, "header count");
    /* a long request line */
    n = sprintf(big, "GET /");
    memset(big + n, 'a', 9000);
    strcpy(big + n + 9000, " HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(http_parse_request(big, strlen(big), 65536, &r) == -400, "long request line");
    free(big);
}

/* Every prefix of a valid request is "need more", the whole is complete. */
static void test_splits(void)
{
    const char *s = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-B: c\r\n\r\n";
    size_t len = strlen(s);
    struct http_request r;
    for (size_t i = 0; i < len; i++) {
        char *copy = malloc(i + 1);
        memcpy(copy, s, i);
        long got = http_parse_request(copy, i, 32768, &r);
        CHECK(got == 0, "prefix %zu: %ld", i, got);
        free(copy);
    }
    CHECK(http_parse_request(s, len, 32768, &r) == (long)len, "whole");
}

static int decode_all(const char *in, size_t len, size_t step, char *out, size_t *out_len, size_t *consumed)
{
    struct http_chunked c;
    memset(&c, 0, sizeof(c));
    size_t pos = 0, o = 0;
    while (pos < len && !c.done) {
        size_t avail = len - pos < step ? len - pos : step;
        size_t off, dl;
        long used = http_chunked_feed(&c, in + pos, avail, &off, &dl);
        if (used < 0)
            return -1;
        memcpy(out + o, in + pos + off, dl);
        o += dl;
        pos += (size_t)used;
        if (used == 0 && avail == len - pos)
            break;
        if (used == 0)
            step++;
    }
    *out_len = o;
    *consumed = pos;
    return c.done ? 1 : 0;
}

static void test_chunked(void)
{
    const char *ok = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    char out[64];
    size_t ol, used;
    for (size_t step = 1; step < 64; step++) {
        int done = decode_all(ok, strlen(ok), step, out, &ol, &used);
        CHECK(done == 1 && ol == 11 && !memcmp(out, "hello world", 11) && used == strlen(ok) - 4,
              "chunked step %zu: done %d len %zu used %zu", step, done, ol, used);
    }
    CHECK(decode_all("0\r\n\r\n", 5, 100, out, &ol, &used) == 1 && ol == 0, "empty");
    CHECK(decode_all("0\n\n", 3, 100, out, &ol, &used) == 1, "bare LF");
    CHECK(decode_all("x\r\n", 3, 100, out, &ol, &used) == -1, "bad size");
    CHECK(decode_all("5\rhello", 7, 100, out, &ol, &used) == -1, "bare CR");
    CHECK(decode_all("5\r\nhelloXX", 10, 100, out, &ol, &used) == -1, "no CRLF after data");
    CHECK(decode_all("ffffffffffffffffff\r\n", 20, 100, out, &ol, &used) == -1, "huge");
    CHECK(decode_all("0\r\n folded\r\n\r\n", 15, 100, out, &ol, &used) == -1, "trailer fold");
    CHECK(decode_all("-5\r\n", 4, 100, out, &ol, &used) == -1, "negative");
}

static void test_decode(void)
{
    char out[64];
    CHECK(http_decode_path("/a%20b", 6, out, sizeof(out)) == 4 && !strcmp(out, "/a b"), "decode");
    CHECK(http_decode_path("/%2e%2E/", 8, out, sizeof(out)) == 4 && !strcmp(out, "/../"), "dots");
    CHECK(http_decode_path("/a%00", 5, out, sizeof(out)) == -400, "NUL");
    CHECK(http_decode_path("/a%0", 4, out, sizeof(out)) == -400, "short escape");
    CHECK(http_decode_path("/a%", 3, out, sizeof(out)) == -400, "short escape 2");
    CHECK(http_decode_path("/a%zz", 5, out, sizeof(out)) == -400, "bad escape");
    CHECK(http_decode_path("/abcdef", 7, out, 4) == -400, "no room");
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            FILE *f = fopen(argv[i], "rb");
            if (!f)
                continue;
            char *data = malloc(1 << 20);
            size_t n = fread(data, 1, 1 << 20, f);
            fclose(f);
            struct http_request r;
            printf("%s: %ld\n", argv[i], http_parse_request(data, n, 32768, &r));
            free(data);
        }
        return 0;
    }
    test_table();
    test_fields();
    test_limits();
    test_splits();
    test_chunked();
    test_decode();
    if (failures) {
        fprintf(stderr, "http_parse_test: %d failure(s)\n", failures);
        return 1;
    }
    printf("http_parse_test: all passed\n");
    return 0;
}
