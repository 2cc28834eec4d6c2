/* Self-test of tests/harness/harness.h: spawn the peer and a php-fpm from C and talk
   FastCGI to them with plain sockets (no heisen). Built and run by tests/harness/run.sh. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); failures++; } } while (0)

static int connect_unix(const char *addr) {
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", addr + 5);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { close(fd); return -1; }
    return fd;
}

static size_t put_record(uint8_t *b, int type, const uint8_t *c, size_t n) {
    b[0] = 1; b[1] = (uint8_t)type; b[2] = 0; b[3] = 1;
    b[4] = (uint8_t)(n >> 8); b[5] = (uint8_t)n; b[6] = 0; b[7] = 0;
    if (n) memcpy(b + 8, c, n);
    return 8 + n;
}

static size_t put_pair(uint8_t *b, const char *name, const char *value) {
    size_t nl = strlen(name), vl = strlen(value);
    b[0] = (uint8_t)nl; b[1] = (uint8_t)vl;
    memcpy(b + 2, name, nl); memcpy(b + 2 + nl, value, vl);
    return 2 + nl + vl;
}

/* one request for script, returns bytes read until EOF into out */
static ssize_t exchange(const char *addr, const char *script, uint8_t *out, size_t cap) {
    uint8_t req[2048], params[1024];
    size_t n = 0, p = 0;
    const uint8_t begin[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    p += put_pair(params + p, "SCRIPT_FILENAME", script);
    p += put_pair(params + p, "REQUEST_METHOD", "GET");
    p += put_pair(params + p, "QUERY_STRING", "");
    n += put_record(req + n, 1, begin, 8);
    n += put_record(req + n, 4, params, p);
    n += put_record(req + n, 4, NULL, 0);
    n += put_record(req + n, 5, NULL, 0);
    int fd = connect_unix(addr);
    if (fd < 0) return -1;
    if (write(fd, req, n) != (ssize_t)n) { close(fd); return -1; }
    size_t got = 0;
    ssize_t k;
    while (got < cap && (k = read(fd, out + got, cap - got)) > 0) got += (size_t)k;
    close(fd);
    return (ssize_t)got;
}

int main(void) {
    char dir[] = "/tmp/heisen-harness-c.XXXXXX";
    char listen[256], addr[256];
    uint8_t buf[65536];
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    snprintf(listen, sizeof listen, "unix:%s/peer.sock", dir);

    harness_proc peer;
    CHECK(harness_peer_start(&peer, "story", listen, addr, sizeof addr) == 0);
    CHECK(strcmp(addr, listen) == 0);
    ssize_t n = exchange(addr, "/x.php", buf, sizeof buf);
    CHECK(n == 88);
    CHECK(n == 88 && buf[1] == 6 && buf[5] == 50 && memcmp(buf + 8 + 44, "hello\n", 6) == 0);
    CHECK(n == 88 && buf[72 + 1] == 3);
    int st = harness_proc_stop(&peer);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    const char *extra[] = {"--max-conns", "5", NULL};
    CHECK(harness_peer_start_args(&peer, "ok", "tcp:127.0.0.1:0", extra, addr, sizeof addr) == 0);
    CHECK(strncmp(addr, "tcp:127.0.0.1:", 14) == 0 && atoi(addr + 14) > 0);
    harness_proc_stop(&peer);

    char fdir[300];
    snprintf(fdir, sizeof fdir, "%s/fpm", dir);
    harness_proc fpm;
    if (harness_fpm_start(&fpm, fdir, 2, addr, sizeof addr) == 0) {
        char script[400];
        snprintf(script, sizeof script, "%s/www/hello.php", fdir);
        n = exchange(addr, script, buf, sizeof buf);
        CHECK(n > 0 && memmem(buf, (size_t)n, "Hello, world!\n", 14) != NULL);
        CHECK(harness_fpm_stop(&fpm) == 0);
    } else {
        fprintf(stderr, "selftest_c: php-fpm not available, its part skipped\n");
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) failures++;
    printf("selftest_c: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
