/* Compiled load generator for crosswire's benchmark: bench/run.py builds it with the system
 * gcc into bench/results/ on first use and starts it pinned with `taskset -c 1`.
 *
 *   loadgen --mode echo      --url ws://127.0.0.1:PORT/ --conns 10 --window 1
 *   loadgen --mode rpc       --url ws://127.0.0.1:PORT/ --conns 10 --window 1
 *   loadgen --mode sio       --url http://127.0.0.1:PORT/ --conns 10 --window 1
 *   loadgen --mode broadcast --url ws://127.0.0.1:PORT/ --subs 1000 --bwindow 8
 *           [--puburl ws://127.0.0.1:OTHER/]  (the publisher on another instance)
 *           [--url2 ws://127.0.0.1:OTHER/]    (every second subscriber on another instance)
 *           [--typed 1]                       (typed fan-out: SUB, PUB, NEWS)
 *   loadgen --mode idle      --url ws://127.0.0.1:PORT/ --conns 2000
 *
 * Options: --size (bytes per message, 100), --warmup (s, 0.5), --duration (s, 3),
 * --concurrency (handshakes in flight while connecting, 100). The options, the modes and the
 * JSON lines on stdout are those of bench/load.mjs (the Node generator it replaces), so that
 * bench/run.py drives either: {"event":"connected"}, {"event":"measure"} when the warm-up
 * ends, {"event":"end"} when the measurement ends, {"event":"result",...}; then every
 * connection is closed with a closing handshake. In idle mode: {"event":"ready"} once every
 * connection is open and has echoed one message, then it waits until stdin closes. On any
 * failure: {"event":"error","message":...} and exit status 2.
 *
 * One thread, non-blocking sockets, epoll. `--window 1` is one request in flight per
 * connection: send, wait for the reply, send the next. With `--window K` each connection keeps
 * K in flight; the replies that one read() returns are answered together, in one write().
 * Latency (send to reply, per request) is recorded in the counted seconds, and the result
 * gives its percentiles; `client_cpu` is this process's CPU time (getrusage) over the counted
 * seconds divided by their wall time: near 1.0 the generator, not the server, is the limit.
 *
 * The WebSocket client is minimal on purpose (RFC 6455): a fixed handshake (fixed
 * Sec-WebSocket-Key; the 101 status and the matching Sec-WebSocket-Accept are checked), masked
 * text frames out, unmasked server frames in. It accepts unfragmented text frames of up to
 * 64 KiB and answers pings; anything else (a binary, fragmented or masked frame, reserved
 * bits, a close before it asked for one, a frame over 64 KiB) fails the run loudly.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME 65536
#define RING (1u << 16) /* broadcasts tracked at once; must exceed --bwindow */

/* -- options ------------------------------------------------------------------------------- */

static struct {
    const char *mode, *url, *url2, *puburl;
    int conns, window, subs, bwindow, typed, size, concurrency;
    double warmup, duration;
} opt = {"echo", "ws://127.0.0.1:8000/", "", "", 10, 1, 1000, 8, 0, 100, 100, 0.5, 3.0};

enum { ECHO, RPC, SIO, BROADCAST, IDLE } mode;

struct target {
    struct sockaddr_in addr;
    char host[64];
    char path[256];
};
static struct target main_target, second_target, pub_target;

/* -- output -------------------------------------------------------------------------------- */

static void emit(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void fail(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* keep the JSON string valid */
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '\'';
    emit("{\"event\":\"error\",\"message\":\"loadgen: %s\"}", msg);
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(double *system) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *system = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + *system;
}

/* -- connections --------------------------------------------------------------------------- */

enum state { CONNECTING, HANDSHAKE, SETUP, READY, CLOSING, CLOSED };
enum role { WORKER, SUBSCRIBER, PUBLISHER };

struct conn {
    int fd, index;
    enum state state;
    enum role role;
    const struct target *target;
    int setup_step;
    unsigned char *rbuf;
    size_t rlen, rcap;
    unsigned char *wbuf;
    size_t wlen, woff, wcap;
    int want_out; /* EPOLLOUT armed */
    /* requests (echo, rpc, sio): ids are consecutive; slot id % window holds its send time */
    uint64_t next_id, acked; /* echo: replies come in order, acked is the oldest in flight */
    double *sent_at;
    unsigned char *pending;
    uint32_t got; /* subscriber: broadcasts received (they arrive in order) */
};

static struct conn *conns;
static int nconns, epfd;
static int opening, next_to_open, ready_count, closed_count;
static uint32_t rng = 2463534242u;

/* counters */
static uint64_t received, sent_total, wrong, pings;
static int running, measuring;
/* broadcast */
static uint32_t *ring;
static uint64_t completed, bsent;
static struct conn *publisher;
static int nsubs;
/* latency samples (ns), counted seconds only */
static uint32_t *lat;
static size_t nlat, lat_cap;

static unsigned char echo_msg[MAX_FRAME], pub_msg[MAX_FRAME];
static size_t echo_len, pub_len;
static char text_fill[MAX_FRAME]; /* "xxx...": the text of rpc and sio requests */
static size_t text_len;

static void arm(struct conn *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (c->want_out == out) return;
    c->want_out = out;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
}

static void reserve(unsigned char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    *buf = realloc(*buf, n);
    if (!*buf) fail("out of memory");
    *cap = n;
}

static void write_raw(struct conn *c, const void *data, size_t len) {
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    reserve(&c->wbuf, &c->wcap, c->wlen + len);
    memcpy(c->wbuf + c->wlen, data, len);
    c->wlen += len;
}

/* Queue one masked client frame (RFC 6455 5.2); flush() writes what is queued. */
static void write_frame(struct conn *c, int opcode, const unsigned char *data, size_t len) {
    if (len > MAX_FRAME) fail("frame of %zu bytes: over 64 KiB", len);
    unsigned char head[8];
    size_t h = 0;
    head[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        head[h++] = (unsigned char)(0x80 | len);
    } else {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(len >> 8);
        head[h++] = (unsigned char)len;
    }
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5; /* xorshift32: the masking key */
    unsigned char key[4] = {(unsigned char)rng, (unsigned char)(rng >> 8),
                            (unsigned char)(rng >> 16), (unsigned char)(rng >> 24)};
    memcpy(head + h, key, 4);
    h += 4;
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    reserve(&c->wbuf, &c->wcap, c->wlen + h + len);
    unsigned char *out = c->wbuf + c->wlen;
    memcpy(out, head, h);
    for (size_t i = 0; i < len; i++) out[h + i] = data[i] ^ key[i & 3];
    c->wlen += h + len;
}

static void write_text(struct conn *c, const void *data, size_t len) {
    write_frame(c, 1, data, len);
}

static void flush(struct conn *c) {
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm(c, 1);
            return;
        }
        if (c->state == CLOSING) {
            c->woff = c->wlen = 0;
            return;
        }
        fail("send on connection %d: %s", c->index, strerror(errno));
    }
    c->woff = c->wlen = 0;
    if (c->want_out && c->state != CONNECTING) arm(c, 0);
}

/* -- requests (echo, rpc, sio) ------------------------------------------------------------- */

static void send_request(struct conn *c) {
    uint64_t id = c->next_id++;
    uint32_t slot = (uint32_t)(id % (uint64_t)opt.window);
    c->sent_at[slot] = now();
    c->pending[slot] = 1;
    sent_total++;
    if (mode == ECHO) {
        write_text(c, echo_msg, echo_len);
        return;
    }
    char buf[MAX_FRAME + 128];
    int n;
    if (mode == RPC)
        n = snprintf(buf, sizeof buf,
                     "{\"type\":\"ECHO\",\"meta\":{\"correlationId\":\"%llu\"},"
                     "\"payload\":{\"text\":\"%s\"}}",
                     (unsigned long long)id, text_fill);
    else /* socket.io: EVENT with an ack id: 42<id>["echo","text"] */
        n = snprintf(buf, sizeof buf, "42%llu[\"echo\",\"%s\"]", (unsigned long long)id,
                     text_fill);
    write_text(c, buf, (size_t)n);
}

static void record_latency(double t0) {
    if (!measuring) return;
    if (nlat == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) fail("out of memory");
    }
    double ns = (now() - t0) * 1e9;
    lat[nlat++] = ns > 4e9 ? 4000000000u : (uint32_t)ns;
}

/* The reply to request `id`: check that it is in flight, count it, send the next. */
static void reply_for(struct conn *c, uint64_t id) {
    uint32_t slot = (uint32_t)(id % (uint64_t)opt.window);
    if (id >= c->next_id || c->next_id - id > (uint64_t)opt.window || !c->pending[slot]) {
        wrong++;
        return;
    }
    c->pending[slot] = 0;
    c->acked++;
    received++;
    record_latency(c->sent_at[slot]);
    if (running) send_request(c);
}

static int parse_id(const unsigned char *p, size_t len, uint64_t *id) {
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && p[i] >= '0' && p[i] <= '9') v = v * 10 + (uint64_t)(p[i++] - '0');
    *id = v;
    return i > 0;
}

static const unsigned char *find(const unsigned char *p, size_t len, const char *needle) {
    return memmem(p, len, needle, strlen(needle));
}

static void on_reply(struct conn *c, const unsigned char *p, size_t len) {
    uint64_t id;
    if (mode == ECHO) {
        if (len != echo_len) wrong++;
        reply_for(c, c->acked); /* in order: the oldest request in flight */
        return;
    }
    if (mode == RPC) {
        static const char key[] = "\"correlationId\":\"";
        const unsigned char *at = find(p, len, key);
        if (!find(p, len, "\"type\":\"ECHO_RESULT\"") || !at ||
            !parse_id(at + sizeof key - 1, len - (size_t)(at - p) - (sizeof key - 1), &id)) {
            wrong++;
            return;
        }
        reply_for(c, id);
        return;
    }
    /* socket.io */
    if (len == 1 && p[0] == '2') { /* engine.io ping: pong */
        write_text(c, "3", 1);
        pings++;
        return;
    }
    if (len > 2 && p[0] == '4' && p[1] == '3' && parse_id(p + 2, len - 2, &id)) {
        reply_for(c, id);
        return;
    }
    wrong++;
}

/* -- broadcast ----------------------------------------------------------------------------- */

static void pump(void) {
    int queued = 0;
    while (running && bsent < completed + (uint64_t)opt.bwindow) {
        write_text(publisher, pub_msg, pub_len);
        bsent++;
        queued = 1;
    }
    if (queued) flush(publisher);
}

static void on_delivery(struct conn *c, const unsigned char *p, size_t len) {
    static const char news[] = "{\"type\":\"NEWS\",";
    if (c->role == PUBLISHER) { /* the publisher is no subscriber */
        wrong++;
        return;
    }
    if (opt.typed && c->got == 0 && (len < sizeof news - 1 || memcmp(p, news, sizeof news - 1)))
        wrong++;
    received++;
    uint64_t k = c->got++;
    if (++ring[k & (RING - 1)] == (uint32_t)nsubs && k == completed) {
        while (ring[completed & (RING - 1)] == (uint32_t)nsubs) {
            ring[completed & (RING - 1)] = 0;
            completed++;
        }
        pump();
    }
}

/* -- connection set-up --------------------------------------------------------------------- */

static const char ws_key[] = "dGhlIHNhbXBsZSBub25jZQ==";     /* RFC 6455's example key */
static const char ws_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; /* and its accept value */

static void start_setup(struct conn *c);

static void became_ready(struct conn *c) {
    c->state = READY;
    ready_count++;
    opening--;
}

static void open_next(void);

static void on_setup_frame(struct conn *c, const unsigned char *p, size_t len) {
    if (mode == SIO) {
        if (c->setup_step == 0 && len > 0 && p[0] == '0') { /* engine.io open packet */
            write_text(c, "40", 2);                         /* connect to namespace "/" */
            c->setup_step = 1;
            return;
        }
        if (c->setup_step == 1 && len >= 2 && p[0] == '4' && p[1] == '0') {
            became_ready(c);
            return;
        }
        fail("socket.io set-up of connection %d: unexpected %.*s", c->index, (int)len, p);
    }
    if (c->role == SUBSCRIBER && opt.typed) {
        if (!find(p, len, "\"type\":\"SUBBED\"") || !find(p, len, "\"correlationId\":\"s1\""))
            fail("SUB answered with %.*s", (int)(len > 200 ? 200 : len), p);
    }
    became_ready(c); /* the probe's echo, or SUBBED */
}

static void start_setup(struct conn *c) {
    c->state = SETUP;
    if (mode == SIO) return; /* waits for the open packet */
    if (c->role == PUBLISHER || mode == RPC) {
        became_ready(c);
        return;
    }
    if (c->role == SUBSCRIBER) {
        if (opt.typed) {
            static const char sub[] = "{\"type\":\"SUB\",\"meta\":{\"correlationId\":\"s1\"}}";
            write_text(c, sub, sizeof sub - 1);
        } else {
            write_text(c, "sub", 3);
            write_text(c, "probe", 5); /* echoed once "sub" was handled */
        }
    } else {
        write_text(c, "probe", 5); /* echoed: the connection is fully set up */
    }
    flush(c);
}

static void on_handshake(struct conn *c) {
    unsigned char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen > 8192) fail("handshake response of connection %d too long", c->index);
        return;
    }
    size_t head = (size_t)(end - c->rbuf) + 4;
    if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0)
        fail("handshake of connection %d refused: %.*s", c->index,
             (int)(head > 120 ? 120 : head), c->rbuf);
    if (!memmem(c->rbuf, head, ws_accept, sizeof ws_accept - 1))
        fail("handshake of connection %d: wrong Sec-WebSocket-Accept", c->index);
    memmove(c->rbuf, c->rbuf + head, c->rlen - head);
    c->rlen -= head;
    start_setup(c);
}

static void open_conn(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&c->target->addr, sizeof c->target->addr) < 0 &&
        errno != EINPROGRESS)
        fail("connect: %s", strerror(errno));
    c->state = CONNECTING;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    opening++;
}

static void open_next(void) {
    while (next_to_open < nconns && opening < opt.concurrency) open_conn(&conns[next_to_open++]);
}

static void on_connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) fail("connect to port %d: %s", ntohs(c->target->addr.sin_port), strerror(err));
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     c->target->path, c->target->host, ws_key);
    c->state = HANDSHAKE;
    write_raw(c, req, (size_t)n);
    flush(c);
}

/* -- frames in ----------------------------------------------------------------------------- */

static void on_text(struct conn *c, const unsigned char *p, size_t len) {
    if (c->state == SETUP) on_setup_frame(c, p, len);
    else if (c->state == CLOSING) return; /* what was in flight when it asked to close */
    else if (c->state != READY) fail("frame on connection %d before set-up", c->index);
    else if (mode == BROADCAST) on_delivery(c, p, len);
    else if (mode == IDLE) wrong++;
    else on_reply(c, p, len);
}

/* Handle every complete frame in the read buffer; keep a partial one. */
static void on_frames(struct conn *c) {
    size_t off = 0;
    while (c->rlen - off >= 2) {
        unsigned char *f = c->rbuf + off;
        size_t avail = c->rlen - off, head = 2, len = f[1] & 0x7f;
        if (f[1] & 0x80) fail("masked frame from the server on connection %d", c->index);
        if (f[0] & 0x70) fail("reserved bits set by the server on connection %d", c->index);
        if (len == 126) {
            if (avail < 4) break;
            len = ((size_t)f[2] << 8) | f[3];
            head = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            uint64_t v = 0;
            for (int i = 2; i < 10; i++) v = (v << 8) | f[i];
            if (v > MAX_FRAME) fail("frame of %llu bytes: over 64 KiB", (unsigned long long)v);
            len = (size_t)v;
            head = 10;
        }
        if (avail < head + len) {
            reserve(&c->rbuf, &c->rcap, head + len);
            break;
        }
        int opcode = f[0] & 0x0f, fin = f[0] & 0x80;
        const unsigned char *p = f + head;
        off += head + len;
        if (!fin || opcode == 0) fail("fragmented message on connection %d", c->index);
        if (opcode == 1) {
            on_text(c, p, len);
        } else if (opcode == 9) { /* ping: pong with the same payload */
            write_frame(c, 10, p, len);
            pings++;
        } else if (opcode == 10) { /* unsolicited pong: allowed, ignored */
        } else if (opcode == 8) {
            if (c->state != CLOSING)
                fail("connection %d closed by the server (code %d)", c->index,
                     len >= 2 ? (p[0] << 8) | p[1] : 1005);
            c->state = CLOSED;
            closed_count++;
            close(c->fd);
            return;
        } else {
            fail("frame with opcode %d on connection %d (text frames only)", opcode, c->index);
        }
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
}

static void on_readable(struct conn *c) {
    if (c->rcap - c->rlen < 4096) reserve(&c->rbuf, &c->rcap, c->rlen + 4096);
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        if (c->state == CLOSING) {
            c->state = CLOSED;
            closed_count++;
            close(c->fd);
            return;
        }
        fail("connection %d lost: %s", c->index, n == 0 ? "closed by the server" : strerror(errno));
    }
    c->rlen += (size_t)n;
    if (c->state == HANDSHAKE) on_handshake(c);
    if (c->state != HANDSHAKE) on_frames(c);
    if (c->state != CLOSED) flush(c); /* the answers to one read leave in one write */
}

static void on_event(struct conn *c, uint32_t events) {
    if (c->state == CLOSED) return;
    if (c->state == CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
        return;
    }
    if (events & EPOLLOUT) flush(c);
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
}

/* -- the loop ------------------------------------------------------------------------------ */

static int stdin_closed;

/* Run the event loop until `until` (monotonic seconds) or until done() says so. */
static void loop(double until, int (*done)(void)) {
    struct epoll_event events[256];
    while (!(done && done())) {
        double left = until - now();
        if (left <= 0) return;
        int ms = left > 0.1 ? 100 : (int)(left * 1000) + 1;
        int n = epoll_wait(epfd, events, 256, ms);
        if (n < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) { /* stdin (idle mode) */
                char buf[256];
                if (read(0, buf, sizeof buf) <= 0) stdin_closed = 1;
                continue;
            }
            on_event(events[i].data.ptr, events[i].events);
        }
        if (next_to_open < nconns) open_next();
    }
}

static int all_ready(void) { return ready_count == nconns; }
static int all_closed(void) { return closed_count == nconns; }
static int stdin_done(void) { return stdin_closed; }

static int drained(void) {
    if (mode == BROADCAST) return completed >= bsent;
    for (int i = 0; i < nconns; i++)
        if (conns[i].acked < conns[i].next_id) return 0;
    return 1;
}

static void close_all(void) {
    static const unsigned char bye[2] = {0x03, 0xe8}; /* 1000 */
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == CLOSED) continue;
        c->state = CLOSING;
        if (mode == SIO) write_text(c, "41", 2); /* leave the namespace */
        write_frame(c, 8, bye, 2);
        flush(c);
    }
    loop(now() + 5.0, all_closed);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double percentile(double q) {
    size_t i = (size_t)(q * (double)(nlat - 1) + 0.5);
    return lat[i] / 1000.0;
}

/* -- main ---------------------------------------------------------------------------------- */

static void parse_url(const char *url, struct target *t) {
    const char *rest;
    if (!strncmp(url, "ws://", 5)) rest = url + 5;
    else if (!strncmp(url, "http://", 7)) rest = url + 7;
    else fail("url %s: ws:// or http:// only", url);
    const char *slash = strchr(rest, '/');
    size_t hostlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hostlen >= sizeof t->host) fail("url %s: host too long", url);
    memcpy(t->host, rest, hostlen);
    t->host[hostlen] = 0;
    snprintf(t->path, sizeof t->path, "%s", slash ? slash : "/");
    if (mode == SIO) snprintf(t->path, sizeof t->path, "/socket.io/?EIO=4&transport=websocket");
    char name[64];
    snprintf(name, sizeof name, "%s", t->host);
    char *colon = strrchr(name, ':');
    int port = 80;
    if (colon) {
        *colon = 0;
        port = atoi(colon + 1);
    }
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, name, &t->addr.sin_addr) != 1) {
        struct hostent *he = gethostbyname(name);
        if (!he || he->h_addrtype != AF_INET) fail("url %s: cannot resolve %s", url, name);
        memcpy(&t->addr.sin_addr, he->h_addr_list[0], 4);
    }
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v || strncmp(k, "--", 2)) fail("usage: loadgen --option value ... (see loadgen.c)");
        k += 2;
        if (!strcmp(k, "mode")) opt.mode = v;
        else if (!strcmp(k, "url")) opt.url = v;
        else if (!strcmp(k, "url2")) opt.url2 = v;
        else if (!strcmp(k, "puburl")) opt.puburl = v;
        else if (!strcmp(k, "conns")) opt.conns = atoi(v);
        else if (!strcmp(k, "window")) opt.window = atoi(v);
        else if (!strcmp(k, "subs")) opt.subs = atoi(v);
        else if (!strcmp(k, "bwindow")) opt.bwindow = atoi(v);
        else if (!strcmp(k, "typed")) opt.typed = atoi(v);
        else if (!strcmp(k, "size")) opt.size = atoi(v);
        else if (!strcmp(k, "concurrency")) opt.concurrency = atoi(v);
        else if (!strcmp(k, "warmup")) opt.warmup = atof(v);
        else if (!strcmp(k, "duration")) opt.duration = atof(v);
        else fail("unknown option --%s", k);
    }
    if (!strcmp(opt.mode, "echo")) mode = ECHO;
    else if (!strcmp(opt.mode, "rpc")) mode = RPC;
    else if (!strcmp(opt.mode, "sio")) mode = SIO;
    else if (!strcmp(opt.mode, "broadcast")) mode = BROADCAST;
    else if (!strcmp(opt.mode, "idle")) mode = IDLE;
    else fail("unknown mode %s", opt.mode);
    if (opt.window < 1 || opt.bwindow < 1 || (uint32_t)opt.bwindow >= RING)
        fail("--window and --bwindow must be at least 1 (--bwindow under %u)", RING);
    if (opt.size < 8 || opt.size > MAX_FRAME - 64) fail("--size between 8 and %d", MAX_FRAME - 64);
    if (opt.conns < 1 || opt.subs < 1 || opt.concurrency < 1) fail("counts must be at least 1");
}

static void build_messages(void) {
    echo_len = (size_t)opt.size;
    echo_msg[0] = 'e';
    memset(echo_msg + 1, 'x', echo_len - 1);
    /* rpc: the whole frame about --size bytes (as load.mjs: size - 60); sio: size - 40 */
    int less = mode == SIO ? 40 : 60;
    text_len = opt.size > less ? (size_t)(opt.size - less) : 1;
    memset(text_fill, 'x', text_len);
    text_fill[text_len] = 0;
    if (opt.typed) { /* {"type":"PUB","payload":{"text":"xx..."}} of about --size bytes */
        static const char head[] = "{\"type\":\"PUB\",\"payload\":{\"text\":\"", tail[] = "\"}}";
        size_t fixed = sizeof head - 1 + sizeof tail - 1;
        size_t n = (size_t)opt.size > fixed + 1 ? (size_t)opt.size - fixed : 1;
        memcpy(pub_msg, head, sizeof head - 1);
        memset(pub_msg + sizeof head - 1, 'x', n);
        memcpy(pub_msg + sizeof head - 1 + n, tail, sizeof tail - 1);
        pub_len = fixed + n;
    } else {
        memcpy(pub_msg, "pub:", 4);
        memset(pub_msg + 4, 'x', (size_t)opt.size - 4);
        pub_len = (size_t)opt.size;
    }
}

static void setup_conns(void) {
    parse_url(opt.url, &main_target);
    second_target = main_target;
    pub_target = main_target;
    if (*opt.url2) parse_url(opt.url2, &second_target);
    if (*opt.puburl) parse_url(opt.puburl, &pub_target);
    nconns = mode == BROADCAST ? opt.subs + 1 : opt.conns;
    nsubs = opt.subs;
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) fail("out of memory");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->index = i;
        c->fd = -1;
        c->target = &main_target;
        c->role = WORKER;
        if (mode == BROADCAST) {
            c->role = i < opt.subs ? SUBSCRIBER : PUBLISHER;
            if (c->role == PUBLISHER) c->target = &pub_target;
            else if (i % 2 == 1) c->target = &second_target;
        }
        if (mode == ECHO || mode == RPC || mode == SIO) {
            c->sent_at = calloc((size_t)opt.window, sizeof *c->sent_at);
            c->pending = calloc((size_t)opt.window, 1);
            if (!c->sent_at || !c->pending) fail("out of memory");
        }
    }
    if (mode == BROADCAST) {
        publisher = &conns[nconns - 1];
        ring = calloc(RING, sizeof *ring);
        if (!ring) fail("out of memory");
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    build_messages();
    epfd = epoll_create1(0);
    if (epfd < 0) fail("epoll_create1: %s", strerror(errno));
    setup_conns();

    open_next();
    loop(now() + 120.0, all_ready);
    if (!all_ready()) fail("only %d of %d connections set up in 120 s", ready_count, nconns);

    if (mode == IDLE) {
        emit("{\"event\":\"ready\",\"conns\":%d}", nconns);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) fail("epoll on stdin: %s", strerror(errno));
        loop(now() + 1e9, stdin_done);
        epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
        close_all();
        return 0;
    }
    emit("{\"event\":\"connected\",\"conns\":%d}", nconns);

    running = 1;
    if (mode == BROADCAST) {
        pump();
    } else {
        for (int i = 0; i < nconns; i++) {
            for (int k = 0; k < opt.window; k++) send_request(&conns[i]);
            flush(&conns[i]);
        }
    }
    loop(now() + opt.warmup, NULL);

    uint64_t count0 = received;
    double sys0, sys1, cpu0 = cpu_seconds(&sys0), t0 = now();
    measuring = 1;
    emit("{\"event\":\"measure\"}");
    loop(t0 + opt.duration, NULL);
    double t1 = now(), cpu1 = cpu_seconds(&sys1);
    uint64_t count = received - count0;
    measuring = 0;
    running = 0;
    emit("{\"event\":\"end\"}");

    loop(now() + 2.0, drained); /* let what is in flight come back */
    double secs = t1 - t0, rate = (double)count / secs;
    double client_cpu = (cpu1 - cpu0) / secs, client_sys = (sys1 - sys0) / secs;
    if (mode == BROADCAST) {
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int i = 0; i < opt.subs; i++) {
            lo = conns[i].got < lo ? conns[i].got : lo;
            hi = conns[i].got > hi ? conns[i].got : hi;
        }
        int complete = lo == bsent && hi == bsent;
        emit("{\"event\":\"result\",\"generator\":\"c\",\"mode\":\"broadcast\",\"subs\":%d,"
             "\"bwindow\":%d,\"size\":%zu,\"typed\":%s,\"split\":%s,\"wrong\":%llu,"
             "\"deliveries\":%llu,\"broadcasts\":%.1f,\"count\":%llu,\"seconds\":%.6f,"
             "\"rate\":%.1f,\"client_cpu\":%.4f,\"client_cpu_system\":%.4f,\"complete\":%s}",
             opt.subs, opt.bwindow, pub_len, opt.typed ? "true" : "false",
             *opt.url2 ? "true" : "false", (unsigned long long)wrong, (unsigned long long)count,
             (double)count / opt.subs, (unsigned long long)count, secs, rate, client_cpu,
             client_sys, complete ? "true" : "false");
    } else {
        char latency[200] = "null";
        if (nlat) {
            qsort(lat, nlat, sizeof *lat, cmp_u32);
            snprintf(latency, sizeof latency,
                     "{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"samples\":%zu}",
                     percentile(0.50), percentile(0.90), percentile(0.99), lat[nlat - 1] / 1000.0,
                     nlat);
        }
        emit("{\"event\":\"result\",\"generator\":\"c\",\"mode\":\"%s\",\"conns\":%d,"
             "\"window\":%d,\"size\":%zu,\"wrong\":%llu,\"pings\":%llu,\"messages\":%llu,"
             "\"count\":%llu,\"seconds\":%.6f,\"rate\":%.1f,\"client_cpu\":%.4f,"
             "\"client_cpu_system\":%.4f,\"latency_us\":%s}",
             opt.mode, opt.conns, opt.window, (size_t)opt.size,
             (unsigned long long)wrong, (unsigned long long)pings, (unsigned long long)count,
             (unsigned long long)count, secs, rate, client_cpu, client_sys, latency);
    }
    close_all();
    return 0;
}
