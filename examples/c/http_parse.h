/* http_parse.h - a strict HTTP/1.x request-head parser and chunked decoder.
 *
 * Pure functions: no allocation, no I/O, no globals. The parser is written for a server that
 * sits in front of other software (FastCGI backends), so it refuses every ambiguous shape
 * that could be read differently by someone else (request smuggling):
 *   - Content-Length together with Transfer-Encoding, duplicate or signed Content-Length,
 *   - obs-fold (a header line starting with a space or tab), a bare CR anywhere,
 *   - over-long lines, control characters in names, values or the request target,
 *   - a missing or repeated Host in HTTP/1.1, whitespace before the colon.
 * A fuzz harness can call http_parse_request()/http_chunked_feed() on any byte string.
 */
#ifndef HEISEN_EXAMPLES_HTTP_PARSE_H
#define HEISEN_EXAMPLES_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 100    /* more -> 431 */
#define HTTP_MAX_LINE 8192      /* longer request line or header line -> 400 */

#define HTTP_BODY_NONE 0
#define HTTP_BODY_LENGTH 1      /* content_length bytes follow */
#define HTTP_BODY_CHUNKED 2     /* Transfer-Encoding: chunked */

struct http_header {
    const char *name;
    size_t name_len;
    const char *value;          /* leading and trailing whitespace removed */
    size_t value_len;
};

struct http_request {
    const char *method;
    size_t method_len;
    const char *target;         /* raw request target, as sent */
    size_t target_len;
    int minor;                  /* HTTP/1.<minor>, 0 or 1 */
    size_t header_count;
    struct http_header headers[HTTP_MAX_HEADERS];
    /* derived from the headers */
    int body;                   /* HTTP_BODY_* */
    uint64_t content_length;    /* for HTTP_BODY_LENGTH */
    int keep_alive;             /* the client asked for (or defaults to) a persistent connection */
    int expect_continue;        /* "Expect: 100-continue" */
    const char *host;           /* NULL when absent */
    size_t host_len;
};

/* Parses the request head at the start of buf[0..len).
 * Returns > 0: the head is complete and that many bytes were consumed (request line, headers,
 *              blank line, and up to 4 leading empty lines); *req points into buf.
 *           0: more bytes are needed (nothing wrong so far).
 *         < 0: -(HTTP status) to answer before closing: -400, -431 (head larger than
 *              max_head or too many headers), -501 (unknown transfer coding), -505 (version),
 *              -417 (unknown expectation).
 * Pointers in *req are only meaningful after a positive return. */
long http_parse_request(const char *buf, size_t len, size_t max_head, struct http_request *req);

/* Chunked transfer-coding decoder (RFC 9112 section 7.1); chunk extensions and trailers are
 * checked and skipped. Zero-initialise the struct before the first call. */
struct http_chunked {
    int state;
    int done;                   /* set once the last chunk and the trailer section are consumed */
    uint64_t remaining;         /* bytes left in the current chunk */
    uint64_t total;             /* data bytes decoded so far */
    size_t line;                /* length of the current size/extension/trailer line */
    size_t trailer_bytes;
    int digits;
};

/* Consumes a prefix of in[0..len). Returns the number of bytes consumed (>= 0), or -400.
 * When the consumed part contains chunk data, *data_off and *data_len give one contiguous span of
 * it inside in[] (*data_len == 0 if none): call again with the rest of the input to go on.
 * Stops right after the end of the message (c->done), leaving any following bytes alone. */
long http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
                       size_t *data_off, size_t *data_len);

/* Case-insensitive comparison of a header name (or any byte span) with a C string. */
int http_name_is(const char *name, size_t name_len, const char *lower);

/* Decodes %XX escapes of a URL path into out (size out_size, NUL-terminated).
 * Returns the decoded length, or -400 for a malformed escape, an encoded NUL, or no room. */
long http_decode_path(const char *in, size_t len, char *out, size_t out_size);

#endif
