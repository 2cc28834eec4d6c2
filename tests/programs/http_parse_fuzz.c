/* Fuzz harness for examples/c/http_parse.c (issue 7 §5).
 *
 * libFuzzer:   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iexamples/c \
 *                  tests/programs/http_parse_fuzz.c examples/c/http_parse.c -o http-parse-fuzz
 * standalone:  cc -DSTANDALONE -g -O1 -fsanitize=address,undefined -Iexamples/c \
 *                  tests/programs/http_parse_fuzz.c examples/c/http_parse.c -o http-parse-fuzz
 *              ./http-parse-fuzz [SECONDS] [SEED]   (mutates built-in seeds; default 10 s)
 *
 * Invariants checked on every input: the parser never reads outside the buffer (ASan), a
 * positive result is <= len and every pointer it returns lies inside the buffer; a request
 * split at any point parses to "need more" until complete; the chunked decoder consumes only
 * what it is given and its data spans lie inside the input; the path decoder stays in bounds. */
#define _GNU_SOURCE
#include "http_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

static void inside(const char *base, size_t len, const char *p, size_t n, const char *what)
{
    if (n && (p < base || p + n > base + len))
        FAIL("%s points outside the input", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);       /* exact size: ASan sees any overread */
    memcpy(buf, data, size);
    struct http_request r;
    long n = http_parse_request(buf, size, 16384, &r);
    if (n > 0) {
        if ((size_t)n > size)
            FAIL("consumed %ld of %zu", n, size);
        inside(buf, size, r.method, r.method_len, "method");
        inside(buf, size, r.target, r.target_len, "target");
        for (size_t i = 0; i < r.header_count; i++) {
            inside(buf, size, r.headers[i].name, r.headers[i].name_len, "name");
            inside(buf, size, r.headers[i].value, r.headers[i].value_len, "value");
        }
        /* every strict prefix is incomplete or an error, never a different success */
        for (size_t cut = 0; cut < (size_t)n; cut += 1 + (size_t)n / 64) {
            struct http_request r2;
            long m = http_parse_request(buf, cut, 16384, &r2);
            if (m > 0)
                FAIL("prefix %zu parsed as complete (%ld) but the whole needs %ld", cut, m, n);
        }
        char path[512];
        http_decode_path(r.target, r.target_len, path, sizeof(path));
    } else if (n < -600 || (n < 0 && n > -400)) {
        FAIL("odd status %ld", n);
    }
    /* the chunked decoder on the same bytes, fed in pieces of varying size */
    struct http_chunked c;
    memset(&c, 0, sizeof(c));
    size_t pos = 0, step = 1 + (size ? data[0] % 7 : 0);
    while (pos < size && !c.done) {
        size_t avail = size - pos < step ? size - pos : step;
        size_t off, dl;
        long used = http_chunked_feed(&c, buf + pos, avail, &off, &dl);
        if (used < 0)
            break;
        if ((size_t)used > avail)
            FAIL("chunked consumed %ld of %zu", used, avail);
        inside(buf + pos, avail, buf + pos + off, dl, "chunk data");
        if (used == 0) {
            if (avail == size - pos)
                break;
            step++;
        }
        pos += (size_t)used;
    }
    free(buf);
    return 0;
}

#ifdef STANDALONE
static const char *const seeds[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /echo.php?x=1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: x\r\n\r\n",
    "GET http://h/p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "GET /%2e%2e/%00 HTTP/1.1\r\nHost: a\r\nX: \t v \r\n\r\n",
};

static uint64_t rng;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    rng = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)time(NULL);
    if (!rng)
        rng = 88172645463325252ull;
    uint64_t seed0 = rng;
    static const char tokens[][32] = {"\r\n", "\n", "\r", " ", "\t", ":", "Content-Length: ", "Transfer-Encoding: chunked",
                                      "Host: x", "0\r\n\r\n", "%2e", "%00", "HTTP/1.1", "99999999999999999999", "\x00", ";"};
    time_t end = time(NULL) + (time_t)seconds;
    unsigned long execs = 0;
    uint8_t buf[4096];
    while (time(NULL) < end) {
        for (int k = 0; k < 1000; k++) {
            const char *s = seeds[rnd() % (sizeof(seeds) / sizeof(seeds[0]))];
            size_t len = strlen(s);
            memcpy(buf, s, len);
            int muts = 1 + rnd() % 8;
            for (int m = 0; m < muts; m++) {
                size_t at = len ? rnd() % (len + 1) : 0;
                switch (rnd() % 5) {
                case 0:                 /* flip a byte */
                    if (len)
                        buf[rnd() % len] = (uint8_t)rnd();
                    break;
                case 1:                 /* delete a span */
                    if (len) {
                        size_t a = rnd() % len, n = 1 + rnd() % 8;
                        if (a + n > len)
                            n = len - a;
                        memmove(buf + a, buf + a + n, len - a - n);
                        len -= n;
                    }
                    break;
                default: {              /* insert a token */
                    const char *t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
                    size_t tl = t[0] ? strlen(t) : 1;
                    if (len + tl < sizeof(buf)) {
                        memmove(buf + at + tl, buf + at, len - at);
                        memcpy(buf + at, t, tl);
                        len += tl;
                    }
                }
                }
            }
            LLVMFuzzerTestOneInput(buf, len);
            execs++;
        }
    }
    printf("http_parse_fuzz: %lu executions in %.0f s, no crash (seed %llu)\n", execs, seconds,
           (unsigned long long)seed0);
    return 0;
}
#endif
