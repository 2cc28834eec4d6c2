/* responder: a minimal FastCGI responder on libfcgi, the backend that is not the
 * bottleneck. Started by spawn-fcgi, which hands over the listening unix socket as fd 0.
 *
 * libfcgi serves one connection at a time per FCGX_Accept_r caller and stays on a
 * connection while the web server keeps it open (FCGI_KEEP_CONN), so the responder runs
 * RESPONDER_THREADS threads (default 512) that each call FCGX_Accept_r: every pooled or
 * kept-alive connection a front end opens gets a thread, as php-fpm gives it a worker.
 * On Linux accept() needs no serialisation, so there is no accept mutex (a mutex would
 * block every thread while one waits for the next request on an idle kept connection).
 *
 * Response: 200, text/plain, 13 bytes of body ("Hello, world\n").
 * The request body is read to its end (and discarded) before the reply.
 * QUERY_STRING "sleep=MS" delays the answer (for in-flight memory measurements). */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char reply[] = "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world\n";

static void *serve(void *arg)
{
    (void)arg;
    FCGX_Request req;
    if (FCGX_InitRequest(&req, 0, 0) != 0)
        return NULL;
    char sink[1024];
    while (FCGX_Accept_r(&req) >= 0) {
        /* read FCGI_STDIN to its end before answering: libfcgi does not drain it in
         * FCGX_Finish_r, and on a kept connection an unread STDIN terminator would be taken
         * as the next request's first record (protocol error, connection dropped) */
        while (FCGX_GetStr(sink, sizeof sink, req.in) > 0)
            ;
        const char *qs = FCGX_GetParam("QUERY_STRING", req.envp);
        if (qs && strncmp(qs, "sleep=", 6) == 0) {
            long ms = atol(qs + 6);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        FCGX_PutStr(reply, (int)sizeof reply - 1, req.out);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(void)
{
    const char *t = getenv("RESPONDER_THREADS");
    int threads = t ? atoi(t) : 512;
    if (threads < 1)
        threads = 1;
    if (FCGX_Init() != 0) {
        fprintf(stderr, "FCGX_Init failed\n");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 1; i < threads; i++) {
        pthread_t tid;
        if (pthread_create(&tid, &attr, serve, NULL) != 0) {
            fprintf(stderr, "responder: started %d threads\n", i);
            break;
        }
    }
    serve(NULL);
    return 0;
}
