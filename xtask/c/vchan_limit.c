/*
 * The physical limit of a vchan-style byte channel, for `cargo xtask bench vchan`.
 *
 * A single-producer single-consumer byte ring of a power-of-two size in shared memory: the
 * writer copies from a private buffer into the ring (two memcpy calls when it wraps) and
 * publishes its index with a release store; the reader acquires it, copies out into a private
 * buffer and publishes its index. The same two copies as a vchan, and nothing else: no
 * notify bytes, no event channel, no checks. A side that cannot proceed spins (with a pause,
 * and a yield every 256 spins), as the xtask ring benchmark's anchor does. The indices sit
 * where the caller says: next to each other in a vchan header (the benchmark's limit) or
 * each in a cache line of its own (for comparison).
 *
 * The reader thread pins itself to `reader_cpu` (if >= 0), as the Rust side pins its
 * second thread, so that every contender runs on two distinct CPUs.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ring {
	/* The indices: in lines of their own (layout 0), or next to each other in a 24-byte
	 * header as `struct vchan_interface` has them (layout 1: left ring cons at 0, prod at
	 * 4, the line both ends share, which libxenvchan's ABI fixes). */
	uint32_t *prod;
	uint32_t *cons;
	_Alignas(64) uint32_t own_prod;
	_Alignas(64) uint32_t own_cons;
	_Alignas(64) uint32_t header[6];
	_Alignas(64) uint8_t *buf;
	uint32_t size;
	long chunk;
	long total;
	uint64_t sum;
	int cpu;
};

static void relax(unsigned *spins)
{
	__builtin_ia32_pause();
	if (++*spins % 256 == 0)
		sched_yield();
}

static void *reader(void *arg)
{
	struct ring *r = arg;
	if (r->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(r->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	}
	uint8_t *dst = malloc(r->chunk);
	uint32_t cons = 0;
	long got = 0;
	unsigned spins = 0;
	uint64_t sum = 0;
	while (got < r->total) {
		uint32_t prod = __atomic_load_n(r->prod, __ATOMIC_ACQUIRE);
		uint32_t ready = prod - cons;
		if (ready == 0) {
			relax(&spins);
			continue;
		}
		long n = ready < r->chunk ? ready : r->chunk;
		uint32_t at = cons & (r->size - 1);
		long first = r->size - at < n ? r->size - at : n;
		memcpy(dst, r->buf + at, first);
		memcpy(dst + first, r->buf, n - first);
		sum += dst[0] + dst[n - 1];
		cons += n;
		__atomic_store_n(r->cons, cons, __ATOMIC_RELEASE);
		got += n;
	}
	r->sum = sum;
	free(dst);
	return NULL;
}

/* Moves `total` bytes in writes of `chunk` bytes through a ring of `size` bytes, the reader
 * on CPU `reader_cpu` (-1: anywhere), the indices laid out as `layout` says (see struct
 * ring); returns the seconds it took, or -1 on a setup failure. */
double c_vchan_limit(long size, long chunk, long total, long reader_cpu, long layout)
{
	struct ring *r;
	if (posix_memalign((void **)&r, 64, sizeof *r))
		return -1;
	memset(r, 0, sizeof *r);
	r->size = size;
	r->chunk = chunk;
	r->total = total;
	r->cpu = (int)reader_cpu;
	r->prod = layout ? &r->header[1] : &r->own_prod;
	r->cons = layout ? &r->header[0] : &r->own_cons;
	if (posix_memalign((void **)&r->buf, 4096, size))
		return -1;
	memset(r->buf, 0, size);
	uint8_t *src = malloc(chunk);
	for (long i = 0; i < chunk; i++)
		src[i] = (uint8_t)(i * 7);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_t th;
	if (pthread_create(&th, NULL, reader, r))
		return -1;
	uint32_t prod = 0;
	long sent = 0;
	unsigned spins = 0;
	while (sent < total) {
		long want = total - sent < chunk ? total - sent : chunk;
		long off = 0;
		while (off < want) {
			uint32_t cons = __atomic_load_n(r->cons, __ATOMIC_ACQUIRE);
			uint32_t space = r->size - (prod - cons);
			if (space == 0) {
				relax(&spins);
				continue;
			}
			long n = space < want - off ? space : want - off;
			uint32_t at = prod & (r->size - 1);
			long first = r->size - at < n ? r->size - at : n;
			memcpy(r->buf + at, src + off, first);
			memcpy(r->buf, src + off + first, n - first);
			prod += n;
			__atomic_store_n(r->prod, prod, __ATOMIC_RELEASE);
			off += n;
		}
		sent += want;
	}
	pthread_join(th, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	free(src);
	free(r->buf);
	free(r);
	return (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
}
