/* nstload: the load generator, sink and probe of `netstrata bench` (compiled at bench time).
 *
 * Why C: on a 2-vCPU machine a Python client caps a 1-byte request/response loop at a few
 * thousand transactions per second, far below what the kernel path does (~40k/s), so a Python
 * client would measure itself. This program does one thing per invocation, in a bounded loop,
 * and prints one JSON line. The Python driver (`_loadgen/__init__.py`) pins it to a core with
 * taskset and moves it into a pod namespace with `--netns` (setns, before any socket exists).
 *
 *   server      epoll echo server on --port and byte sink on --port2; prints "ready"
 *   rr          one connection, 1-byte request / 1-byte response for --seconds   (TCP_RR)
 *   crr         connect, 1-byte request/response, close with RST, repeat        (TCP_CRR)
 *   stream      one connection, send 128 KiB writes for --seconds              (TCP_STREAM)
 *   probe-send  UDP datagrams {seq, send time} at --rate per second; send log to --out
 *   probe-recv  UDP sink recording {seq, receive time} of every datagram to --out
 *   mapfill     write --count pre-encoded key/value pairs into a pinned BPF map, timed
 *
 * Every loop ends at a deadline (CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() and Python's
 * time.monotonic_ns() read) and every blocking socket call has a timeout, so a dropped packet
 * ends a run with an error count instead of hanging it. CPU figures are the whole machine's
 * /proc/stat busy time over exactly the measured window, so they include the server, softirq
 * (where tc programs and netfilter run) and anything else on the box.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES_DEFAULT 4000000 /* 16 MiB of latencies: 100 s of RR at 40k/s */
#define STREAM_CHUNK (128 * 1024)
#define SOCK_TIMEOUT_MS 1000        /* a veth round trip is tens of µs; 1 s means dropped */
#define CRR_MAX_ERRORS 200

struct opts {
	const char *mode, *netns, *host, *out, *map, *keys, *values;
	int port, port2, key_size, value_size, batch;
	long count;
	double seconds, warmup, rate;
	long max_samples;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "nstload: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* ------------------------------------------------------------------ CPU accounting */

struct cpu_stat {
	unsigned long long user, nice, system, idle, iowait, irq, softirq, steal;
};

static void read_cpu(struct cpu_stat *c)
{
	FILE *f = fopen("/proc/stat", "r");

	memset(c, 0, sizeof(*c));
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &c->user, &c->nice,
		   &c->system, &c->idle, &c->iowait, &c->irq, &c->softirq, &c->steal) != 8)
		memset(c, 0, sizeof(*c));
	fclose(f);
}

/* Busy time in µs over the window: user+nice+system+irq+softirq (steal is the hypervisor's). */
static void print_cpu(const struct cpu_stat *a, const struct cpu_stat *b, const struct rusage *r0,
		      const struct rusage *r1)
{
	double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
	unsigned long long busy = (b->user - a->user) + (b->nice - a->nice) +
				  (b->system - a->system) + (b->irq - a->irq) +
				  (b->softirq - a->softirq);
	double self_us = (double)(r1->ru_utime.tv_sec - r0->ru_utime.tv_sec) * 1e6 +
			 (double)(r1->ru_utime.tv_usec - r0->ru_utime.tv_usec) +
			 (double)(r1->ru_stime.tv_sec - r0->ru_stime.tv_sec) * 1e6 +
			 (double)(r1->ru_stime.tv_usec - r0->ru_stime.tv_usec);

	printf(",\"cpu_busy_us\":%.0f,\"cpu_softirq_us\":%.0f,\"cpu_idle_us\":%.0f,"
	       "\"client_cpu_us\":%.0f",
	       (double)busy * tick_us, (double)(b->softirq - a->softirq) * tick_us,
	       (double)((b->idle - a->idle) + (b->iowait - a->iowait)) * tick_us, self_us);
}

/* ------------------------------------------------------------------------ sockets */

static void enter_netns(const char *path)
{
	int fd;

	if (!path)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open netns");
	if (setns(fd, CLONE_NEWNET) != 0)
		die("setns");
	close(fd);
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static struct sockaddr_in addr_of(const char *host, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	if (!host)
		a.sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "nstload: bad IPv4 address %s\n", host);
		exit(2);
	}
	return a;
}

/* A connected TCP socket (NODELAY, 1 s timeouts; RST on close when `rst`), or -1. */
static int tcp_connect(const struct sockaddr_in *a, int rst)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return -1;
	set_timeouts(fd, SOCK_TIMEOUT_MS);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (rst)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int one_exchange(int fd)
{
	char c = 'x';

	if (send(fd, &c, 1, 0) != 1)
		return -1;
	return recv(fd, &c, 1, 0) == 1 ? 0 : -1;
}

/* -------------------------------------------------------------------------- server */

#define KIND_ECHO_LISTEN 1ull
#define KIND_SINK_LISTEN 2ull
#define KIND_ECHO 3ull
#define KIND_SINK 4ull

static int listen_on(int port)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = addr_of(NULL, port);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("bind");
	if (listen(fd, 4096) != 0)
		die("listen");
	return fd;
}

static void ep_add(int ep, int fd, uint64_t kind)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (kind << 32) | (uint32_t)fd };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl");
}

static void accept_all(int ep, int lfd, uint64_t kind)
{
	int one = 1;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ep_add(ep, fd, kind);
	}
}

static void serve_conn(int fd, uint64_t kind, char *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || (kind == KIND_ECHO && send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n))
		close(fd); /* EOF, RST or a stuck peer: closing also removes it from epoll */
}

static int cmd_server(const struct opts *o)
{
	static char buf[256 * 1024];
	struct epoll_event evs[256];
	uint64_t deadline = now_ns() + (uint64_t)(o->seconds * 1e9);
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		die("epoll_create1");
	ep_add(ep, listen_on(o->port), KIND_ECHO_LISTEN);
	if (o->port2)
		ep_add(ep, listen_on(o->port2), KIND_SINK_LISTEN);
	printf("ready\n");
	fflush(stdout);
	while (!stop_flag && now_ns() < deadline) {
		int n = epoll_wait(ep, evs, 256, 200);

		for (int i = 0; i < n; i++) {
			uint64_t kind = evs[i].data.u64 >> 32;
			int fd = (int)(evs[i].data.u64 & 0xffffffffu);

			if (kind == KIND_ECHO_LISTEN)
				accept_all(ep, fd, KIND_ECHO);
			else if (kind == KIND_SINK_LISTEN)
				accept_all(ep, fd, KIND_SINK);
			else
				serve_conn(fd, kind, buf, kind == KIND_ECHO ? 4096 : sizeof(buf));
		}
	}
	return 0;
}

/* -------------------------------------------------------------------- RR and CRR */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static uint32_t pct(const uint32_t *s, long n, double q)
{
	long i = (long)(q * (double)(n - 1) + 0.5);

	return n ? s[i] : 0;
}

struct window {
	struct cpu_stat c0, c1;
	struct rusage r0, r1;
	uint64_t t0, t1;
};

static void window_open(struct window *w)
{
	read_cpu(&w->c0);
	getrusage(RUSAGE_SELF, &w->r0);
	w->t0 = now_ns();
}

static void window_close(struct window *w)
{
	w->t1 = now_ns();
	getrusage(RUSAGE_SELF, &w->r1);
	read_cpu(&w->c1);
}

static void report(const struct opts *o, const struct window *w, long count, long errors,
		   uint32_t *samples, long kept, unsigned long long bytes)
{
	qsort(samples, (size_t)kept, sizeof(*samples), cmp_u32);
	printf("{\"mode\":\"%s\",\"count\":%ld,\"errors\":%ld,\"seconds\":%.6f,\"bytes\":%llu,"
	       "\"p50_ns\":%u,\"p90_ns\":%u,\"p99_ns\":%u,\"p999_ns\":%u,\"max_ns\":%u",
	       o->mode, count, errors, (double)(w->t1 - w->t0) / 1e9, bytes,
	       pct(samples, kept, 0.50), pct(samples, kept, 0.90), pct(samples, kept, 0.99),
	       pct(samples, kept, 0.999), kept ? samples[kept - 1] : 0);
	print_cpu(&w->c0, &w->c1, &w->r0, &w->r1);
	printf("}\n");
}

static uint32_t *alloc_samples(const struct opts *o)
{
	uint32_t *s = malloc(sizeof(uint32_t) * (size_t)o->max_samples);

	if (!s)
		die("malloc");
	return s;
}

static int cmd_rr(const struct opts *o)
{
	struct sockaddr_in a = addr_of(o->host, o->port);
	uint32_t *samples = alloc_samples(o);
	struct window w;
	long count = 0, errors = 0;
	uint64_t end, t;
	int fd = tcp_connect(&a, 0);

	if (fd < 0)
		die("connect");
	for (end = now_ns() + (uint64_t)(o->warmup * 1e9); now_ns() < end;)
		if (one_exchange(fd) != 0)
			die("warm-up exchange");
	window_open(&w);
	end = w.t0 + (uint64_t)(o->seconds * 1e9);
	for (t = w.t0; t < end && !stop_flag;) {
		uint64_t t2;

		if (one_exchange(fd) != 0) {
			errors++;
			break; /* a lost byte means the connection is unusable */
		}
		t2 = now_ns();
		if (count < o->max_samples)
			samples[count] = (uint32_t)(t2 - t);
		count++;
		t = t2;
	}
	window_close(&w);
	close(fd);
	report(o, &w, count, errors, samples, count < o->max_samples ? count : o->max_samples, 0);
	return errors ? 1 : 0;
}

static int cmd_crr(const struct opts *o)
{
	struct sockaddr_in a = addr_of(o->host, o->port);
	uint32_t *samples = alloc_samples(o);
	struct window w;
	long count = 0, errors = 0;
	uint64_t end, t;

	for (end = now_ns() + (uint64_t)(o->warmup * 1e9); now_ns() < end;) {
		int fd = tcp_connect(&a, 1);

		if (fd < 0 || one_exchange(fd) != 0)
			die("warm-up connection");
		close(fd);
	}
	window_open(&w);
	end = w.t0 + (uint64_t)(o->seconds * 1e9);
	for (t = w.t0; t < end && !stop_flag && errors < CRR_MAX_ERRORS;) {
		int fd = tcp_connect(&a, 1);
		uint64_t t2;

		if (fd < 0 || one_exchange(fd) != 0) {
			errors++;
			if (fd >= 0)
				close(fd);
			t = now_ns();
			continue;
		}
		close(fd); /* SO_LINGER 0: RST, so no TIME_WAIT exhausts the ports */
		t2 = now_ns();
		if (count < o->max_samples)
			samples[count] = (uint32_t)(t2 - t);
		count++;
		t = t2;
	}
	window_close(&w);
	report(o, &w, count, errors, samples, count < o->max_samples ? count : o->max_samples, 0);
	return errors ? 1 : 0;
}

/* ------------------------------------------------------------------------- stream */

static int cmd_stream(const struct opts *o)
{
	static char buf[STREAM_CHUNK];
	struct sockaddr_in a = addr_of(o->host, o->port);
	unsigned long long bytes = 0;
	struct window w;
	uint64_t end, drain_end;
	long errors = 0;
	int fd = tcp_connect(&a, 0);

	if (fd < 0)
		die("connect");
	memset(buf, 'x', sizeof(buf));
	window_open(&w);
	end = w.t0 + (uint64_t)(o->seconds * 1e9);
	while (now_ns() < end && !stop_flag) {
		ssize_t n = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);

		if (n <= 0) {
			errors++;
			break;
		}
		bytes += (unsigned long long)n;
	}
	/* Count only delivered bytes: half-close and wait for the sink's EOF, so what still sat
	 * in the socket buffers at the deadline is inside the timed window. */
	shutdown(fd, SHUT_WR);
	for (drain_end = now_ns() + 5000000000ull; now_ns() < drain_end;)
		if (recv(fd, buf, sizeof(buf), 0) <= 0)
			break;
	window_close(&w);
	close(fd);
	report(o, &w, 1, errors, NULL, 0, bytes);
	return errors ? 1 : 0;
}

/* ------------------------------------------------------------------- UDP probes */

struct probe {
	uint32_t seq;
	uint32_t pad;
	uint64_t send_ns;
};

struct probe_rx {
	uint32_t seq;
	uint32_t pad;
	uint64_t recv_ns;
};

static FILE *open_out(const char *path)
{
	FILE *f = fopen(path ? path : "/dev/null", "wb");

	if (!f)
		die("open --out");
	return f;
}

static int cmd_probe_send(const struct opts *o)
{
	struct sockaddr_in a = addr_of(o->host, o->port);
	uint64_t period = (uint64_t)(1e9 / o->rate), start, next, end;
	long cap = (long)(o->rate * o->seconds) + 16, n = 0;
	uint64_t *log = malloc(sizeof(uint64_t) * (size_t)cap);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	FILE *f = open_out(o->out);

	if (fd < 0 || !log || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("probe socket");
	printf("ready\n");
	fflush(stdout);
	start = next = now_ns();
	end = start + (uint64_t)(o->seconds * 1e9);
	while (n < cap && !stop_flag) {
		struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ull),
				       .tv_nsec = (long)(next % 1000000000ull) };
		struct probe p = { .seq = (uint32_t)n };
		uint64_t t;

		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		t = now_ns();
		if (t >= end)
			break;
		p.send_ns = t;
		send(fd, &p, sizeof(p), 0); /* a tc drop is silent: the send still succeeds */
		log[n++] = t;
		next += period;
		if (next < t) /* late (descheduled): skip the missed slots instead of bursting */
			next = t + period;
	}
	fwrite(log, sizeof(uint64_t), (size_t)n, f);
	fclose(f);
	printf("{\"mode\":\"probe-send\",\"count\":%ld,\"seconds\":%.6f}\n", n,
	       (double)(now_ns() - start) / 1e9);
	return 0;
}

static int cmd_probe_recv(const struct opts *o)
{
	struct sockaddr_in a = addr_of(o->host, o->port);
	long cap = o->max_samples, n = 0;
	struct probe_rx *log = malloc(sizeof(*log) * (size_t)cap);
	int big = 8 << 20, fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
	FILE *f = open_out(o->out);

	if (fd < 0 || !log)
		die("probe socket");
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	set_timeouts(fd, 200);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("bind");
	printf("ready\n");
	fflush(stdout);
	while (!stop_flag && n < cap && now_ns() < end) {
		struct probe p;

		if (recv(fd, &p, sizeof(p), 0) != (ssize_t)sizeof(p))
			continue;
		log[n].seq = p.seq;
		log[n].pad = 0;
		log[n].recv_ns = now_ns();
		n++;
	}
	fwrite(log, sizeof(*log), (size_t)n, f);
	fclose(f);
	printf("{\"mode\":\"probe-recv\",\"count\":%ld}\n", n);
	return 0;
}

/* -------------------------------------------------------------------- map fill */

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static char *slurp(const char *path, size_t want)
{
	char *buf = malloc(want ? want : 1);
	FILE *f = fopen(path, "rb");

	if (!buf || !f || fread(buf, 1, want, f) != want)
		die("read key/value file");
	fclose(f);
	return buf;
}

/* Writes --count entries with one BPF_MAP_UPDATE_BATCH (--batch 1) or one
 * BPF_MAP_UPDATE_ELEM each (--batch 0), then the same deletes; prints both times. This is
 * the kernel's own cost, the floor under any userspace (Python) programming path. */
static int cmd_mapfill(const struct opts *o)
{
	union bpf_attr attr;
	size_t ks = (size_t)o->key_size, vs = (size_t)o->value_size, n = (size_t)o->count;
	char *keys = slurp(o->keys, ks * n), *values = slurp(o->values, vs * n);
	uint64_t t0, t1, t2;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.pathname = (uint64_t)(uintptr_t)o->map;
	fd = (int)sys_bpf(BPF_OBJ_GET, &attr);
	if (fd < 0)
		die("BPF_OBJ_GET");
	t0 = now_ns();
	if (o->batch) {
		memset(&attr, 0, sizeof(attr));
		attr.batch.map_fd = (uint32_t)fd;
		attr.batch.keys = (uint64_t)(uintptr_t)keys;
		attr.batch.values = (uint64_t)(uintptr_t)values;
		attr.batch.count = (uint32_t)n;
		if (sys_bpf(BPF_MAP_UPDATE_BATCH, &attr) != 0)
			die("BPF_MAP_UPDATE_BATCH");
	} else {
		for (size_t i = 0; i < n; i++) {
			memset(&attr, 0, sizeof(attr));
			attr.map_fd = (uint32_t)fd;
			attr.key = (uint64_t)(uintptr_t)(keys + i * ks);
			attr.value = (uint64_t)(uintptr_t)(values + i * vs);
			if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) != 0)
				die("BPF_MAP_UPDATE_ELEM");
		}
	}
	t1 = now_ns();
	if (o->batch) {
		memset(&attr, 0, sizeof(attr));
		attr.batch.map_fd = (uint32_t)fd;
		attr.batch.keys = (uint64_t)(uintptr_t)keys;
		attr.batch.count = (uint32_t)n;
		if (sys_bpf(BPF_MAP_DELETE_BATCH, &attr) != 0)
			die("BPF_MAP_DELETE_BATCH");
	} else {
		for (size_t i = 0; i < n; i++) {
			memset(&attr, 0, sizeof(attr));
			attr.map_fd = (uint32_t)fd;
			attr.key = (uint64_t)(uintptr_t)(keys + i * ks);
			if (sys_bpf(BPF_MAP_DELETE_ELEM, &attr) != 0)
				die("BPF_MAP_DELETE_ELEM");
		}
	}
	t2 = now_ns();
	printf("{\"mode\":\"mapfill\",\"count\":%zu,\"batch\":%d,\"update_ns\":%llu,"
	       "\"delete_ns\":%llu}\n", n, o->batch, (unsigned long long)(t1 - t0),
	       (unsigned long long)(t2 - t1));
	return 0;
}

/* --------------------------------------------------------------------------- main */

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
		{ "netns", required_argument, 0, 'n' },	  { "host", required_argument, 0, 'h' },
		{ "port", required_argument, 0, 'p' },	  { "port2", required_argument, 0, 'P' },
		{ "seconds", required_argument, 0, 's' }, { "warmup", required_argument, 0, 'w' },
		{ "rate", required_argument, 0, 'r' },	  { "out", required_argument, 0, 'o' },
		{ "max-samples", required_argument, 0, 'm' },
		{ "map", required_argument, 0, 'M' },	  { "keys", required_argument, 0, 'k' },
		{ "values", required_argument, 0, 'v' },  { "key-size", required_argument, 0, 'K' },
		{ "value-size", required_argument, 0, 'V' },
		{ "count", required_argument, 0, 'c' },	  { "batch", required_argument, 0, 'b' },
		{ 0, 0, 0, 0 },
	};
	int c;

	o->mode = argv[1];
	o->seconds = 2.0;
	o->rate = 10000;
	o->max_samples = MAX_SAMPLES_DEFAULT;
	o->batch = 1;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case 'n': o->netns = optarg; break;
		case 'h': o->host = optarg; break;
		case 'p': o->port = atoi(optarg); break;
		case 'P': o->port2 = atoi(optarg); break;
		case 's': o->seconds = atof(optarg); break;
		case 'w': o->warmup = atof(optarg); break;
		case 'r': o->rate = atof(optarg); break;
		case 'o': o->out = optarg; break;
		case 'm': o->max_samples = atol(optarg); break;
		case 'M': o->map = optarg; break;
		case 'k': o->keys = optarg; break;
		case 'v': o->values = optarg; break;
		case 'K': o->key_size = atoi(optarg); break;
		case 'V': o->value_size = atoi(optarg); break;
		case 'c': o->count = atol(optarg); break;
		case 'b': o->batch = atoi(optarg); break;
		default: exit(2);
		}
	}
	if (o->seconds <= 0 || o->seconds > 3600 || o->rate <= 0 || o->rate > 1e6 ||
	    o->max_samples < 1 || o->max_samples > 100000000) {
		fprintf(stderr, "nstload: option out of range\n");
		exit(2);
	}
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(const struct opts *);
	} modes[] = {
		{ "server", cmd_server },	  { "rr", cmd_rr },
		{ "crr", cmd_crr },		  { "stream", cmd_stream },
		{ "probe-send", cmd_probe_send }, { "probe-recv", cmd_probe_recv },
		{ "mapfill", cmd_mapfill },
	};
	struct opts o = { 0 };

	if (argc < 2) {
		fprintf(stderr, "usage: nstload MODE [--options]\n");
		return 2;
	}
	parse(argc, argv, &o);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	enter_netns(o.netns);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(modes[i].name, o.mode) == 0)
			return modes[i].fn(&o);
	fprintf(stderr, "nstload: unknown mode %s\n", o.mode);
	return 2;
}
