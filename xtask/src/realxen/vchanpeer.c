/*
 * vchanpeer: a libxenvchan peer for `cargo xtask realxen` (built by the harness against
 * Debian's libxen-dev headers and libxenvchan.so).
 *
 *   vchanpeer server|client <peer-domid> <xs-path> <send-bytes> <expect-bytes> [ring-bytes]
 *
 * Sends <send-bytes> of the test pattern and verifies every byte of <expect-bytes> of it at the same time
 * (non-blocking libxenvchan calls, libxenvchan_wait when neither moves); the receive rate
 * is measured from the first byte received. Exit 0 when every byte arrived intact, 1 on
 * any error, including the peer closing early.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libxenvchan.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline uint8_t pat(uint64_t i) { return (uint8_t)(i * 7 + (i >> 11) + 13); }

/* a + b in each of the eight bytes, without carries between bytes. */
static inline uint64_t add8(uint64_t a, uint64_t b)
{
    const uint64_t high = 0x8080808080808080ull;
    return ((a & ~high) + (b & ~high)) ^ ((a ^ b) & high);
}

/* Bytes i..i+8 of the pattern, little-endian, for i a multiple of 8 (they share i >> 11, so
 * byte m is pat(i) + 7m). */
static inline uint64_t pat8(uint64_t i)
{
    return add8((uint64_t)pat(i) * 0x0101010101010101ull, 0x312A231C150E0700ull);
}

/* Within a 2 KiB block the next eight bytes are these eight plus 56 each. */
#define NEXT8 0x3838383838383838ull

/*
 * fill and check are the same code as the xen-vchan tool's (each word from the one before:
 * the recurrence keeps compilers from vectorising either), so both tools spend the same per
 * byte, also under emulation, and a benchmark measures the channels.
 */
static void fill(uint8_t *buf, size_t len, uint64_t at)
{
    size_t k = 0;
    for (; k < len && (at + k) % 8; k++)
        buf[k] = pat(at + k);
    uint64_t w = pat8(at + k);
    for (; k + 8 <= len; k += 8) {
        if ((at + k) % 2048 == 0)
            w = pat8(at + k);
        memcpy(buf + k, &w, 8);
        w = add8(w, NEXT8);
    }
    for (; k < len; k++)
        buf[k] = pat(at + k);
}

/* The offset of the first byte that differs from the pattern, or len: every byte compared. */
static size_t check(const uint8_t *buf, size_t len, uint64_t at)
{
    size_t k = 0;
    for (; k < len && (at + k) % 8; k++)
        if (buf[k] != pat(at + k))
            return k;
    uint64_t w = pat8(at + k);
    for (; k + 8 <= len; k += 8) {
        uint64_t got;
        if ((at + k) % 2048 == 0)
            w = pat8(at + k);
        memcpy(&got, buf + k, 8);
        if (got != w)
            break;
        w = add8(w, NEXT8);
    }
    for (; k < len; k++)
        if (buf[k] != pat(at + k))
            return k;
    return len;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s server|client domid xs-path send expect [ring]\n", argv[0]);
        return 2;
    }
    int server = !strcmp(argv[1], "server");
    int domid = atoi(argv[2]);
    const char *path = argv[3];
    uint64_t send = strtoull(argv[4], NULL, 0), expect = strtoull(argv[5], NULL, 0);
    int ring = argc > 6 ? atoi(argv[6]) : 0;
    struct libxenvchan *c = server ? libxenvchan_server_init(NULL, domid, path, ring, ring)
                                   : libxenvchan_client_init(NULL, domid, path);
    if (!c) {
        perror("vchanpeer: libxenvchan init");
        return 1;
    }
    /*
     * A server waits for its client before sending, as the xen-vchan tool (whose listener
     * hands out a channel only once the client is connected) does: otherwise it fills the
     * ring before the client starts, and the transfer settles into other batches than ours
     * for a reason that has nothing to do with the channel.
     */
    while (server && libxenvchan_is_open(c) == 2)
        if (libxenvchan_wait(c) < 0) {
            perror("vchanpeer: waiting for the client");
            return 1;
        }
    c->blocking = 0;
    static uint8_t out[65536], in[65536];
    uint64_t sent = 0, got = 0, waits = 0;
    size_t out_len = 0, out_at = 0;
    double first = 0, t0 = now();
    while (sent < send || got < expect) {
        int progress = 0;
        if (sent < send) {
            if (out_at == out_len) {
                out_len = send - sent < sizeof out ? send - sent : sizeof out;
                fill(out, out_len, sent);
                out_at = 0;
            }
            int n = libxenvchan_write(c, out + out_at, out_len - out_at);
            if (n < 0) {
                fprintf(stderr, "vchanpeer: write failed after %llu of %llu bytes: peer closed\n",
                        (unsigned long long)sent, (unsigned long long)send);
                return 1;
            }
            out_at += n;
            sent += n;
            progress |= n > 0;
        }
        if (got < expect) {
            size_t want = expect - got < sizeof in ? expect - got : sizeof in;
            int n = libxenvchan_read(c, in, want);
            if (n < 0) {
                fprintf(stderr, "vchanpeer: read failed after %llu of %llu bytes: peer closed\n",
                        (unsigned long long)got, (unsigned long long)expect);
                return 1;
            }
            if (n > 0 && first == 0)
                first = now();
            size_t bad = n > 0 ? check(in, n, got) : 0;
            if (bad < (size_t)n) {
                fprintf(stderr, "vchanpeer: byte %llu differs\n", (unsigned long long)(got + bad));
                return 1;
            }
            got += n;
            progress |= n > 0;
        }
        if (!progress) {
            if (!libxenvchan_is_open(c)) {
                fprintf(stderr, "vchanpeer: peer closed (%llu sent, %llu received)\n",
                        (unsigned long long)sent, (unsigned long long)got);
                return 1;
            }
            waits++;
            if (libxenvchan_wait(c) < 0) {
                perror("vchanpeer: libxenvchan_wait");
                return 1;
            }
        }
    }
    fprintf(stderr, "vchanpeer: %llu waits\n", (unsigned long long)waits);
    if (expect)
        fprintf(stderr, "vchanpeer: received %llu bytes, all verified, %.1f MB/s\n",
                (unsigned long long)expect, expect / (now() - first) / 1e6);
    else
        fprintf(stderr, "vchanpeer: sent %llu bytes in %.3f s\n", (unsigned long long)send, now() - t0);
    /* Let the peer read the rest before closing (bounded: 30 s). */
    double t = now();
    while (libxenvchan_is_open(c) && libxenvchan_buffer_space(c) < (1 << c->write.order)
           && now() - t < 30)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    libxenvchan_close(c);
    return 0;
}
