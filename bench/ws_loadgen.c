/* Paced websocket load generator for bench.api's single-order latency run.
 *
 * Why C: on the 2-core VM the load generator shares the cores with the API and the engine
 * it measures. The aiohttp client costs ~30 us of CPU per order (0.3 of a core at 10k/s),
 * taken from the server; this one costs a few us, as a client on another host would cost
 * the server nothing. It pays the same per-order protocol work the server sees: one
 * masked text frame per order, one send(2) each, at the same pacing as the Python client.
 *
 * The Python side (bench/api.py) prepares everything that needs keys or JSON: the login
 * frame (signed) and every order frame (masked), in one file:
 *   u32 n_frames, then per frame: u32 request id, u32 length, the frame's bytes
 *   (little-endian; frame 0 is the login, its id 0).
 * Usage: ws_loadgen HOST PORT PATH FRAMES_FILE RATE_PER_S [PID ...]
 * Prints one JSON object: offered/achieved rate, ack latency p50/p99/max (ms, send(2) of an
 * order's frame to the read that returned its answer, CLOCK_MONOTONIC) and CPU per order
 * (us) of this process and of each PID, sampled from 10% to 90% of the orders sent.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOOKAHEAD_NS 200000LL /* send without sleeping when due within 0.2 ms (as bench.api) */
#define MAX_PIDS 8

struct frame {
    uint32_t id;
    uint32_t len;
    const unsigned char *bytes;
};

static void die(const char *what) {
    fprintf(stderr, "ws_loadgen: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(2);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* CPU seconds (user + system) of a process, from /proc/<pid>/stat; -1 if unreadable. */
static double proc_cpu_s(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long utime = 0, stime = 0;
    /* after ") ": state, then fields 4..; utime and stime are fields 14 and 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void send_all(int fd, const unsigned char *data, size_t len) {
    while (len) {
        ssize_t k = send(fd, data, len, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct pollfd p = {fd, POLLOUT, 0};
                poll(&p, 1, 1000);
                continue;
            }
            die("send");
        }
        data += k;
        len -= (size_t)k;
    }
}

/* Received bytes not yet parsed into frames. */
static unsigned char *rbuf;
static size_t rlen, rcap;

/* Parse complete server frames from rbuf: for each text frame, its "id" (or -1 if none)
 * goes to ids[*n_ids]. Returns bytes consumed. Server frames are never masked. */
static size_t parse_frames(int64_t *ids, size_t *n_ids, size_t max_ids) {
    size_t at = 0;
    while (rlen - at >= 2) {
        unsigned op = rbuf[at] & 0x0f;
        uint64_t n = rbuf[at + 1] & 0x7f;
        size_t head = 2;
        if (n == 126) {
            if (rlen - at < 4) break;
            n = ((uint64_t)rbuf[at + 2] << 8) | rbuf[at + 3];
            head = 4;
        } else if (n == 127) {
            if (rlen - at < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = (n << 8) | rbuf[at + 2 + i];
            head = 10;
        }
        if (rlen - at - head < n) break;
        if (op == 0x1 && *n_ids < max_ids) {
            const unsigned char *payload = rbuf + at + head;
            const unsigned char *key = memmem(payload, n, "\"id\":", 5);
            int64_t id = -1;
            if (key) {
                const unsigned char *d = key + 5, *end = payload + n;
                if (d < end && *d >= '0' && *d <= '9') {
                    id = 0;
                    while (d < end && *d >= '0' && *d <= '9') id = id * 10 + (*d++ - '0');
                }
            }
            ids[(*n_ids)++] = id;
        } else if (op == 0x8) {
            errno = 0;
            die("server closed the websocket");
        }
        at += head + n;
    }
    return at;
}

static void read_more(int fd, int blocking) {
    if (rcap - rlen < 65536) {
        rcap = rcap * 2 + 65536;
        rbuf = realloc(rbuf, rcap);
        if (!rbuf) die("realloc");
    }
    ssize_t k = recv(fd, rbuf + rlen, rcap - rlen, blocking ? 0 : MSG_DONTWAIT);
    if (k == 0) {
        errno = 0;
        die("server closed the connection");
    }
    if (k < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        die("recv");
    }
    rlen += (size_t)k;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: ws_loadgen HOST PORT PATH FRAMES_FILE RATE_PER_S [PID ...]\n");
        return 2;
    }
    const char *host = argv[1], *port = argv[2], *path = argv[3];
    long rate = atol(argv[5]);
    int pids[MAX_PIDS], n_pids = 0;
    for (int i = 6; i < argc && n_pids < MAX_PIDS; i++) pids[n_pids++] = atoi(argv[i]);
    if (rate <= 0 || rate > 10000000) {
        fprintf(stderr, "ws_loadgen: RATE_PER_S: expected 1..10000000, got %s\n", argv[5]);
        return 2;
    }

    /* the frames file */
    FILE *f = fopen(argv[4], "rb");
    if (!f) die("frames file");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *blob = malloc((size_t)size);
    if (!blob || fread(blob, 1, (size_t)size, f) != (size_t)size) die("read frames file");
    fclose(f);
    uint32_t total;
    memcpy(&total, blob, 4);
    struct frame *frames = calloc(total, sizeof *frames);
    size_t off = 4;
    for (uint32_t i = 0; i < total; i++) {
        if (off + 8 > (size_t)size) die("frames file truncated");
        memcpy(&frames[i].id, blob + off, 4);
        memcpy(&frames[i].len, blob + off + 4, 4);
        off += 8;
        if (off + frames[i].len > (size_t)size) die("frames file truncated");
        frames[i].bytes = blob + off;
        off += frames[i].len;
    }
    if (total < 2) die("frames file: expected a login and at least one order");
    size_t n = total - 1; /* orders */
    int64_t *sent_at = calloc(n + 1, sizeof(int64_t)); /* by request id (1..n) */
    int64_t *lat = calloc(n, sizeof(int64_t));
    int64_t *ids = malloc(sizeof(int64_t) * 4096);
    for (size_t i = 1; i <= n; i++)
        if (frames[i].id != i) die("frames file: expected order ids 1..n in order");

    /* connect and upgrade */
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0) die("getaddrinfo");
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) die("connect");
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[512];
    int req_len = snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: cGVycGRleC1sb2FkZ2VuIQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n",
                           path, host, port);
    send_all(fd, (const unsigned char *)req, (size_t)req_len);
    for (;;) {
        read_more(fd, 1);
        unsigned char *end = memmem(rbuf, rlen, "\r\n\r\n", 4);
        if (!end) continue;
        if (rlen < 12 || memcmp(rbuf + 9, "101", 3) != 0) {
            errno = 0;
            die("upgrade: expected HTTP 101");
        }
        size_t head = (size_t)(end + 4 - rbuf);
        memmove(rbuf, rbuf + head, rlen - head);
        rlen -= head;
        break;
    }
    /* login: one answer with id 0 and a result */
    send_all(fd, frames[0].bytes, frames[0].len);
    for (;;) {
        size_t n_ids = 0;
        size_t used = parse_frames(ids, &n_ids, 1);
        if (n_ids) {
            if (ids[0] != 0 || !memmem(rbuf, used, "\"result\"", 8)) {
                errno = 0;
                fprintf(stderr, "ws_loadgen: login answer: %.*s\n", (int)used, rbuf);
                die("login: expected a result");
            }
            memmove(rbuf, rbuf + used, rlen - used);
            rlen -= used;
            break;
        }
        read_more(fd, 1);
    }

    /* the paced run */
    const int64_t period = 1000000000LL / rate;
    const size_t mark0 = n / 10, mark1 = (n * 9) / 10;
    double cpu0[MAX_PIDS + 1] = {0}, cpu1[MAX_PIDS + 1] = {0};
    struct timespec c0 = {0}, c1 = {0};
    size_t sent = 0, received = 0;
    const int64_t started = now_ns();
    struct pollfd pfd = {fd, POLLIN, 0};
    while (received < n) {
        int64_t now = now_ns();
        while (sent < n) {
            int64_t due = started + (int64_t)sent * period;
            if (due > now + LOOKAHEAD_NS) break;
            if (sent == mark0 || sent == mark1) {
                struct timespec *c = sent == mark0 ? &c0 : &c1;
                double *cpu = sent == mark0 ? cpu0 : cpu1;
                clock_gettime(CLOCK_PROCESS_CPUTIME_ID, c);
                for (int k = 0; k < n_pids; k++) cpu[k] = proc_cpu_s(pids[k]);
            }
            sent_at[sent + 1] = now_ns();
            send_all(fd, frames[sent + 1].bytes, frames[sent + 1].len);
            sent++;
            now = now_ns();
        }
        /* wait for answers, or until the next order is due */
        struct timespec timeout = {1, 0};
        if (sent < n) {
            int64_t wait = started + (int64_t)sent * period - now;
            if (wait < 0) wait = 0;
            timeout.tv_sec = wait / 1000000000LL;
            timeout.tv_nsec = wait % 1000000000LL;
        }
        int ready = ppoll(&pfd, 1, &timeout, NULL);
        if (ready < 0 && errno != EINTR) die("ppoll");
        if (ready <= 0) continue;
        read_more(fd, 0);
        int64_t t = now_ns();
        size_t n_ids = 0;
        size_t used = parse_frames(ids, &n_ids, 4096);
        memmove(rbuf, rbuf + used, rlen - used);
        rlen -= used;
        for (size_t k = 0; k < n_ids; k++) {
            int64_t id = ids[k];
            if (id < 1 || (size_t)id > sent || !sent_at[id]) {
                fprintf(stderr, "ws_loadgen: answer: expected the id of an order sent, got %lld\n",
                        (long long)id);
                return 3;
            }
            lat[received++] = t - sent_at[id];
            sent_at[id] = 0; /* each id answered once */
        }
    }
    double elapsed_s = (double)(now_ns() - started) / 1e9;
    qsort(lat, n, sizeof *lat, cmp_i64);
    double own_cpu_s = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    double orders_marked = (double)(mark1 - mark0);
    printf("{\"offered_per_s\": %ld, \"achieved_per_s\": %.1f, \"p50_ms\": %.6f, "
           "\"p99_ms\": %.6f, \"max_ms\": %.6f, \"cpu_us_per_order\": {\"client\": %.2f",
           rate, (double)n / elapsed_s, (double)lat[n / 2] / 1e6, (double)lat[(size_t)(n * 0.99)] / 1e6,
           (double)lat[n - 1] / 1e6, orders_marked > 0 ? own_cpu_s * 1e6 / orders_marked : 0.0);
    for (int k = 0; k < n_pids; k++)
        printf(", \"%d\": %.2f", pids[k],
               orders_marked > 0 && cpu0[k] >= 0 && cpu1[k] >= 0
                   ? (cpu1[k] - cpu0[k]) * 1e6 / orders_marked
                   : -1.0);
    printf("}}\n");
    close(fd);
    return 0;
}
