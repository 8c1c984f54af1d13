/*
 * midonet — the CNI plugin executable: a shim that forwards one CNI invocation to the bees agent.
 *
 * Why C: a container runtime starts one plugin process per CNI call, so the process's start-up is on every pod's
 * path. A static C binary starts in about a millisecond; Node takes ~110 ms and a `bun --compile` executable ~20 ms.
 * All CNI logic (validation, versions, results, the six commands) runs inside the already-running agent
 * (cni/plugin/run.ts behind `POST /v1/cni`, core/agent/workload-server.ts); this program only:
 *   1. reads stdin (the network configuration) and finds three top-level keys: agentSocket, agentTimeoutMs and
 *      cniVersion;
 *   2. answers VERSION itself (the agent is not needed to say which versions we speak);
 *   3. otherwise sends stdin and the CNI_* variables to the agent over its unix socket (HTTP/1.0), prints the
 *      answer's body on stdout and exits with the status in its `cni-exit-code` header;
 *   4. if the agent cannot be reached or answers something else, prints the CNI error object (code 11, or 50 for
 *      STATUS) and exits 1.
 * The whole exchange is bounded by agentTimeoutMs. No input (empty, huge, binary) makes it crash.
 *
 * cni_protocol.h is generated from cni/plugin/versions.ts and protocol.ts by cni/shim/build.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "cni_protocol.h"

/* A growable byte buffer; allocation failure ends the program with a CNI error (see oom). */
struct buf { char *p; size_t len, cap; };
static void put(struct buf *b, const void *data, size_t n);
static void putf(struct buf *b, const char *fmt, ...);

/* ---- The CNI error object on stdout ---- */

static const char *error_version = CNI_LATEST_VERSION; /* the config's cniVersion once known to be supported */

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* stdout gone: nobody is left to tell */
        p += w, n -= (size_t)w;
    }
}

__attribute__((noreturn)) static void fail(int code, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    static char out[8192]; /* no malloc here: fail() is also the out-of-memory path */
    size_t len = (size_t)snprintf(out, sizeof out, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"", error_version, code);
    for (int i = 0; i < n && len < sizeof out - 16; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '"' || c == '\\') len += (size_t)snprintf(out + len, 3, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) len += (size_t)snprintf(out + len, 7, "\\u%04x", c);
        else out[len++] = (char)c;
    }
    len += (size_t)snprintf(out + len, sizeof out - len, "\"}\n");
    write_all(1, out, len);
    exit(1);
}

static void put(struct buf *b, const void *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) fail(5, "out of memory");
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void putf(struct buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- A minimal, careful JSON scanner: validates the whole document, remembers three top-level values ---- */

struct scan { const unsigned char *p, *end; int depth; };
struct config {
    int is_object;                 /* stdin is one valid JSON object */
    const unsigned char *version;  /* cniVersion's raw string token (escapes as written), or NULL */
    size_t version_len;
    char socket[sizeof(((struct sockaddr_un *)0)->sun_path) + 64]; /* agentSocket, decoded */
    int socket_too_long;
    double timeout_ms;             /* agentTimeoutMs, or 0 */
};

static void ws(struct scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hex4(const unsigned char *p, unsigned *out) {
    *out = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
        else return -1;
        *out = *out * 16 + d;
    }
    return 0;
}

/* A string at s->p ('"'). Validates escapes; decodes into dec (NUL-terminated, cut at cap) when dec != NULL. */
static int string(struct scan *s, const unsigned char **raw, size_t *raw_len, char *dec, size_t cap, int *cut) {
    size_t n = 0;
    if (s->p >= s->end || *s->p != '"') return -1;
    const unsigned char *start = ++s->p;
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = *s->p++;
        unsigned cp = c;
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (s->p >= s->end) return -1;
            c = *s->p++;
            switch (c) {
            case '"': case '\\': case '/': cp = c; break;
            case 'b': cp = '\b'; break; case 'f': cp = '\f'; break; case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break; case 't': cp = '\t'; break;
            case 'u':
                if (s->end - s->p < 4 || hex4(s->p, &cp)) return -1;
                s->p += 4;
                if (cp >= 0xd800 && cp <= 0xdbff && s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u') {
                    unsigned lo;
                    if (!hex4(s->p + 2, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        s->p += 6;
                    }
                }
                if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; /* a lone surrogate */
                break;
            default: return -1;
            }
            if (dec) { /* UTF-8 encode cp; a NUL makes the value unusable as a path: cut it */
                unsigned char u[4]; size_t k;
                if (cp == 0) { *cut = 1; k = 0; }
                else if (cp < 0x80) u[0] = (unsigned char)cp, k = 1;
                else if (cp < 0x800) u[0] = 0xc0 | cp >> 6, u[1] = 0x80 | (cp & 63), k = 2;
                else if (cp < 0x10000) u[0] = 0xe0 | cp >> 12, u[1] = 0x80 | (cp >> 6 & 63), u[2] = 0x80 | (cp & 63), k = 3;
                else u[0] = 0xf0 | cp >> 18, u[1] = 0x80 | (cp >> 12 & 63), u[2] = 0x80 | (cp >> 6 & 63), u[3] = 0x80 | (cp & 63), k = 4;
                if (n + k < cap) memcpy(dec + n, u, k), n += k; else *cut = 1;
            }
        } else if (dec) {
            if (n + 1 < cap) dec[n++] = (char)c; else *cut = 1;
        }
    }
    if (s->p >= s->end) return -1;
    if (raw) *raw = start, *raw_len = (size_t)(s->p - start);
    if (dec) dec[n] = '\0';
    s->p++;
    return 0;
}

static int value(struct scan *s);

static int container(struct scan *s, unsigned char close, int keyed) {
    if (++s->depth > 1000) return -1; /* deeper than any config; refuse rather than recurse without end */
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) { s->p++; s->depth--; return 0; }
    for (;;) {
        ws(s);
        if (keyed) {
            if (string(s, NULL, NULL, NULL, 0, NULL)) return -1;
            ws(s);
            if (s->p >= s->end || *s->p++ != ':') return -1;
        }
        if (value(s)) return -1;
        ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == close) { s->p++; s->depth--; return 0; }
        if (*s->p++ != ',') return -1;
    }
}

static int value(struct scan *s) {
    ws(s);
    if (s->p >= s->end) return -1;
    switch (*s->p) {
    case '{': return container(s, '}', 1);
    case '[': return container(s, ']', 0);
    case '"': return string(s, NULL, NULL, NULL, 0, NULL);
    }
    static const char *const words[] = { "true", "false", "null" };
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(words[i]);
        if ((size_t)(s->end - s->p) >= k && !memcmp(s->p, words[i], k)) { s->p += k; return 0; }
    }
    /* A number: -?int frac? exp?, checked by its grammar. */
    const unsigned char *q = s->p;
    if (q < s->end && *q == '-') q++;
    if (q >= s->end || *q < '0' || *q > '9') return -1;
    if (*q == '0') q++; else while (q < s->end && *q >= '0' && *q <= '9') q++;
    if (q < s->end && *q == '.') {
        if (++q >= s->end || *q < '0' || *q > '9') return -1;
        while (q < s->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < s->end && (*q | 0x20) == 'e') {
        q++;
        if (q < s->end && (*q == '+' || *q == '-')) q++;
        if (q >= s->end || *q < '0' || *q > '9') return -1;
        while (q < s->end && *q >= '0' && *q <= '9') q++;
    }
    s->p = q;
    return 0;
}

/* Reads the top-level object; later duplicates win, as with JSON.parse. Nested keys are never looked at. */
static void scan_config(const char *in, size_t n, struct config *c) {
    struct scan s = { (const unsigned char *)in, (const unsigned char *)in + n, 0 };
    memset(c, 0, sizeof *c);
    ws(&s);
    if (s.p >= s.end || *s.p != '{') return;
    s.p++;
    ws(&s);
    int empty = s.p < s.end && *s.p == '}';
    if (empty) s.p++;
    while (!empty) {
        char key[32];
        int cut = 0;
        ws(&s);
        if (string(&s, NULL, NULL, key, sizeof key, &cut)) return;
        ws(&s);
        if (s.p >= s.end || *s.p++ != ':') return;
        ws(&s);
        const unsigned char *v = s.p;
        /* A repeated key replaces the earlier value, whatever its type (the agent will judge the value). */
        if (!cut && !strcmp(key, "cniVersion")) c->version = NULL;
        if (!cut && !strcmp(key, "agentSocket")) c->socket[0] = '\0', c->socket_too_long = 0;
        if (!cut && !strcmp(key, "agentTimeoutMs")) c->timeout_ms = 0;
        if (!cut && !strcmp(key, "cniVersion") && v < s.end && *v == '"') {
            if (string(&s, &c->version, &c->version_len, NULL, 0, NULL)) return;
        } else if (!cut && !strcmp(key, "agentSocket") && v < s.end && *v == '"') {
            char path[sizeof c->socket];
            int long_path = 0;
            if (string(&s, NULL, NULL, path, sizeof path, &long_path)) return; /* a cut-off string is no path */
            memcpy(c->socket, path, sizeof path);
            c->socket_too_long = long_path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path);
        } else {
            if (value(&s)) return;
            if (!cut && !strcmp(key, "agentTimeoutMs") && (*v == '-' || (*v >= '0' && *v <= '9'))) c->timeout_ms = strtod((const char *)v, NULL);
        }
        ws(&s);
        if (s.p >= s.end) return;
        if (*s.p == '}') { s.p++; break; }
        if (*s.p++ != ',') return;
    }
    ws(&s);
    c->is_object = s.p == s.end;
}

/* ---- Talking to the agent ---- */

static const char *agent_socket = CNI_DEFAULT_SOCKET;
static int unreachable_code = 11;  /* 50 for STATUS: the spec's "plugin not available" */
static long timeout_ms = CNI_DEFAULT_TIMEOUT_MS;
static double deadline;            /* CLOCK_MONOTONIC ms by which the whole exchange must be over */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

__attribute__((noreturn)) static void unreachable(const char *reason) {
    fail(unreachable_code, "cannot reach the bees agent at %s: %s", agent_socket, reason);
}

__attribute__((noreturn)) static void unreachable_errno(int err) {
    char why[256];
    switch (err) {
    case ENOENT: unreachable("no such socket (is the agent running?)");
    case ECONNREFUSED: unreachable("connection refused (is the agent running?)");
    case EACCES: case EPERM: unreachable("permission denied (the plugin must run as root)");
    case ETIMEDOUT:
        snprintf(why, sizeof why, "no answer within %ld ms (is the agent running?)", timeout_ms);
        unreachable(why);
    }
    snprintf(why, sizeof why, "%s (is the agent running?)", strerror(err));
    unreachable(why);
}

/* Waits until fd is ready for `events` or the deadline passes; on failure ends the program. */
static void wait_fd(int fd, short events) {
    for (;;) {
        double left = deadline - now_ms();
        if (left <= 0) unreachable_errno(ETIMEDOUT);
        struct pollfd p = { fd, events, 0 };
        int r = poll(&p, 1, left > 1e9 ? 1000000000 : (int)ceil(left));
        if (r > 0) return;
        if (r == 0) unreachable_errno(ETIMEDOUT);
        if (errno != EINTR) unreachable_errno(errno);
    }
}

static int connect_agent(void) {
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    strcpy(addr.sun_path, agent_socket); /* length checked by main */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) unreachable_errno(errno);
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno == EINTR) continue;
        if (errno == EINPROGRESS) { /* wait, then read the outcome */
            int err = 0;
            socklen_t len = sizeof err;
            wait_fd(fd, POLLOUT);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
            if (err) unreachable_errno(err);
            return fd;
        }
        if (errno != EAGAIN) unreachable_errno(errno);
        /* EAGAIN: the agent's accept backlog is full; it is busy, not gone. Try again shortly. */
        if (now_ms() >= deadline) unreachable_errno(ETIMEDOUT);
        usleep(2000);
    }
    return fd;
}

/* Header values are percent-encoded (anything but a few plain characters), so any byte survives the trip. */
static void put_encoded(struct buf *b, const char *v) {
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("-._~/:,=;", *p)) put(b, p, 1);
        else putf(b, "%%%02X", *p);
    }
}

/* A short, printable excerpt of what a non-agent answered, for the error message. */
static const char *excerpt(const char *p, size_t n) {
    static char out[121];
    size_t i;
    for (i = 0; i < n && i < sizeof out - 1; i++) out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    out[i] = '\0';
    return out;
}

__attribute__((noreturn)) static void garbage(const char *what, const char *p, size_t n) {
    char why[512];
    snprintf(why, sizeof why, "it answered %s, not the agent's CNI answer: \"%s\" (is the agent running?)", what, excerpt(p, n));
    unreachable(why);
}

/* Case-insensitive header lookup in [p, end): the value (trimmed) or NULL. */
static const char *header(const char *p, const char *end, const char *name, size_t *len) {
    size_t n = strlen(name);
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > n && p[n] == ':' && !strncasecmp(p, name, n)) {
            const char *v = p + n + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

__attribute__((noreturn)) static void exchange(const struct buf *stdin_conf) {
    struct buf req = { 0 };
    putf(&req, "POST %s HTTP/1.0\r\nHost: bees-agent\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n", CNI_ROUTE, stdin_conf->len);
    for (size_t i = 0; i < CNI_ENV_VAR_COUNT; i++) {
        const char *v = getenv(cni_env_vars[i][0]);
        if (!v) continue; /* absent header = unset variable */
        putf(&req, "%s: ", cni_env_vars[i][1]);
        put_encoded(&req, v);
        put(&req, "\r\n", 2);
    }
    put(&req, "\r\n", 2);
    put(&req, stdin_conf->p, stdin_conf->len);

    int fd = connect_agent();
    for (size_t off = 0; off < req.len;) {
        ssize_t w = send(fd, req.p + off, req.len - off, MSG_NOSIGNAL);
        if (w > 0) { off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) { wait_fd(fd, POLLOUT); continue; }
        break; /* the agent closed early (e.g. refused the request): read what it said */
    }

    struct buf res = { 0 };
    put(&res, "", 0);
    char chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r > 0) {
            if (res.len + (size_t)r > 64u << 20) garbage("more than 64 MiB", res.p, res.len);
            put(&res, chunk, (size_t)r);
        } else if (r == 0) break;
        else if (errno == EAGAIN) wait_fd(fd, POLLIN);
        else if (errno != EINTR) {
            if (res.len == 0) unreachable_errno(errno);
            break;
        }
    }
    close(fd);

    /* "HTTP/1.x 200 ...", headers, blank line, body. */
    const char *head_end = memmem(res.p, res.len, "\r\n\r\n", 4);
    if (res.len == 0) unreachable("it closed the connection without answering (is the agent running?)");
    if (res.len < 12 || memcmp(res.p, "HTTP/1.", 7) || !head_end) garbage("something that is not HTTP", res.p, res.len);
    const char *body = head_end + 4;
    size_t body_len = res.len - (size_t)(body - res.p);
    if (memcmp(res.p + 8, " 200", 4)) garbage("an HTTP error", res.p, res.len);
    size_t n;
    const char *code = header(res.p, head_end, CNI_EXIT_CODE_HEADER, &n);
    if (!code || n != 1 || (*code != '0' && *code != '1')) garbage("HTTP 200 without a valid " CNI_EXIT_CODE_HEADER " header", body, body_len);
    const char *cl = header(res.p, head_end, "content-length", &n);
    if (cl) {
        char tmp[24] = { 0 };
        memcpy(tmp, cl, n < sizeof tmp - 1 ? n : sizeof tmp - 1);
        char *e;
        unsigned long long want = strtoull(tmp, &e, 10);
        if (*e || e == tmp || want > body_len) garbage("a body shorter than its Content-Length", body, body_len);
        body_len = (size_t)want;
    }
    write_all(1, body, body_len);
    exit(*code - '0');
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *command = getenv("CNI_COMMAND");
    if (command && !strcmp(command, "STATUS")) unreachable_code = 50;

    /* stdin, whole. Beyond the limit: drain it (the runtime's writer must not see EPIPE) and refuse. */
    struct buf in = { 0 };
    put(&in, "", 0);
    int too_big = 0;
    char chunk[65536];
    for (;;) {
        ssize_t r = read(0, chunk, sizeof chunk);
        if (r > 0) {
            if (in.len + (size_t)r > CNI_MAX_STDIN) too_big = 1;
            else put(&in, chunk, (size_t)r);
        } else if (r == 0) break;
        else if (errno == EINTR) continue;
        else if (errno == EAGAIN && in.len == 0) break; /* non-blocking stdin with nothing in it: no config */
        else if (errno == EAGAIN) { struct pollfd p = { 0, POLLIN, 0 }; poll(&p, 1, -1); }
        else if (errno == EBADF) break; /* no stdin at all */
        else fail(5, "cannot read the network configuration from stdin: %s", strerror(errno));
    }
    if (too_big) fail(6, "the network configuration on stdin is larger than %d bytes", CNI_MAX_STDIN);

    struct config c;
    scan_config(in.p, in.len, &c);

    if (command && !strcmp(command, "VERSION")) {
        /* Answered here: the versions are compiled in (generated from cni/plugin/versions.ts). */
        size_t i = 0;
        while (i < in.len && (in.p[i] == ' ' || in.p[i] == '\t' || in.p[i] == '\n' || in.p[i] == '\r')) i++;
        if (i < in.len && !c.is_object) {
            struct scan s = { (const unsigned char *)in.p, (const unsigned char *)in.p + in.len, 0 };
            int valid = !value(&s) && (ws(&s), s.p == s.end);
            fail(6, valid ? "network configuration on stdin must be a JSON object" : "network configuration on stdin is not JSON");
        }
        struct buf out = { 0 };
        putf(&out, "{\"cniVersion\":\"");
        if (c.version && c.version_len) put(&out, c.version, c.version_len); /* valid JSON string text as written */
        else putf(&out, "%s", CNI_LATEST_VERSION);
        putf(&out, "\",\"supportedVersions\":%s}\n", CNI_SUPPORTED_VERSIONS_JSON);
        write_all(1, out.p, out.len);
        return 0;
    }

    for (size_t i = 0; cni_supported_versions[i]; i++)
        if (c.version && c.version_len == strlen(cni_supported_versions[i]) && !memcmp(c.version, cni_supported_versions[i], c.version_len))
            error_version = cni_supported_versions[i];
    if (c.socket[0]) agent_socket = c.socket;
    if (c.socket_too_long) unreachable("the socket path is too long for a unix socket");
    if (c.timeout_ms > 0 && isfinite(c.timeout_ms)) timeout_ms = c.timeout_ms > 1e9 ? 1000000000L : (long)ceil(c.timeout_ms);
    deadline = now_ms() + (double)timeout_ms;
    exchange(&in);
}
