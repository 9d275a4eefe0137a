/*
 * The C anchor of `cargo xtask bench ring`: the same workload as xtask/src/bench/ring.rs,
 * written with Xen's own ring.h macros (included from libxen-dev's /usr/include/xen, not
 * copied) the way a hardened Linux frontend uses them: requests built privately and copied
 * into the ring, responses copied out once (RING_COPY_RESPONSE), rsp_prod checked
 * (RING_RESPONSE_PROD_OVERFLOW), IDs from a free list with a shadow table, each response ID
 * checked in range and pending. The backend copies requests once (RING_COPY_REQUEST) and
 * checks RING_REQUEST_PROD_OVERFLOW.
 *
 * Built by the xtask with `cc -O2 -shared -fPIC -pthread` and called from the same process.
 * The notification mechanism is the one the Rust side uses, line for line: a pending flag set
 * with a release store, taken with an acquire exchange, waited on by spinning with pause and
 * yielding every 256 spins.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The barriers for ring.h. xen_mb() is the full barrier a Linux kernel frontend gets from
 * virt_mb() on x86-64: a locked add to the stack, not mfence (libxenctrl's choice, which
 * costs more). It is the instruction the Rust side's fence(SeqCst) compiles to, so both sides
 * pay the same for each barrier.
 */
#define mb()  __asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc")
#define rmb() __asm__ __volatile__("" ::: "memory")
#define wmb() __asm__ __volatile__("" ::: "memory")

/*
 * GCC turns RING_COPY_REQUEST/RESPONSE (a volatile struct copy) into loads of only the fields
 * used afterwards: without this, the backend read 9 of a blkif request's 112 bytes and the
 * frontend 10 of a response's 16, while the Rust side copies every byte (as a real backend
 * must, to use the segments). Escaping the private copy makes the compiler complete it: every
 * byte of every entry is copied out once, as on the Rust side.
 */
#define COPIED(p) __asm__ __volatile__("" : : "r"(p) : "memory")

#include <xen/io/ring.h>
#include <xen/io/netif.h>
#include <xen/io/blkif.h>

struct event {
    uint32_t pending;
    char pad[60];
};

static void ev_notify(struct event *e)
{
    __atomic_store_n(&e->pending, 1, __ATOMIC_RELEASE);
}

static void ev_wait(struct event *e)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(&e->pending, 0, __ATOMIC_ACQUIRE) == 0) {
        __builtin_ia32_pause();
        if (++spins % 256 == 0)
            sched_yield();
    }
}

struct shared {
    struct event to_front, to_back;
    void *sring;
    long total;
    long back_notifies;
    int bad;
};

#define SHADOW_FREE 0xffffffffu

/* One frontend and one backend per protocol, generated for netif tx and blkif. */
#define BENCH(NAME, PFX, REQ_T, RSP_T, ID_T, FILL_REQ, FILL_RSP)                              \
static void *NAME##_back(void *arg)                                                          \
{                                                                                             \
    struct shared *sh = arg;                                                                  \
    PFX##_back_ring_t br;                                                                     \
    BACK_RING_ATTACH(&br, (PFX##_sring_t *)sh->sring, ((PFX##_sring_t *)sh->sring)->rsp_prod, \
                     4096);                                                                   \
    long answered = 0, notes = 0;                                                             \
    while (answered < sh->total) {                                                            \
        RING_IDX rp = __atomic_load_n(&br.sring->req_prod, __ATOMIC_RELAXED);                 \
        rmb();                                                                                \
        if (RING_REQUEST_PROD_OVERFLOW(&br, rp)) {                                            \
            sh->bad = 1;                                                                      \
            return NULL;                                                                      \
        }                                                                                     \
        while (br.req_cons != rp) {                                                           \
            REQ_T req;                                                                        \
            RING_COPY_REQUEST(&br, br.req_cons, &req);                                        \
            COPIED(&req);                                                                     \
            br.req_cons++;                                                                    \
            RSP_T rsp;                                                                        \
            memset(&rsp, 0, sizeof(rsp));                                                     \
            FILL_RSP;                                                                         \
            *RING_GET_RESPONSE(&br, br.rsp_prod_pvt) = rsp;                                   \
            br.rsp_prod_pvt++;                                                                \
            answered++;                                                                       \
        }                                                                                     \
        int notify, more;                                                                     \
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&br, notify);                                    \
        if (notify) {                                                                         \
            ev_notify(&sh->to_front);                                                         \
            notes++;                                                                          \
        }                                                                                     \
        if (answered < sh->total) {                                                           \
            RING_FINAL_CHECK_FOR_REQUESTS(&br, more);                                         \
            if (!more)                                                                        \
                ev_wait(&sh->to_back);                                                        \
        }                                                                                     \
    }                                                                                         \
    sh->back_notifies = notes;                                                                \
    return NULL;                                                                              \
}                                                                                             \
                                                                                              \
static double NAME##_run(int batch, long iters, long *notifications, int *bad)                \
{                                                                                             \
    struct shared *sh = aligned_alloc(64, sizeof(*sh));                                       \
    memset(sh, 0, sizeof(*sh));                                                               \
    PFX##_sring_t *s = aligned_alloc(4096, 4096);                                             \
    memset(s, 0, 4096);                                                                       \
    SHARED_RING_INIT(s);                                                                      \
    PFX##_front_ring_t fr;                                                                    \
    FRONT_RING_INIT(&fr, s, 4096);                                                            \
    unsigned size = RING_SIZE(&fr);                                                           \
    uint32_t shadow[size], freelist[size];                                                    \
    unsigned nfree = 0;                                                                       \
    for (unsigned i = 0; i < size; i++) {                                                     \
        shadow[i] = SHADOW_FREE;                                                              \
        freelist[nfree++] = size - 1 - i;                                                     \
    }                                                                                         \
    sh->sring = s;                                                                            \
    sh->total = (long)batch * iters;                                                          \
    pthread_t th;                                                                             \
    struct timespec t0, t1;                                                                   \
    clock_gettime(CLOCK_MONOTONIC, &t0);                                                      \
    pthread_create(&th, NULL, NAME##_back, sh);                                               \
    long notes = 0;                                                                           \
    uint32_t token = 0;                                                                       \
    for (long it = 0; it < iters && !*bad; it++) {                                            \
        for (int k = 0; k < batch; k++) {                                                     \
            if (nfree == 0 || RING_FULL(&fr)) {                                               \
                *bad = 1;                                                                     \
                break;                                                                        \
            }                                                                                 \
            unsigned id = freelist[--nfree];                                                  \
            shadow[id] = token;                                                               \
            REQ_T req;                                                                        \
            memset(&req, 0, sizeof(req));                                                     \
            FILL_REQ;                                                                         \
            req.id = (ID_T)id;                                                                \
            *RING_GET_REQUEST(&fr, fr.req_prod_pvt) = req;                                    \
            fr.req_prod_pvt++;                                                                \
            token++;                                                                          \
        }                                                                                     \
        int notify;                                                                           \
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fr, notify);                                     \
        if (notify) {                                                                         \
            ev_notify(&sh->to_back);                                                          \
            notes++;                                                                          \
        }                                                                                     \
        int got = 0;                                                                          \
        while (!*bad) {                                                                       \
            RING_IDX rp = __atomic_load_n(&s->rsp_prod, __ATOMIC_RELAXED);                    \
            rmb();                                                                            \
            if (RING_RESPONSE_PROD_OVERFLOW(&fr, rp)) {                                       \
                *bad = 1;                                                                     \
                break;                                                                        \
            }                                                                                 \
            while (fr.rsp_cons != rp) {                                                       \
                RSP_T rsp;                                                                    \
                RING_COPY_RESPONSE(&fr, fr.rsp_cons, &rsp);                                   \
                COPIED(&rsp);                                                                 \
                fr.rsp_cons++;                                                                \
                uint64_t id = rsp.id;                                                         \
                if (id >= size || shadow[id] == SHADOW_FREE || rsp.status != 0) {             \
                    *bad = 1;                                                                 \
                    break;                                                                    \
                }                                                                             \
                shadow[id] = SHADOW_FREE;                                                     \
                freelist[nfree++] = (uint32_t)id;                                             \
                got++;                                                                        \
            }                                                                                 \
            if (got == batch)                                                                 \
                break;                                                                        \
            int more;                                                                         \
            RING_FINAL_CHECK_FOR_RESPONSES(&fr, more);                                        \
            if (!more)                                                                        \
                ev_wait(&sh->to_front);                                                       \
        }                                                                                     \
    }                                                                                         \
    if (*bad) {                                                                               \
        /* Let the backend finish: it stops at `total` or on its own error. */                \
        sh->total = 0;                                                                        \
        ev_notify(&sh->to_back);                                                              \
    }                                                                                         \
    pthread_join(th, NULL);                                                                   \
    clock_gettime(CLOCK_MONOTONIC, &t1);                                                      \
    *bad |= sh->bad;                                                                          \
    *notifications = notes + sh->back_notifies;                                               \
    free(s);                                                                                  \
    free(sh);                                                                                 \
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;        \
}

BENCH(tx, netif_tx, netif_tx_request_t, netif_tx_response_t, uint16_t,
      { req.gref = token; req.size = (uint16_t)k; },
      { rsp.id = req.id; rsp.status = NETIF_RSP_OKAY; })

BENCH(blk, blkif, blkif_request_t, blkif_response_t, uint64_t,
      { req.operation = BLKIF_OP_READ; req.nr_segments = 1; req.sector_number = token;
        req.seg[0].gref = token; req.seg[0].last_sect = 7; },
      { rsp.id = req.id; rsp.operation = req.operation; rsp.status = BLKIF_RSP_OKAY; })

/*
 * Runs `iters` batches of `batch` requests on a one-page ring of netif tx (`entry` = 12) or
 * blkif (`entry` = 112) entries. Returns the elapsed seconds, or a negative value on a
 * protocol error; stores the notifications sent by both sides.
 */
double c_ring_bench(int entry, int batch, long iters, long *notifications)
{
    int bad = 0;
    double t = entry == 12 ? tx_run(batch, iters, notifications, &bad)
                           : blk_run(batch, iters, notifications, &bad);
    return bad ? -1.0 : t;
}
