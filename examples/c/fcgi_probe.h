/* fcgi_probe.h - ask a FastCGI backend how many connections it takes (FCGI_GET_VALUES).
 *
 * Why: a process-per-connection backend (php-fpm) pins a worker to every connection kept open.
 * With more kept connections than workers, requests written on the surplus connections wait in
 * the listen backlog until the read timeout, while the pinned workers serve the others. So a
 * client that keeps connections must not hold more than the backend has workers. php-fpm 8.2
 * answers FCGI_GET_VALUES with FCGI_MPXS_CONNS only (no FCGI_MAX_CONNS), so the count is often
 * unknown: callers then keep connections only when told how many (-m / -fastcgi-conns).
 *
 * Header-only; uses a private reactor on the calling thread (create it before other reactors
 * need that thread, e.g. at startup). */
#ifndef HEISEN_EXAMPLES_FCGI_PROBE_H
#define HEISEN_EXAMPLES_FCGI_PROBE_H

#include <heisen.h>
#include <stdlib.h>
#include <string.h>

struct fcgi_probe_state {
    heisen_reactor *reactor;
    long result;
};

static void fcgi_probe_values(heisen_status status, const char *values, void *user_data)
{
    struct fcgi_probe_state *p = user_data;
    if ((int32_t)status != HEISEN_STATUS_OK) {
        p->result = -1;
    } else {
        const char *m = values ? strstr(values, "FCGI_MAX_CONNS=") : NULL;
        p->result = m ? strtol(m + 15, NULL, 10) : 0;
        if (p->result < 0)
            p->result = 0;
    }
    heisen_reactor_stop(p->reactor);
}

static void fcgi_probe_timeout(heisen_timer *t, void *user_data)
{
    struct fcgi_probe_state *p = user_data;
    (void)t;
    p->result = -1;
    heisen_reactor_stop(p->reactor);
}

/* > 0: the backend's FCGI_MAX_CONNS; 0: it answered without one; -1: unreachable, no answer. */
static long fcgi_probe_max_conns(const char *backend, uint32_t timeout_ms)
{
    struct fcgi_probe_state p = {NULL, -1};
    heisen_fcgi_config *cfg = NULL;
    heisen_fcgi_client *client = NULL;
    heisen_timer *timer = NULL;
    if (heisen_reactor_new(&p.reactor) != HEISEN_STATUS_OK)
        return -1;
    if (heisen_fcgi_config_new(&cfg) == HEISEN_STATUS_OK &&
        heisen_fcgi_config_add_backend(cfg, backend) == HEISEN_STATUS_OK) {
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_CONNECT_TIMEOUT_MS, timeout_ms);
        heisen_fcgi_config_set(cfg, HEISEN_FCGI_OPT_READ_TIMEOUT_MS, timeout_ms);
        if (heisen_fcgi_client_new(p.reactor, cfg, &client) == HEISEN_STATUS_OK &&
            heisen_timer_new(p.reactor, fcgi_probe_timeout, &p, NULL, &timer) == HEISEN_STATUS_OK &&
            heisen_fcgi_client_get_values(client, 0, fcgi_probe_values, &p, NULL) == HEISEN_STATUS_OK) {
            heisen_timer_start(timer, timeout_ms + 100, 0);
            heisen_reactor_run(p.reactor, HEISEN_RUN_DEFAULT);
        }
    }
    heisen_fcgi_config_free(cfg);
    heisen_timer_free(timer);
    heisen_fcgi_client_free(client);
    heisen_reactor_free(p.reactor);
    return p.result;
}

#endif
