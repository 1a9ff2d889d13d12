/* bootload: phones booting over HTTP/1.1, one epoll loop on one thread (bench/boot.py).

   Each of --concurrency slots plays one phone's boot at a time: the requests of the
   sequence file in order, from the phone's own source address, over one keep-alive
   connection per boot (--mode keepalive) or a new connection per request sending
   `Connection: close` (--mode close). When a boot ends the slot takes the next phone,
   round-robin over --phones from --first, so an address comes back only every --phones
   boots (`next_phone` in the output is where the next run should start). With --boots N
   the run ends after N boots instead (when the time is not up first).

   With --poll 1 the loop never sleeps (epoll_wait with a zero timeout, its core always
   busy): on loopback, a server's write to a socket whose reader sleeps wakes that reader from
   the server's own system call (an inter-processor interrupt, ~5-10 us on a VM), a cost no
   server pays for phones across a network. Polling takes that out for every server alike
   (not the rest of loopback's cost: the kernel's receive work still runs where the packet is
   sent). Its CPU share then says nothing of its headroom: `idle_pct`, the share of the
   measured window spent in turns of the loop that found nothing to do, does (near 0: the
   generator bounds the rate; null without --poll).

   Phone i has the MAC 0004f2 + six hex digits of i and the source address
   127.(NET + i / 62500).(i / 250 % 250 + 1).(i % 250 + 1): never a .0 or a .255.
   A fraction of the phones (--tagged, chosen by a hash of the MAC) tag (SN:<mac>) in
   their User-Agent as with device.prov.tagSerialNo=1; the rest send Polycom's default.

   Sequence file, one request a line (# starts a comment):
       METHOD  PATH-TEMPLATE  STAGE  BODY-BYTES
   where {mac} in the path stands for the phone's MAC and STAGE (Updater or
   Application) ends the User-Agent (`... Type/Updater`).

   Responses are parsed (status line, headers, Content-Length; bodies skipped).
   A keep-alive connection the server closed before answering (no byte of the answer
   came) is opened again and the request sent again, at most 3 times; anything else
   that is not a well-formed answer (bad status line or header, no length, chunked
   framing, bytes beyond the answer, EOF or reset inside an answer, a timeout) is an
   error, counted by kind, and the boot goes on with its next request on a new
   connection.

   Runs --warmup seconds, then measures --seconds, then stops sending and waits (at
   most 5 s) for the requests in flight, so that `answers_total` is every answer the
   server sent. Prints one JSON line: rates, status counts (measured window and
   whole run), errors, latency percentiles and its own CPU use in the window.

   Build: gcc -O2 -o bootload bootload.c (std C + Linux, no libraries). */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { MAX_STEPS = 64, IN_SIZE = 16384, OUT_SIZE = 4096, MAX_RETRIES = 3 };
enum { HIST_SUB = 32, HIST_SIZE = 64 * HIST_SUB };
enum { FREE, CONNECTING, ACTIVE, DEFERRED };

enum error_kind {
    E_CONNECT, E_SEND, E_RESET, E_EOF, E_STATUS_LINE, E_HEADER, E_HEAD_TOO_LARGE, E_NO_LENGTH,
    E_CHUNKED, E_EXTRA_BYTES, E_TIMEOUT, E_RETRIES, E_KINDS
};
static const char *error_names[E_KINDS] = {
    "connect", "send", "reset_mid_answer", "eof_mid_answer", "bad_status_line", "bad_header",
    "head_too_large", "no_length", "chunked", "bytes_beyond_answer", "timeout",
    "server_kept_closing"
};

struct step {
    char method[16];
    char path[512];
    char stage[32];
    int body;
    int head; /* HEAD: no body in the answer */
};

struct slot {
    int fd;
    uint32_t gen; /* tells a stale epoll event from one of the current socket */
    int state;
    int phone;
    int step;
    int retries;
    int want_out; /* registered for EPOLLOUT (a send is pending) */
    char *out;
    size_t out_len, out_off;
    char in[IN_SIZE];
    size_t in_len;
    size_t got;      /* bytes of this request's answer received */
    int have_head;
    int status;
    long long body_left;
    int to_eof;     /* body ends with the connection */
    int answer_close; /* the answer said Connection: close */
    uint64_t started; /* ns */
    uint64_t deadline;
};

static struct step steps[MAX_STEPS];
static int nsteps;
static struct slot *slots;
static int nslots;
static int ep;
static struct sockaddr_in server;
static char host_header[128];
static int phones = 20000, concurrency = 256, close_mode, net = 20, poll_mode;
static double tagged = 0.25, warmup = 2, seconds = 10, timeout_s = 10;
static int next_phone;
static long long max_boots, boots_started; /* --boots: stop after this many boots */
static char *body;
static int max_body;

static uint64_t t_warm, t_end; /* ns */
static int stopping;
static int *deferred, ndeferred; /* slots whose next request starts from the main loop */
static int *deferring; /* the turn's list being worked through */

/* counts: [0] measured window, [1] whole run */
static long long status_count[2][600];
static long long other_status[2];
static long long errors[2][E_KINDS];
static long long boots[2], resends, answer_closes, connections, unfinished;
static long long hist[HIST_SIZE];
static long long step_hist[MAX_STEPS][HIST_SIZE];      /* measured window, by request */
static long long step_status[MAX_STEPS][600];          /* measured window */
static long long sent_requests;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bucket(uint64_t us) {
    if (us < HIST_SUB) return (int)us;
    int e = 63 - __builtin_clzll(us); /* e >= 5 */
    int idx = (e - 4) * HIST_SUB + (int)((us >> (e - 5)) & (HIST_SUB - 1));
    return idx < HIST_SIZE ? idx : HIST_SIZE - 1;
}

static double bucket_mid_us(int idx) {
    if (idx < HIST_SUB) return idx + 0.5;
    int e = idx / HIST_SUB + 4;
    int m = idx % HIST_SUB;
    double low = (double)((uint64_t)(HIST_SUB + m) << (e - 5));
    return low + (double)((uint64_t)1 << (e - 5)) / 2;
}

static int in_window(uint64_t t) { return t >= t_warm && t < t_end; }

static int is_tagged(int i) {
    uint32_t h = (uint32_t)i * 2654435761u;
    return (double)((h >> 8) % 10000) < tagged * 10000;
}

static void mac_of(int i, char *mac) { sprintf(mac, "0004f2%06x", (unsigned)i & 0xffffff); }

static void address_of(int i, struct sockaddr_in *a) {
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    uint32_t ip = (127u << 24) | ((uint32_t)(net + i / 62500) << 16) |
                  ((uint32_t)(i / 250 % 250 + 1) << 8) | (uint32_t)(i % 250 + 1);
    a->sin_addr.s_addr = htonl(ip);
}

static char *put(char *p, const char *s) {
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static void build_request(struct slot *s) {
    const struct step *st = &steps[s->step];
    char mac[16];
    mac_of(s->phone, mac);
    char *p = s->out;
    p = put(p, st->method);
    *p++ = ' ';
    for (const char *t = st->path; *t;) {
        if (strncmp(t, "{mac}", 5) == 0) {
            p = put(p, mac);
            t += 5;
        } else {
            *p++ = *t++;
        }
    }
    p = put(p, " HTTP/1.1\r\nHost: ");
    p = put(p, host_header);
    p = put(p, "\r\nUser-Agent: FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477");
    if (is_tagged(s->phone)) {
        p = put(p, " (SN:");
        p = put(p, mac);
        p = put(p, ")");
    }
    p = put(p, " Type/");
    p = put(p, st->stage);
    p = put(p, "\r\nAccept: */*\r\n");
    if (close_mode) p = put(p, "Connection: close\r\n");
    if (st->body > 0 || strcmp(st->method, "PUT") == 0 || strcmp(st->method, "POST") == 0) {
        p += sprintf(p, "Content-Type: text/plain\r\nContent-Length: %d\r\n", st->body);
    }
    p = put(p, "\r\n");
    memcpy(p, body, (size_t)st->body);
    p += st->body;
    s->out_len = (size_t)(p - s->out);
    s->out_off = 0;
}

static void reset_answer(struct slot *s) {
    s->in_len = 0;
    s->got = 0;
    s->have_head = 0;
    s->status = 0;
    s->body_left = 0;
    s->to_eof = 0;
    s->answer_close = 0;
}

static void close_conn(struct slot *s) {
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    s->gen++;
    s->want_out = 0;
}

static void start_step(struct slot *s);
static void next_boot(struct slot *s);

static void count_error(struct slot *s, enum error_kind kind) {
    uint64_t t = now_ns();
    errors[1][kind]++;
    if (in_window(t)) errors[0][kind]++;
    close_conn(s);
}

/* the request failed: the boot goes on with its next request on a new connection, started
   from the main loop (a server refusing every connection must not recurse the stack) */
static void fail(struct slot *s, enum error_kind kind) {
    count_error(s, kind);
    s->step++;
    s->retries = 0;
    s->state = DEFERRED;
    deferred[ndeferred++] = (int)(s - slots);
}

static void watch(struct slot *s, uint32_t events, int add) {
    struct epoll_event ev = {.events = events,
                             .data.u64 = ((uint64_t)s->gen << 32) | (uint32_t)(s - slots)};
    if (epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s->fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(2);
    }
}

/* returns 0 when everything is sent, 1 when more is pending, -1 on error (handled) */
static int send_some(struct slot *s) {
    while (s->out_off < s->out_len) {
        ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            s->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
    return 0;
}

static void resend_or_fail(struct slot *s, enum error_kind kind);

/* the connection is up (or thought to be): send, then wait for the answer */
static void push(struct slot *s, int registered) {
    int r = send_some(s);
    if (r < 0) {
        if (s->state == CONNECTING) fail(s, E_CONNECT);
        else resend_or_fail(s, E_SEND); /* e.g. a kept-alive connection the server closed */
        return;
    }
    uint32_t events = r ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
    if (r == 1 && s->out_off == 0 && s->state == CONNECTING) {
        /* still connecting: wait for writability */
        if (!registered) watch(s, EPOLLOUT, 1);
        else if (!s->want_out) watch(s, EPOLLOUT, 0);
        s->want_out = 1;
        return;
    }
    s->state = ACTIVE;
    if (!registered) {
        watch(s, events, 1);
    } else if (s->want_out != (r == 1)) {
        watch(s, events, 0);
    }
    s->want_out = r == 1;
}

static void open_conn(struct slot *s) {
    struct sockaddr_in src;
    address_of(s->phone, &src);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        perror("socket");
        exit(2);
    }
    s->gen++;
    s->want_out = 0;
    int one = 1;
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(s->fd, (struct sockaddr *)&src, sizeof src) < 0) {
        perror("bind");
        exit(2);
    }
    connections++;
    s->state = CONNECTING;
    if (connect(s->fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
        fail(s, E_CONNECT);
        return;
    }
    /* on loopback the handshake is usually done by now: try to send at once */
    push(s, 0);
}

static void start_step(struct slot *s) {
    uint64_t t = now_ns();
    if (s->step >= nsteps) {
        next_boot(s);
        return;
    }
    if (stopping || t >= t_end) {
        close_conn(s);
        s->state = FREE;
        return;
    }
    build_request(s);
    reset_answer(s);
    s->started = t;
    s->deadline = t + (uint64_t)(timeout_s * 1e9);
    sent_requests++;
    if (s->fd >= 0) {
        push(s, 1);
    } else {
        open_conn(s);
    }
}

static void next_boot(struct slot *s) {
    uint64_t t = now_ns();
    close_conn(s); /* a boot's connection ends with the boot */
    if (s->step >= nsteps && s->phone >= 0) {
        boots[1]++;
        if (in_window(t)) boots[0]++;
    }
    if (stopping || t >= t_end || (max_boots && boots_started >= max_boots)) {
        s->state = FREE;
        return;
    }
    boots_started++;
    s->phone = next_phone;
    next_phone = (next_phone + 1) % phones;
    s->step = 0;
    s->retries = 0;
    start_step(s);
}

/* the server closed or reset a connection before any byte of the answer */
static void resend_or_fail(struct slot *s, enum error_kind kind) {
    if (s->got > 0) {
        fail(s, kind == E_SEND ? E_RESET : kind);
        return;
    }
    if (++s->retries > MAX_RETRIES) {
        fail(s, E_RETRIES);
        return;
    }
    resends++;
    close_conn(s);
    uint64_t started = s->started;
    build_request(s);
    reset_answer(s);
    s->started = started; /* the phone waited through the reconnect too */
    open_conn(s);
}

static void answered(struct slot *s) {
    uint64_t t = now_ns();
    int st = s->status;
    int w = in_window(t);
    for (int k = 0; k <= 1; k++) {
        if (k == 0 && !w) continue;
        if (st >= 0 && st < 600) status_count[k][st]++;
        else other_status[k]++;
    }
    if (w) {
        int b = bucket((t - s->started) / 1000);
        hist[b]++;
        step_hist[s->step][b]++;
        step_status[s->step][st]++;
    }
    int drop = close_mode || s->to_eof || s->answer_close;
    if (s->answer_close && !close_mode) answer_closes++;
    if (drop) close_conn(s);
    s->step++;
    s->retries = 0;
    start_step(s);
}

static int ieq(const char *a, size_t n, const char *b) {
    return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* parses the head in s->in; returns its length, 0 when incomplete, -1 on error (handled) */
static int parse_head(struct slot *s) {
    char *end = memmem(s->in, s->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (s->in_len >= IN_SIZE) {
            fail(s, E_HEAD_TOO_LARGE);
            return -1;
        }
        return 0;
    }
    size_t head_len = (size_t)(end - s->in) + 4;
    char *p = s->in;
    if (head_len < 16 || (memcmp(p, "HTTP/1.1 ", 9) != 0 && memcmp(p, "HTTP/1.0 ", 9) != 0) ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (p[12] != ' ' && p[12] != '\r')) {
        fail(s, E_STATUS_LINE);
        return -1;
    }
    int http10 = p[7] == '0';
    s->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    char *line = (char *)memchr(p, '\n', head_len) + 1;
    long long length = -1;
    int keep_alive_10 = 0;
    while (line < end + 2) {
        char *eol = memchr(line, '\n', (size_t)(end + 4 - line));
        if (!eol || eol == line || eol[-1] != '\r') {
            fail(s, E_HEADER);
            return -1;
        }
        size_t n = (size_t)(eol - 1 - line);
        if (n == 0) break;
        char *colon = memchr(line, ':', n);
        if (!colon || colon == line || *line == ' ' || *line == '\t') {
            fail(s, E_HEADER);
            return -1;
        }
        size_t name_len = (size_t)(colon - line);
        char *v = colon + 1;
        char *v_end = eol - 1;
        while (v < v_end && (*v == ' ' || *v == '\t')) v++;
        while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
        size_t v_len = (size_t)(v_end - v);
        if (ieq(line, name_len, "Content-Length")) {
            long long value = 0;
            if (v_len == 0 || v_len > 15) {
                fail(s, E_HEADER);
                return -1;
            }
            for (size_t i = 0; i < v_len; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    fail(s, E_HEADER);
                    return -1;
                }
                value = value * 10 + (v[i] - '0');
            }
            if (length >= 0 && length != value) {
                fail(s, E_HEADER);
                return -1;
            }
            length = value;
        } else if (ieq(line, name_len, "Transfer-Encoding")) {
            fail(s, E_CHUNKED);
            return -1;
        } else if (ieq(line, name_len, "Connection")) {
            if (ieq(v, v_len, "close")) s->answer_close = 1;
            if (ieq(v, v_len, "keep-alive")) keep_alive_10 = 1;
        }
        line = eol + 1;
    }
    if (http10 && !keep_alive_10) s->answer_close = 1;
    const struct step *st = &steps[s->step];
    if (s->status < 200) {
        fail(s, E_STATUS_LINE); /* no 1xx is ever asked for (no Expect) */
        return -1;
    }
    if (st->head || s->status == 204 || s->status == 304) {
        s->body_left = 0;
    } else if (length >= 0) {
        s->body_left = length;
    } else if (s->answer_close || close_mode) {
        s->to_eof = 1;
    } else {
        fail(s, E_NO_LENGTH);
        return -1;
    }
    s->have_head = 1;
    return (int)head_len;
}

static void readable(struct slot *s) {
    for (;;) {
        ssize_t n = recv(s->fd, s->in + s->in_len, IN_SIZE - s->in_len, 0);
        if (n == 0) {
            if (s->have_head && s->to_eof) {
                answered(s);
            } else if (s->got == 0) {
                resend_or_fail(s, E_EOF);
            } else {
                fail(s, E_EOF);
            }
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (s->got == 0) resend_or_fail(s, E_RESET);
            else fail(s, E_RESET);
            return;
        }
        s->got += (size_t)n;
        s->in_len += (size_t)n;
        if (!s->have_head) {
            int h = parse_head(s);
            if (h <= 0) return; /* incomplete: wait; error: handled */
            memmove(s->in, s->in + h, s->in_len - (size_t)h);
            s->in_len -= (size_t)h;
        }
        if (s->to_eof) {
            s->in_len = 0;
            continue;
        }
        if ((long long)s->in_len > s->body_left) {
            fail(s, E_EXTRA_BYTES); /* nothing was pipelined, so nothing else may come */
            return;
        }
        s->body_left -= (long long)s->in_len;
        s->in_len = 0;
        if (s->body_left == 0) {
            answered(s);
            return;
        }
        if ((size_t)n < IN_SIZE) return; /* level-triggered: epoll says when there is more */
    }
}

static void event(struct slot *s, uint32_t events) {
    if (s->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(s, E_CONNECT);
            return;
        }
        s->state = ACTIVE;
        push(s, 1);
        return;
    }
    if ((events & EPOLLOUT) && s->want_out) {
        push(s, 1);
        if (s->fd < 0 || s->state != ACTIVE) return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(s);
}

static void load_sequence(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) {
        perror(file);
        exit(2);
    }
    char line[1024];
    int number = 0;
    while (fgets(line, sizeof line, f)) {
        number++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        struct step st = {0};
        int fields = sscanf(line, "%15s %511s %31s %d", st.method, st.path, st.stage, &st.body);
        if (fields <= 0) continue;
        if (fields != 4 || st.body < 0 || st.body > 1 << 20 || nsteps >= MAX_STEPS) {
            fprintf(stderr, "%s:%d: want METHOD PATH STAGE BODY-BYTES\n", file, number);
            exit(2);
        }
        st.head = strcmp(st.method, "HEAD") == 0;
        if (st.body > max_body) max_body = st.body;
        steps[nsteps++] = st;
    }
    fclose(f);
    if (nsteps == 0) {
        fprintf(stderr, "%s: no requests\n", file);
        exit(2);
    }
}

static double percentile(const long long *h, double q) {
    long long total = 0;
    for (int i = 0; i < HIST_SIZE; i++) total += h[i];
    if (total == 0) return 0;
    long long want = (long long)(q * (double)total);
    if (want >= total) want = total - 1;
    long long seen = 0;
    for (int i = 0; i < HIST_SIZE; i++) {
        seen += h[i];
        if (seen > want) return bucket_mid_us(i) / 1000.0;
    }
    return 0;
}

static void print_counts(long long *counts, long long other) {
    printf("{");
    int first = 1;
    for (int i = 0; i < 600; i++) {
        if (!counts[i]) continue;
        printf("%s\"%d\": %lld", first ? "" : ", ", i, counts[i]);
        first = 0;
    }
    if (other) printf("%s\"other\": %lld", first ? "" : ", ", other);
    printf("}");
}

/* user and system CPU seconds so far */
static void cpu_s(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void usage(void) {
    fprintf(stderr,
            "usage: bootload --port P --sequence FILE [--host 127.0.0.1] [--phones 20000]\n"
            "       [--concurrency 256] [--mode keepalive|close] [--tagged 0.25] [--warmup 2]\n"
            "       [--seconds 10] [--timeout 10] [--net 20] [--first 0] [--boots 0]\n"
            "       [--poll 0|1]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *sequence = NULL;
    int port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--sequence")) sequence = v;
        else if (!strcmp(a, "--phones")) phones = atoi(v);
        else if (!strcmp(a, "--concurrency")) concurrency = atoi(v);
        else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "close")) close_mode = 1;
            else if (strcmp(v, "keepalive") != 0) usage();
        } else if (!strcmp(a, "--tagged")) tagged = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--timeout")) timeout_s = atof(v);
        else if (!strcmp(a, "--net")) net = atoi(v);
        else if (!strcmp(a, "--first")) next_phone = atoi(v);
        else if (!strcmp(a, "--boots")) max_boots = atoll(v);
        else if (!strcmp(a, "--poll")) poll_mode = atoi(v);
        else usage();
        i++;
    }
    if (!port || !sequence || phones < 1 || phones > 0xffffff || concurrency < 1 ||
        concurrency > phones || next_phone < 0 || next_phone >= phones || net < 1 ||
        net + phones / 62500 > 254)
        usage();
    load_sequence(sequence);
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) usage();
    snprintf(host_header, sizeof host_header, "%s:%d", host, port);
    body = malloc((size_t)max_body + 1);
    for (int i = 0; i < max_body; i++) {
        /* a boot log's look: lines of text */
        body[i] = (i % 64 == 63) ? '\n' : "0123456789abcdef bootlog line "[i % 30];
    }
    int tagged_phones = 0;
    for (int i = 0; i < phones; i++) tagged_phones += is_tagged(i);

    ep = epoll_create1(EPOLL_CLOEXEC);
    nslots = concurrency;
    slots = calloc((size_t)nslots, sizeof *slots);
    for (int i = 0; i < nslots; i++) {
        slots[i].fd = -1;
        slots[i].phone = -1;
        slots[i].state = FREE;
        slots[i].out = malloc(OUT_SIZE + (size_t)max_body);
    }
    deferred = malloc((size_t)nslots * sizeof *deferred);
    deferring = malloc((size_t)nslots * sizeof *deferring);
    uint64_t t0 = now_ns();
    t_warm = t0 + (uint64_t)(warmup * 1e9);
    t_end = t_warm + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < nslots; i++) next_boot(&slots[i]);

    struct epoll_event events[512];
    double user_warm = 0, sys_warm = 0, user_end = 0, sys_end = 0;
    int warm_seen = 0;
    uint64_t idle_ns = 0, turn_began = t0; /* turns that found nothing, in the window */
    uint64_t last_scan = t0, drain_until = 0;
    for (;;) {
        int n = epoll_wait(ep, events, 512, ndeferred || poll_mode ? 0 : 50);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 2;
        }
        for (int i = 0; i < n; i++) {
            uint64_t d = events[i].data.u64;
            struct slot *s = &slots[(uint32_t)d];
            if ((uint32_t)(d >> 32) != s->gen || s->fd < 0) continue;
            event(s, events[i].events);
        }
        /* failures queued while these start go to the next turn */
        int later = ndeferred;
        int *turn = deferred;
        deferred = deferring;
        deferring = turn;
        ndeferred = 0;
        for (int i = 0; i < later; i++) {
            struct slot *s = &slots[turn[i]];
            if (s->state == DEFERRED) start_step(s);
        }
        uint64_t t = now_ns();
        if (n <= 0 && !later && warm_seen && !stopping) idle_ns += t - turn_began;
        turn_began = t;
        if (!warm_seen && t >= t_warm) {
            cpu_s(&user_warm, &sys_warm);
            warm_seen = 1;
        }
        if (t >= t_end && !stopping) {
            cpu_s(&user_end, &sys_end);
            stopping = 1;
            drain_until = t + 5000000000u;
        }
        if (t - last_scan > 100000000u || stopping) {
            last_scan = t;
            int busy = 0;
            for (int i = 0; i < nslots; i++) {
                struct slot *s = &slots[i];
                if (s->state == FREE) continue;
                if (stopping && t >= drain_until) {
                    unfinished++;
                    close_conn(s);
                    s->state = FREE;
                    continue;
                }
                if (s->state != DEFERRED && t >= s->deadline) {
                    fail(s, E_TIMEOUT);
                    if (s->state == FREE) continue;
                }
                busy++;
            }
            if (busy == 0 && (stopping || max_boots)) {
                if (!stopping) { /* --boots done before the time was up */
                    cpu_s(&user_end, &sys_end);
                    t_end = t > t_warm ? t : t_warm + 1;
                }
                break;
            }
        }
    }
    double window = (double)(t_end - t_warm) / 1e9;
    char idle[32] = "null"; /* sleeping, a turn waits inside epoll_wait: no idle share */
    if (poll_mode) snprintf(idle, sizeof idle, "%.1f", 100.0 * (double)idle_ns / 1e9 / window);
    long long requests = 0, answers_total = other_status[1], errs[2] = {0, 0};
    for (int i = 0; i < 600; i++) {
        requests += status_count[0][i];
        answers_total += status_count[1][i];
    }
    requests += other_status[0];
    for (int k = 0; k < E_KINDS; k++) {
        errs[0] += errors[0][k];
        errs[1] += errors[1][k];
    }
    printf("{\"mode\": \"%s\", \"phones\": %d, \"tagged_phones\": %d, \"concurrency\": %d, "
           "\"steps\": %d, \"warmup_s\": %g, \"seconds\": %g, \"requests\": %lld, \"rps\": %.1f, "
           "\"boots\": %lld, \"boots_per_s\": %.1f, \"status\": ",
           close_mode ? "close" : "keepalive", phones, tagged_phones, concurrency, nsteps, warmup,
           window, requests, (double)requests / window, boots[0], (double)boots[0] / window);
    print_counts(status_count[0], other_status[0]);
    printf(", \"status_total\": ");
    print_counts(status_count[1], other_status[1]);
    printf(", \"busy_503\": %lld, \"busy_503_total\": %lld, \"answers_total\": %lld, "
           "\"sent_total\": %lld, \"errors\": %lld, \"errors_total\": %lld, \"error_kinds\": {",
           status_count[0][503], status_count[1][503], answers_total, sent_requests, errs[0],
           errs[1]);
    int first = 1;
    for (int k = 0; k < E_KINDS; k++) {
        if (!errors[1][k]) continue;
        printf("%s\"%s\": %lld", first ? "" : ", ", error_names[k], errors[1][k]);
        first = 0;
    }
    printf("}, \"resends\": %lld, \"answer_closes\": %lld, \"connections\": %lld, "
           "\"unfinished\": %lld, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"p999_ms\": %.3f, \"cpu_pct\": %.1f, \"cpu_user_pct\": %.1f, \"cpu_sys_pct\": %.1f, "
           "\"idle_pct\": %s, \"next_phone\": %d, \"by_request\": [",
           resends, answer_closes, connections, unfinished, percentile(hist, 0.5),
           percentile(hist, 0.9), percentile(hist, 0.99), percentile(hist, 0.999),
           100.0 * (user_end - user_warm + sys_end - sys_warm) / window,
           100.0 * (user_end - user_warm) / window, 100.0 * (sys_end - sys_warm) / window,
           idle, next_phone);
    for (int i = 0; i < nsteps; i++) {
        printf("%s{\"method\": \"%s\", \"path\": \"%s\", \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
               "\"status\": ", i ? ", " : "", steps[i].method, steps[i].path,
               percentile(step_hist[i], 0.5), percentile(step_hist[i], 0.99));
        print_counts(step_status[i], 0);
        printf("}");
    }
    printf("]}\n");
    return 0;
}
