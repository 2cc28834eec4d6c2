/* http_parse.c - see http_parse.h. Strict by design: when in doubt, 400. */
#include "http_parse.h"

#include <string.h>

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

int http_name_is(const char *name, size_t name_len, const char *lower_str)
{
    size_t n = strlen(lower_str);
    if (n != name_len)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)name[i]) != lower_str[i])
            return 0;
    return 1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Finds the end of the line starting at pos. 1: found (*end = index of the line's last byte + 1,
 * *next = start of the next line); 0: incomplete; -400: bare CR or line too long. */
static int next_line(const char *buf, size_t len, size_t pos, size_t *end, size_t *next)
{
    for (size_t i = pos; i < len; i++) {
        if (i - pos > HTTP_MAX_LINE)
            return -400;
        if (buf[i] == '\n') {
            *end = i;
            *next = i + 1;
            return 1;
        }
        if (buf[i] == '\r') {
            if (i + 1 >= len)
                return 0;
            if (buf[i + 1] != '\n')
                return -400;            /* bare CR */
            *end = i;
            *next = i + 2;
            return 1;
        }
    }
    return len - pos > HTTP_MAX_LINE ? -400 : 0;
}

static long parse_request_line(const char *p, size_t n, struct http_request *req)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ' ')
        return -400;
    req->method = p;
    req->method_len = i;
    size_t t = ++i;
    while (i < n && p[i] != ' ') {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f)
            return -400;                /* controls, non-ASCII, tabs in the target */
        i++;
    }
    if (i == t || i >= n)
        return -400;
    req->target = p + t;
    req->target_len = i - t;
    if (!(req->target[0] == '/' || (req->target_len == 1 && req->target[0] == '*') ||
          (req->target_len > 7 && (http_name_is(req->target, 7, "http://") ||
                                   (req->target_len > 8 && http_name_is(req->target, 8, "https://"))))))
        return -400;
    i++;                                /* the single space */
    const char *v = p + i;
    size_t vn = n - i;
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
        v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
        return -400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return -505;
    req->minor = v[7] - '0';
    return 0;
}

/* Splits a comma-separated list and reports whether token (lowercase) is one of its elements. */
static int list_has(const char *v, size_t n, const char *token)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && http_name_is(v + s, e - s, token))
            return 1;
    }
    return 0;
}

static long apply_semantics(struct http_request *req)
{
    int n_cl = 0, n_te = 0, n_host = 0, close = 0, keep = 0;
    for (size_t i = 0; i < req->header_count; i++) {
        const struct http_header *h = &req->headers[i];
        if (http_name_is(h->name, h->name_len, "content-length")) {
            if (++n_cl > 1)
                return -400;            /* duplicate, even when equal */
            if (h->value_len == 0 || h->value_len > 18)
                return -400;
            uint64_t v = 0;
            for (size_t k = 0; k < h->value_len; k++) {
                char c = h->value[k];
                if (c < '0' || c > '9')
                    return -400;        /* signs, lists, spaces, hex... */
                v = v * 10 + (uint64_t)(c - '0');
            }
            req->content_length = v;
        } else if (http_name_is(h->name, h->name_len, "transfer-encoding")) {
            if (++n_te > 1)
                return -400;
            if (!http_name_is(h->value, h->value_len, "chunked"))
                return h->value_len == 0 ? -400 : -501;
        } else if (http_name_is(h->name, h->name_len, "host")) {
            if (++n_host > 1)
                return -400;
            for (size_t k = 0; k < h->value_len; k++) {
                unsigned char c = (unsigned char)h->value[k];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == ':' || c == '[' || c == ']' || c == '_'))
                    return -400;
            }
            req->host = h->value;
            req->host_len = h->value_len;
        } else if (http_name_is(h->name, h->name_len, "connection")) {
            close |= list_has(h->value, h->value_len, "close");
            keep |= list_has(h->value, h->value_len, "keep-alive");
        } else if (http_name_is(h->name, h->name_len, "expect") && req->minor == 1) {
            if (!http_name_is(h->value, h->value_len, "100-continue"))
                return -417;
            req->expect_continue = 1;
        }
    }
    if (n_te && n_cl)
        return -400;                    /* the classic smuggling shape */
    if (n_te && req->minor == 0)
        return -400;                    /* RFC 9112 6.1: faulty framing */
    if (req->minor == 1 && n_host == 0)
        return -400;
    if (n_te)
        req->body = HTTP_BODY_CHUNKED;
    else if (n_cl && req->content_length > 0)
        req->body = HTTP_BODY_LENGTH;
    else
        req->body = HTTP_BODY_NONE;
    req->keep_alive = req->minor == 1 ? !close : (keep && !close);
    return 0;
}

long http_parse_request(const char *buf, size_t len, size_t max_head, struct http_request *req)
{
    size_t pos = 0, end, next;
    int r;

    memset(req, 0, sizeof(*req));
    /* RFC 9112 2.2: ignore empty lines before the request line (a few, not forever). */
    for (int k = 0; k < 4 && pos < len; k++) {
        if (buf[pos] == '\n') {
            pos++;
        } else if (buf[pos] == '\r') {
            if (pos + 1 >= len)
                return 0;
            if (buf[pos + 1] != '\n')
                return -400;
            pos += 2;
        } else {
            break;
        }
    }
    r = next_line(buf, len, pos, &end, &next);
    if (r <= 0)
        return r < 0 ? r : (len > max_head ? -431 : 0);
    if (end == pos)
        return -400;                    /* still an empty line: give up */
    long rl = parse_request_line(buf + pos, end - pos, req);
    if (rl < 0)
        return rl;
    pos = next;
    for (;;) {
        if (pos > max_head)
            return -431;
        r = next_line(buf, len, pos, &end, &next);
        if (r < 0)
            return r;
        if (r == 0)
            return len > max_head ? -431 : 0;
        if (next > max_head)
            return -431;
        if (end == pos)
            break;                      /* blank line: end of the head */
        const char *p = buf + pos;
        size_t n = end - pos;
        if (p[0] == ' ' || p[0] == '\t')
            return -400;                /* obs-fold */
        size_t i = 0;
        while (i < n && p[i] != ':') {
            if (!is_tchar((unsigned char)p[i]))
                return -400;            /* includes whitespace before the colon */
            i++;
        }
        if (i == 0 || i == n)
            return -400;
        size_t vs = i + 1, ve = n;
        while (vs < n && (p[vs] == ' ' || p[vs] == '\t'))
            vs++;
        while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
            ve--;
        for (size_t k = vs; k < ve; k++) {
            unsigned char c = (unsigned char)p[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return -400;            /* NUL, bare CR, other controls */
        }
        if (req->header_count == HTTP_MAX_HEADERS)
            return -431;
        struct http_header *h = &req->headers[req->header_count++];
        h->name = p;
        h->name_len = i;
        h->value = p + vs;
        h->value_len = ve - vs;
        pos = next;
    }
    long s = apply_semantics(req);
    if (s < 0)
        return s;
    return (long)next;
}

enum {
    C_SIZE, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF,
    C_TRAILER_START, C_TRAILER, C_TRAILER_LF, C_FINAL_LF
};

long http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
                       size_t *data_off, size_t *data_len)
{
    size_t pos = 0;
    *data_off = 0;
    *data_len = 0;
    while (pos < len && !c->done) {
        unsigned char ch = (unsigned char)in[pos];
        switch (c->state) {
        case C_SIZE: {
            int h = hexval(ch);
            if (h >= 0) {
                if (++c->digits > 15)
                    return -400;        /* absurd chunk size */
                c->remaining = c->remaining * 16 + (uint64_t)h;
            } else if (c->digits == 0) {
                return -400;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = C_EXT;
            } else if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if (ch == '\n') {
                goto size_done;
            } else {
                return -400;
            }
            pos++;
            continue;
        }
        case C_EXT:
            if (++c->line > 4096)
                return -400;
            if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if (ch == '\n') {
                goto size_done;
            } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                return -400;
            }
            pos++;
            continue;
        case C_SIZE_LF:
            if (ch != '\n')
                return -400;
            goto size_done;
        case C_DATA: {
            if (*data_len > 0)
                return (long)pos;       /* one span per call */
            size_t n = len - pos;
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            *data_off = pos;
            *data_len = n;
            c->remaining -= n;
            c->total += n;
            pos += n;
            if (c->remaining == 0)
                c->state = C_DATA_CR;
            continue;
        }
        case C_DATA_CR:
            if (ch == '\r') {
                c->state = C_DATA_LF;
            } else if (ch == '\n') {
                c->state = C_SIZE;
                c->digits = 0;
                c->line = 0;
            } else {
                return -400;
            }
            pos++;
            continue;
        case C_DATA_LF:
            if (ch != '\n')
                return -400;
            c->state = C_SIZE;
            c->digits = 0;
            c->line = 0;
            pos++;
            continue;
        case C_TRAILER_START:
            if (ch == '\r') {
                c->state = C_FINAL_LF;
            } else if (ch == '\n') {
                c->done = 1;
            } else if (ch == ' ' || ch == '\t' || ch < 0x20 || ch == 0x7f) {
                return -400;            /* obs-fold or controls in the trailer section */
            } else {
                c->state = C_TRAILER;
                c->trailer_bytes++;
            }
            pos++;
            continue;
        case C_TRAILER:
            if (++c->trailer_bytes > 8192)
                return -400;
            if (ch == '\r')
                c->state = C_TRAILER_LF;
            else if (ch == '\n')
                c->state = C_TRAILER_START;
            else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return -400;
            pos++;
            continue;
        case C_TRAILER_LF:
            if (ch != '\n')
                return -400;
            c->state = C_TRAILER_START;
            pos++;
            continue;
        case C_FINAL_LF:
            if (ch != '\n')
                return -400;
            c->done = 1;
            pos++;
            continue;
        default:
            return -400;
        }
    size_done:
        pos++;
        c->line = 0;
        c->state = c->remaining == 0 ? C_TRAILER_START : C_DATA;
    }
    return (long)pos;
}

long http_decode_path(const char *in, size_t len, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -400;
            int h = hexval((unsigned char)in[i + 1]), l = hexval((unsigned char)in[i + 2]);
            if (h < 0 || l < 0)
                return -400;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0)
            return -400;
        if (o + 1 >= out_size)
            return -400;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}
