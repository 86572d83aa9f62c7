/* p4tas-swx: runs a p4c-dpdk (PNA) pipeline on DPDK's SWX pipeline library, for the dpdk
 * target (dpdk_target/, which starts it and speaks its control protocol).
 *
 *   p4tas-swx codegen SPEC OUT.c
 *       Turn a .spec into the C code of its pipeline library (DPDK's codegen).
 *   p4tas-swx run --lib LIB.so --control FD --cpu PORT:FD [--loopback PORT]
 *                 [--clock REGARRAY] -i PORT@IFNAME ...
 *       Load the pipeline library and run it: each -i port is an AF_PACKET socket on IFNAME,
 *       the CPU port is the datagram socket FD (PacketIn/PacketOut frames), the loopback port
 *       sends what the pipeline sends it back into the pipeline (a ring), every other port id
 *       up to 255 is a null port (so ids are the P4Runtime port numbers). Control commands
 *       arrive as lines on the stream socket FD (control.c). Before each run the clock
 *       register array's cell 0 gets the time in microseconds (PNA's DPDK target fills no
 *       timestamp metadata).
 *
 * No hugepages, no PCI: EAL runs with --no-huge --no-pci and the ports are file descriptors,
 * which DPDK's fd port reads and writes one frame per read()/write(). The loop sleeps in poll()
 * once no port had a packet for IDLE_SPIN_US, because the machines have two cores: a bound in
 * time, not in runs, so that a trickle of packets (a SYN flood's 5,000/s) does not keep it
 * spinning between them. */

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <sys/socket.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_swx_ctl.h>
#include <rte_swx_pipeline.h>
#include <rte_swx_port_fd.h>

#include "control.h"

#define N_PORTS 256              /* port ids 0..255, as P4Runtime numbers them (a power of 2) */
#define MTU 9216                 /* largest frame a port reads (veths may carry jumbo frames) */
#define MBUF_SIZE (MTU + PARSE_REACH + RTE_PKTMBUF_HEADROOM)   /* room for the zeroed reach */
#define RUN_INSTRUCTIONS 4096    /* instructions per rte_swx_pipeline_run() call */
#define IDLE_SPIN_US 50          /* no new packet for this long: sleep in poll() */
#define MAX_REAL_PORTS 32
#define NULL_RING "NULL"          /* an empty ring the unused port ids read */

#define LOOP_RING "LOOP"          /* the loopback port's ring */
#define LOOP_RING_SIZE 4096

#define SEND_TIMEOUT_S 2          /* a full socket buffer: wait this long, then drop */
/* Socket buffers as softnic's ports have them (nic_contract/host_port.py): a burst from the
 * bridge (RX_CONSUMED, TX_DATA) must not be dropped before the pipeline reads it. */
#define RCVBUF_BYTES (64 << 20)
#define SNDBUF_BYTES (4 << 20)

/* DPDK's extract does not check the packet's length, so a frame that ends inside its headers
 * is parsed from whatever the buffer holds after it: bytes of an earlier packet. Every frame
 * an fd port reads is followed by PARSE_REACH zero bytes (more than the PNA program's longest
 * run of fixed-size headers past any point, 94 bytes), so such a frame is parsed the same way
 * every time, its missing bytes as zeros (docs/ARCHITECTURE.md, "PNA / DPDK target"). */
#define PARSE_REACH 128

static rte_swx_port_in_pkt_rx_t fd_pkt_rx;

static int fd_pkt_rx_zero_tail(void *port, struct rte_swx_pkt *pkt)
{
	uint16_t room;

	if (!fd_pkt_rx(port, pkt))
		return 0;
	room = rte_pktmbuf_tailroom((struct rte_mbuf *)pkt->handle);
	memset(pkt->pkt + pkt->offset + pkt->length, 0, room < PARSE_REACH ? room : PARSE_REACH);
	return 1;
}

struct real_port {
	uint32_t id;
	int fd;                  /* reads; -1: the loopback port */
	int out_fd;              /* writes (blocking: a full buffer waits instead of dropping) */
	const char *name;
};

static int codegen(const char *spec_path, const char *out_path)
{
	FILE *spec = fopen(spec_path, "r"), *out = fopen(out_path, "w");
	uint32_t err_line = 0;
	const char *err_msg = NULL;
	int status;

	if (!spec || !out) {
		fprintf(stderr, "p4tas-swx: cannot open %s or %s: %s\n", spec_path, out_path,
			strerror(errno));
		return 1;
	}
	status = rte_swx_pipeline_codegen(spec, out, &err_line, &err_msg);
	fclose(spec);
	fclose(out);
	if (status) {
		fprintf(stderr, "p4tas-swx: %s:%u: %s\n", spec_path, err_line,
			err_msg ? err_msg : strerror(-status));
		return 1;
	}
	return 0;
}

/* A raw AF_PACKET socket on `ifname`. The reader is non-blocking and receives every frame of
 * the interface but none this process sends (PACKET_IGNORE_OUTGOING); the writer (protocol 0:
 * it receives nothing) blocks up to SEND_TIMEOUT_S on a full buffer, because frames the host
 * port carries were acknowledged to the peer already and must not be dropped. */
static int open_packet_socket(const char *ifname, int writer)
{
	struct sockaddr_ll addr = { .sll_family = AF_PACKET,
				    .sll_protocol = writer ? 0 : htons(ETH_P_ALL) };
	struct timeval timeout = { .tv_sec = SEND_TIMEOUT_S };
	/* Protocol 0 at creation: the socket receives nothing until bind() names the interface
	 * (with ETH_P_ALL, frames of every interface would queue up before it). */
	int one = 1, fd = socket(AF_PACKET, SOCK_RAW | (writer ? 0 : SOCK_NONBLOCK), 0);
	int size = writer ? SNDBUF_BYTES : RCVBUF_BYTES;

	if (fd < 0)
		return -1;
	/* FORCE: beyond net.core.rmem_max/wmem_max (the runner runs as root). */
	setsockopt(fd, SOL_SOCKET, writer ? SO_SNDBUFFORCE : SO_RCVBUFFORCE, &size, sizeof(size));
	addr.sll_ifindex = if_nametoindex(ifname);
	if (!addr.sll_ifindex || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    (writer ? setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout))
		    : setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one))) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The pipeline's I/O spec (DPDK's iospec text): real ports on their fds, null ports reading an
 * empty ring (no system call per poll) and writing to a sink. */
static FILE *iospec(const struct real_port *ports, int n_ports)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	uint32_t id;

	fprintf(f, "mirroring slots 4 sessions 64\n");
	for (id = 0; id < N_PORTS; id++) {
		int fd = -2, out_fd = -2, i;

		for (i = 0; i < n_ports; i++)
			if (ports[i].id == id) {
				fd = ports[i].fd;
				out_fd = ports[i].out_fd;
			}
		if (fd == -1) {
			fprintf(f, "port in %u ring " LOOP_RING " bsz 32\n", id);
			fprintf(f, "port out %u ring " LOOP_RING " bsz 1\n", id);
		} else if (fd < 0) {
			fprintf(f, "port in %u ring " NULL_RING " bsz 1\n", id);
			fprintf(f, "port out %u sink file none\n", id);
		} else {
			fprintf(f, "port in %u fd %d mtu %d mempool MEMPOOL0 bsz 32\n", id, fd, MTU);
			fprintf(f, "port out %u fd %d bsz 1\n", id, out_fd);
		}
	}
	fclose(f);
	return fmemopen(text, size, "r");
}

static int init_eal(const char *prog)
{
	char *args[] = { (char *)prog, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
			 "-m", "512", "-l", "0", "--log-level", "lib.*:error", NULL };

	cpu_set_t all;
	int status = rte_eal_init(sizeof(args) / sizeof(args[0]) - 1, args);

	/* EAL pins this thread to lcore 0; the runner is one process among others on small
	 * machines (several targets, tests), so the scheduler may place it on any CPU. */
	CPU_ZERO(&all);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		CPU_SET(cpu, &all);
	sched_setaffinity(0, sizeof(all), &all);
	return status;
}

static uint64_t packets_in(struct rte_swx_pipeline *p, const struct real_port *ports, int n)
{
	struct rte_swx_port_in_stats stats;
	uint64_t total = 0;
	int i;

	for (i = 0; i < n; i++) {
		memset(&stats, 0, sizeof(stats));
		rte_swx_ctl_pipeline_port_in_stats_read(p, ports[i].id, &stats);
		total += stats.n_pkts;
	}
	return total;
}

/* Run the pipeline; serve control commands between runs; sleep in poll() when idle. */
static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int run_loop(struct rte_swx_pipeline *p, struct control *ctl,
		    const struct real_port *ports, int n_ports, const char *clock)
{
	struct pollfd pfds[MAX_REAL_PORTS + 1];
	uint64_t seen = 0, last_us = now_us();
	int n_fds = 0, i;

	for (i = 0; i < n_ports; i++)
		if (ports[i].fd >= 0)
			pfds[n_fds++] = (struct pollfd){ .fd = ports[i].fd, .events = POLLIN };
	pfds[n_fds] = (struct pollfd){ .fd = control_fd(ctl), .events = POLLIN };
	for (;;) {
		uint64_t t = now_us(), now;

		if (clock)
			rte_swx_ctl_pipeline_regarray_write(p, clock, 0, t);
		rte_swx_pipeline_run(p, RUN_INSTRUCTIONS);
		now = packets_in(p, ports, n_ports);
		if (now != seen)
			last_us = t;
		seen = now;
		if (t - last_us < IDLE_SPIN_US) {
			if (control_pending(ctl) && control_serve(ctl) < 0)
				return 0;
			continue;
		}
		rte_swx_pipeline_flush(p);
		if (poll(pfds, n_fds + 1, -1) < 0 && errno != EINTR)
			return 1;
		if (pfds[n_fds].revents && control_serve(ctl) < 0)
			return 0;   /* the target closed the control socket: stop */
		last_us = now_us();
	}
}

/* PORT@IFNAME, PORT:FD or PORT; -1 for a malformed one, port 0 (the PNA program's sink) or an
 * id given twice. */
static int parse_port(const char *text, struct real_port *port, const struct real_port *ports,
		      int n_ports)
{
	char *end;
	unsigned long id = strtoul(text, &end, 10);
	int i;

	if ((*end != '@' && *end != ':' && *end) || id == 0 || id >= N_PORTS || end == text)
		return -1;
	for (i = 0; i < n_ports; i++)
		if (ports[i].id == id)
			return -1;
	port->id = id;
	port->name = *end ? end + 1 : end;
	return 0;
}

static int run(int argc, char **argv)
{
	struct real_port ports[MAX_REAL_PORTS];
	const char *lib = NULL, *clock = NULL;
	int n_ports = 0, control = -1, i;
	struct rte_swx_pipeline *p = NULL;
	struct control *ctl;
	FILE *io;

	for (i = 0; i + 1 < argc; i += 2) {
		struct real_port *port = &ports[n_ports];

		if (!strcmp(argv[i], "--lib")) {
			lib = argv[i + 1];
		} else if (!strcmp(argv[i], "--clock")) {
			clock = argv[i + 1];
		} else if (!strcmp(argv[i], "--loopback") && n_ports < MAX_REAL_PORTS &&
			   !parse_port(argv[i + 1], port, ports, n_ports)) {
			port->fd = port->out_fd = -1;
			n_ports++;
		} else if (!strcmp(argv[i], "--control")) {
			control = atoi(argv[i + 1]);
		} else if ((!strcmp(argv[i], "-i") || !strcmp(argv[i], "--cpu")) &&
			   n_ports < MAX_REAL_PORTS && !parse_port(argv[i + 1], port, ports, n_ports)) {
			int is_cpu = argv[i][1] == '-';

			port->fd = is_cpu ? atoi(port->name) : open_packet_socket(port->name, 0);
			port->out_fd = is_cpu ? port->fd : open_packet_socket(port->name, 1);
			if (port->fd < 0 || port->out_fd < 0) {
				fprintf(stderr, "p4tas-swx: port %s: %s\n", argv[i + 1],
					strerror(errno));
				return 1;
			}
			n_ports++;
		} else {
			fprintf(stderr, "p4tas-swx: unexpected argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!lib || control < 0 || i != argc) {
		fprintf(stderr, "usage: p4tas-swx run --lib LIB --control FD --cpu PORT:FD "
			"-i PORT@IFNAME ...\n");
		return 2;
	}
	if (init_eal("p4tas-swx") < 0 ||
	    !rte_pktmbuf_pool_create("MEMPOOL0", 8192, 256, 0, MBUF_SIZE, SOCKET_ID_ANY)) {
		fprintf(stderr, "p4tas-swx: DPDK initialization failed: %s\n",
			rte_strerror(rte_errno));
		return 1;
	}
	if (!rte_ring_create(NULL_RING, 64, SOCKET_ID_ANY, 0) ||
	    !rte_ring_create(LOOP_RING, LOOP_RING_SIZE, SOCKET_ID_ANY,
			     RING_F_SP_ENQ | RING_F_SC_DEQ))
		return 1;
	io = iospec(ports, n_ports);
	/* Before the build, which copies the fd port's operations (PARSE_REACH). */
	fd_pkt_rx = rte_swx_port_fd_reader_ops.pkt_rx;
	rte_swx_port_fd_reader_ops.pkt_rx = fd_pkt_rx_zero_tail;
	if (rte_swx_pipeline_build_from_lib(&p, "p4tas", lib, io, 0) || !p) {
		fprintf(stderr, "p4tas-swx: cannot build the pipeline from %s\n", lib);
		return 1;
	}
	fclose(io);
	ctl = control_create(p, control);
	if (!ctl)
		return 1;
	printf("p4tas-swx: running %s on %d ports\n", lib, n_ports);
	fflush(stdout);
	return run_loop(p, ctl, ports, n_ports, clock);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "codegen"))
		return codegen(argv[2], argv[3]);
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return run(argc - 2, argv + 2);
	fprintf(stderr, "usage: p4tas-swx codegen SPEC OUT.c | p4tas-swx run ...\n");
	return 2;
}
