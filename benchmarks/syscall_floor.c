/* The syscall floor of one DAMON sample through /proc/PID/pagemap and the idle page bitmap.
 *
 * Replays a trace of exactly the syscalls the native sample path issued for a run of samples
 * (pagemap preads, bitmap pwrites with their payloads, bitmap preads, one zero-timeout ppoll
 * per sample for its wait) with nothing else: no planning, no sorting, no counters.  Its time
 * per sample is the physical limit of this interface for that work; the native path is
 * reported as a ratio to it (benchmarks/bench_native_sample.py writes the trace).
 *
 *     cc -O2 -o syscall_floor syscall_floor.c
 *     ./syscall_floor PAGEMAP BITMAP TRACE REPEAT [WAIT_NS [by-kind]]   -> one line of JSON
 *
 * WAIT_NS: the timeout of each wait (default 0: the ppoll returns at once; the core loop's
 * waits sleep, and a sleep costs a context switch).  With "by-kind", each syscall is timed
 * too (clock_gettime around it) and the JSON holds wall ns per sample by kind; that costs a
 * little, so the totals come from a plain run.
 *
 * Trace: records of (uint32 kind, uint32 nbytes, uint64 offset) followed, for BM_WRITE, by
 * nbytes of payload.  Kinds: 0 pagemap pread, 1 bitmap pwrite, 2 bitmap pread, 3 wait
 * (ppoll with a zero timeout on one eventfd), 4 end of a sample (no syscall).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct rec {
	uint32_t kind;
	uint32_t nbytes;
	uint64_t offset;
};

static double now(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 7) {
		fprintf(stderr, "usage: %s PAGEMAP BITMAP TRACE REPEAT [WAIT_NS [by-kind]]\n",
			argv[0]);
		return 2;
	}
	int pm = open(argv[1], O_RDONLY), bm = open(argv[2], O_RDWR);
	int tf = open(argv[3], O_RDONLY), ev = eventfd(0, EFD_NONBLOCK);
	long repeat = atol(argv[4]);
	struct stat st;
	if (pm < 0 || bm < 0 || tf < 0 || ev < 0 || fstat(tf, &st) < 0 || repeat < 1) {
		perror("syscall_floor: open");
		return 1;
	}
	char *trace = malloc(st.st_size), *buf = malloc(1 << 20);
	if (!trace || !buf || read(tf, trace, st.st_size) != st.st_size) {
		perror("syscall_floor: read trace");
		return 1;
	}
	struct pollfd pfd = { .fd = ev, .events = POLLIN };
	long wait_ns = argc > 5 ? atol(argv[5]) : 0;
	struct timespec zero = { wait_ns / 1000000000, wait_ns % 1000000000 };
	long samples = 0, calls = 0, failed = 0, nr_kind[4] = { 0 };
	double by_kind[4] = { 0 }, k0 = 0;
	int detail = argc == 7;
	double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	for (long r = 0; r < repeat; r++) {
		for (char *p = trace; p < trace + st.st_size;) {
			struct rec *h = (struct rec *)p;
			p += sizeof(*h);
			ssize_t got = 0;
			if (detail && h->kind < 4)
				k0 = now(CLOCK_MONOTONIC);
			switch (h->kind) {
			case 0:
				got = pread(pm, buf, h->nbytes, h->offset);
				break;
			case 1:
				got = pwrite(bm, p, h->nbytes, h->offset);
				p += h->nbytes;
				break;
			case 2:
				got = pread(bm, buf, h->nbytes, h->offset);
				break;
			case 3:
				got = ppoll(&pfd, 1, &zero, NULL);
				break;
			case 4:
				samples++;
				continue;
			}
			if (detail) {
				by_kind[h->kind] += now(CLOCK_MONOTONIC) - k0;
				nr_kind[h->kind]++;
			}
			calls++;
			failed += got < 0;
		}
	}
	double wall = now(CLOCK_MONOTONIC) - t0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	printf("{\"samples\": %ld, \"syscalls\": %ld, \"failed\": %ld, \"wall_ns_per_sample\": %.1f, "
	       "\"cpu_ns_per_sample\": %.1f", samples, calls, failed,
	       wall * 1e9 / samples, cpu * 1e9 / samples);
	if (detail)
		printf(", \"by_kind_ns_per_sample\": {\"pagemap_read\": %.1f, \"bitmap_write\": %.1f, "
		       "\"bitmap_read\": %.1f, \"wait\": %.1f}, \"calls_per_sample\": [%.1f, %.1f, %.1f, %.1f]",
		       by_kind[0] * 1e9 / samples, by_kind[1] * 1e9 / samples,
		       by_kind[2] * 1e9 / samples, by_kind[3] * 1e9 / samples,
		       (double)nr_kind[0] / samples, (double)nr_kind[1] / samples,
		       (double)nr_kind[2] / samples, (double)nr_kind[3] / samples);
	printf("}\n");
	return 0;
}
