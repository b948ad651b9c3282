/* Paced RTP/PS sender for benchmarks/relay.py: many device streams from one process.
 *
 * A Python sender cannot produce a thousand 4 Mbit/s streams (360,000 datagrams/s) on one core,
 * so the benchmark compiles this with the system C compiler. Every stream sends the same
 * recording (a "pack file" written by relay.py: the RTP packets of each 40 ms tick) with its own
 * SSRC, sequence numbers, timestamp offset and starting point in the recording (so key frames
 * of different streams do not coincide), to its own UDP port. Streams are spread over the 40 ms
 * of a tick, one group per millisecond; datagrams go out by sendmmsg(2), up to 1,024 per call.
 *
 *   rtpsend PACKFILE HOST SECONDS STREAMSFILE [gso]     (STREAMSFILE: "port ssrc" per line)
 *
 * With "gso", consecutive packets of one frame (all of the same size but the last) go down as one
 * UDP GSO send (UDP_SEGMENT): the receiver still gets one datagram per RTP packet, but the
 * sender's kernel walks its stack once per frame instead of once per packet. On loopback the
 * receive path runs on the sending core, so this is what lets one sender core feed ~1,000
 * streams.
 *
 * Prints one line at the end: packets, bytes, errors, the worst lag behind the schedule (ms) and
 * the number of 1 ms steps that started more than 5 ms late (the sender could not keep up).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define BATCH 1024           /* messages per sendmmsg */
#define IOV_CAP 16384        /* iovecs (two per packet) per sendmmsg */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define MAX_SEGS 64
#define SLOTS 40            /* milliseconds per tick: one group of streams per millisecond */

typedef struct { uint16_t len; const uint8_t *data; } packet_t;
typedef struct { uint32_t count; packet_t *packets; } tick_t;
typedef struct {
    struct sockaddr_in addr;
    uint32_t ssrc, phase;
    uint16_t seq;
} stream_t;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*size);
    if (!buf || fread(buf, 1, *size, f) != *size) { perror("read"); exit(2); }
    fclose(f);
    return buf;
}

static uint32_t u32le(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s PACKFILE HOST SECONDS STREAMSFILE [gso]\n", argv[0]);
        return 2;
    }
    int gso = argc == 6 && strcmp(argv[5], "gso") == 0;
    size_t size;
    uint8_t *pack = read_file(argv[1], &size);
    if (size < 12 || memcmp(pack, "RTPK", 4) != 0) { fprintf(stderr, "bad pack file\n"); return 2; }
    uint32_t nticks = u32le(pack + 4), tick_ts = u32le(pack + 8);
    tick_t *ticks = calloc(nticks, sizeof(tick_t));
    size_t pos = 12;
    for (uint32_t t = 0; t < nticks; t++) {
        ticks[t].count = u32le(pack + pos);
        pos += 4;
        ticks[t].packets = calloc(ticks[t].count ? ticks[t].count : 1, sizeof(packet_t));
        for (uint32_t i = 0; i < ticks[t].count; i++) {
            uint16_t len = pack[pos] | pack[pos + 1] << 8;
            ticks[t].packets[i].len = len;
            ticks[t].packets[i].data = pack + pos + 2;
            pos += 2 + len;
        }
    }
    double seconds = atof(argv[3]);

    FILE *sf = fopen(argv[4], "r");
    if (!sf) { perror(argv[4]); return 2; }
    size_t nstreams = 0, cap = 1024;
    stream_t *streams = calloc(cap, sizeof(stream_t));
    unsigned port, ssrc;
    while (fscanf(sf, "%u %u", &port, &ssrc) == 2) {
        if (nstreams == cap) { cap *= 2; streams = realloc(streams, cap * sizeof(stream_t)); }
        stream_t *s = &streams[nstreams];
        memset(s, 0, sizeof(*s));
        s->addr.sin_family = AF_INET;
        s->addr.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, argv[2], &s->addr.sin_addr);
        s->ssrc = htonl(ssrc);
        s->phase = (uint32_t)((nstreams * 7919u) % nticks);
        s->seq = (uint16_t)(ssrc * 2654435761u >> 16);
        nstreams++;
    }
    fclose(sf);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int sndbuf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));

    static struct mmsghdr msgs[BATCH];
    static unsigned segs[BATCH];
    static char ctrl[BATCH][CMSG_SPACE(sizeof(uint16_t))];
    static struct iovec iov[IOV_CAP];
    static uint8_t headers[IOV_CAP / 2][12];
    unsigned used = 0, used_iov = 0;
    uint64_t sent = 0, bytes = 0, errors = 0, late_steps = 0, worst_lag = 0, calls = 0;

#define FLUSH() do {                                                             \
        unsigned done = 0;                                                       \
        while (done < used) {                                                    \
            int r = sendmmsg(fd, msgs + done, used - done, 0);                   \
            calls++;                                                             \
            if (r < 0) { if (errno == EINTR) continue; errors += segs[done]; done++; continue; } \
            for (int k = 0; k < r; k++) { bytes += msgs[done + k].msg_len; sent += segs[done + k]; } \
            done += (unsigned)r;                                                 \
        }                                                                        \
        used = 0; used_iov = 0;                                                  \
    } while (0)

    uint64_t start = now_ns();
    uint64_t steps = (uint64_t)(seconds * 1000);
    for (uint64_t m = 0; m < steps; m++) {
        uint64_t due = start + m * 1000000ull;
        uint64_t now = now_ns();
        if (now < due) {
            struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        } else {
            uint64_t lag = (now - due) / 1000000ull;
            if (lag > worst_lag) worst_lag = lag;
            if (lag > 5) late_steps++;
        }
        uint64_t tick = m / SLOTS;
        unsigned slot = (unsigned)(m % SLOTS);
        for (size_t si = slot; si < nstreams; si += SLOTS) {
            stream_t *s = &streams[si];
            uint64_t frame = tick + s->phase;
            const tick_t *t = &ticks[frame % nticks];
            uint32_t ts_offset = (uint32_t)((frame / nticks) * nticks * tick_ts);
            uint32_t i = 0;
            while (i < t->count) {
                /* a run: packets of one size (the GSO segment size), the last may be shorter */
                uint16_t seg = t->packets[i].len;
                uint32_t limit = gso ? 65000u / seg : 1;
                if (limit > MAX_SEGS) limit = MAX_SEGS;
                if (limit < 1) limit = 1;
                uint32_t j = i + 1;
                while (j < t->count && j - i < limit && t->packets[j].len == seg) j++;
                if (gso && j < t->count && j - i < limit && t->packets[j].len < seg) j++;
                uint32_t n = j - i;
                if (used == BATCH || used_iov + 2 * n > IOV_CAP) FLUSH();
                struct msghdr *mh = &msgs[used].msg_hdr;
                memset(mh, 0, sizeof(*mh));
                mh->msg_name = &s->addr;
                mh->msg_namelen = sizeof(s->addr);
                mh->msg_iov = &iov[used_iov];
                mh->msg_iovlen = 2 * n;
                for (uint32_t k = i; k < j; k++) {
                    const packet_t *p = &t->packets[k];
                    uint8_t *h = headers[used_iov / 2];
                    memcpy(h, p->data, 12);
                    h[2] = (uint8_t)(s->seq >> 8);
                    h[3] = (uint8_t)s->seq;
                    s->seq++;
                    uint32_t ts = ((uint32_t)p->data[4] << 24 | (uint32_t)p->data[5] << 16
                                   | (uint32_t)p->data[6] << 8 | p->data[7]) + ts_offset;
                    h[4] = ts >> 24; h[5] = ts >> 16; h[6] = ts >> 8; h[7] = ts;
                    memcpy(h + 8, &s->ssrc, 4);
                    iov[used_iov].iov_base = h;
                    iov[used_iov].iov_len = 12;
                    iov[used_iov + 1].iov_base = (void *)(p->data + 12);
                    iov[used_iov + 1].iov_len = p->len - 12;
                    used_iov += 2;
                }
                if (n > 1) {
                    mh->msg_control = ctrl[used];
                    mh->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
                    struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
                    cm->cmsg_level = SOL_UDP;
                    cm->cmsg_type = UDP_SEGMENT;
                    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                    memcpy(CMSG_DATA(cm), &seg, sizeof(uint16_t));
                }
                segs[used] = n;
                used++;
                i = j;
            }
        }
        if (used) FLUSH();
    }
    printf("sent=%llu bytes=%llu errors=%llu worst_lag_ms=%llu late_steps=%llu streams=%zu "
           "calls=%llu\n",
           (unsigned long long)sent, (unsigned long long)bytes, (unsigned long long)errors,
           (unsigned long long)worst_lag, (unsigned long long)late_steps, nstreams,
           (unsigned long long)calls);
    return 0;
}
