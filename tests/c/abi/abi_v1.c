/* A program written against the ABI-1 header as released (tests/c/abi/heisen.h, a frozen copy)
 * and run against the freshly built libheisen.so.1: proves a newer library drops in under
 * programs built for ABI 1. Never update the frozen header, except to add it for a new ABI. */
#define _POSIX_C_SOURCE 200809L
#include "heisen.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int got_read, got_hup;
static char buf[16];

static int32_t cb(heisen_watch *w, int fd, uint32_t ev, void *ud) {
    (void)ud;
    if (ev == HEISEN_EV_READ) {
        ssize_t n;
        while ((n = read(fd, buf + got_read, sizeof buf - 1 - (size_t)got_read)) > 0) got_read += (int)n;
    } else if (ev == HEISEN_EV_HUP) {
        got_hup = got_read;
        heisen_watch_free(w);
    }
    return HEISEN_IO_DONE;
}

static void on_timer(heisen_timer *t, void *ud) { (*(int *)ud)++; heisen_timer_free(t); }

int main(void) {
    if (heisen_abi_version() != HEISEN_ABI_VERSION) {
        fprintf(stderr, "abi_v1: library ABI %u, program built for %d\n", heisen_abi_version(), HEISEN_ABI_VERSION);
        return 1;
    }
    heisen_reactor *r = NULL;
    if (heisen_reactor_new(&r) != HEISEN_STATUS_OK) return 1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return 1;
    if (write(sv[1], "v1 ok", 5) != 5) return 1;
    close(sv[1]);
    heisen_watch *w = NULL;
    heisen_timer *t = NULL;
    int fired = 0;
    if (heisen_watch_new(r, sv[0], HEISEN_EV_READ, cb, NULL, NULL, &w) != HEISEN_STATUS_OK) return 1;
    if (heisen_timer_new(r, on_timer, &fired, NULL, &t) != HEISEN_STATUS_OK) return 1;
    if (heisen_timer_start(t, 1, 0) != HEISEN_STATUS_OK) return 1;
    if (heisen_reactor_run(r, HEISEN_RUN_DEFAULT) != HEISEN_STATUS_OK) return 1;
    /* the FastCGI client of ABI 1: a backend that does not exist is a bad gateway */
    heisen_fcgi_config *cfg = NULL;
    heisen_fcgi_client *client = NULL;
    heisen_fcgi_request *req = NULL;
    heisen_fcgi_response *resp = NULL;
    int32_t outcome = -1;
    if (heisen_fcgi_config_new(&cfg) != HEISEN_STATUS_OK) return 1;
    if (heisen_fcgi_config_add_backend(cfg, "unix:/nonexistent/abi-v1.sock") != HEISEN_STATUS_OK) return 1;
    if (heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_CONNECT_TIMEOUT_MS, 500) != HEISEN_STATUS_OK) return 1;
    if (heisen_fcgi_client_new(r, cfg, &client) != HEISEN_STATUS_OK) return 1;
    heisen_fcgi_config_free(cfg);
    if (heisen_fcgi_request_new(&req) != HEISEN_STATUS_OK) return 1;
    if (heisen_fcgi_request_add_param(req, (const uint8_t *)"SCRIPT_FILENAME", 15, (const uint8_t *)"/x.php", 6) != HEISEN_STATUS_OK) return 1;
    if (heisen_fcgi_client_fetch(client, req, &resp) != HEISEN_STATUS_OK) return 1;
    if (heisen_fcgi_response_outcome(resp, &outcome) != HEISEN_STATUS_OK) return 1;
    heisen_fcgi_response_free(resp);
    heisen_fcgi_client_free(client);
    heisen_reactor_free(r);
    close(sv[0]);
    if (outcome != HEISEN_STATUS_BAD_GATEWAY) {
        fprintf(stderr, "abi_v1: fetch from a missing backend gave %s\n", heisen_strerror(outcome));
        return 1;
    }
    if (got_hup != 5 || strcmp(buf, "v1 ok") != 0 || fired != 1) {
        fprintf(stderr, "abi_v1: read %d before hang-up, timer fired %d\n", got_hup, fired);
        return 1;
    }
    printf("abi_v1: ok (library %s)\n", heisen_version_string());
    return 0;
}
