//go:build ignore

// TC programs that timestamp probe packets (collector/header.go) of the
// sessions in the sessions map and hand them to user space over a ring buffer.

// Only UAPI and wire structs are used here: no CO-RE, so the object loads on
// kernels without BTF too.
#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_endian.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define IPV6_HLEN 40
#define IP_OFFMASK 0x1fff

#define PROBE_MAGIC 0x70726231 // "prb1"

// Wake the ring reader once this much is waiting (~6500 events).
#define WAKE_BYTES (256 << 10)

#define DIR_INGRESS 0
#define DIR_EGRESS 1

// The probe header at the start of the UDP payload, as on the wire.
struct probe_hdr {
	__be32 magic;
	__be32 session;
	__be32 seq;
	__u8 kind;
	__u8 flags;
	__be16 index;
};

// One probe packet seen at TC. Padding is explicit so that the Go side can
// decode it at fixed offsets (bpf/layout_test.go).
struct probe_event {
	__u64 ts; // bpf_ktime_get_ns, CLOCK_MONOTONIC
	__u32 session;
	__u32 seq;
	__u32 ifindex;
	__u16 ip_len;
	__u16 index;
	__u8 dir;
	__u8 kind;
	__u8 flags;
	__u8 _pad[5];
};

struct session {
	__u16 port; // host order
	// Which events to record: bit (kind-1)*2 + dir; 0 records all. An
	// echo client needs its requests' egress and replies' ingress only, so
	// on loopback half the events it would see need not cross the ring.
	__u8 want;
	__u8 _pad;
};

struct probe_stats {
	__u64 probes;
	__u64 lost; // ring buffer full
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct session);
} sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_stats);
} stats SEC(".maps");

// Emit probe_event into BTF for bpf2go: nothing else references it by type.
const struct probe_event *unused_probe_event __attribute__((unused));

// UDP header and probe header, read with one helper call.
struct udp_probe {
	struct udphdr udp;
	struct probe_hdr probe;
};

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	__u32 off = ETH_HLEN;
	__u16 ip_len;

	// skb->protocol is a context read: non-IP traffic costs no packet load.
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return TCX_NEXT;
		// A later fragment has no UDP header where we would look for one.
		if (ip.protocol != IPPROTO_UDP || ip.ihl < 5 ||
		    (ip.frag_off & bpf_htons(IP_OFFMASK)))
			return TCX_NEXT;
		ip_len = bpf_ntohs(ip.tot_len);
		off += ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return TCX_NEXT;
		if (ip6.nexthdr != IPPROTO_UDP)
			return TCX_NEXT;
		ip_len = bpf_ntohs(ip6.payload_len) + IPV6_HLEN;
		off += IPV6_HLEN;
	} else {
		return TCX_NEXT;
	}

	// Fails on payloads shorter than a probe header: not a probe.
	struct udp_probe h;
	if (bpf_skb_load_bytes(skb, off, &h, sizeof(h)) < 0)
		return TCX_NEXT;
	// Ethernet padding of a short frame must not pass for a probe header.
	if (bpf_ntohs(h.udp.len) < sizeof(h))
		return TCX_NEXT;
	if (h.probe.magic != bpf_htonl(PROBE_MAGIC))
		return TCX_NEXT;

	__u32 id = bpf_ntohl(h.probe.session);
	struct session *s = bpf_map_lookup_elem(&sessions, &id);
	if (!s)
		return TCX_NEXT;
	if (bpf_ntohs(h.udp.dest) != s->port && bpf_ntohs(h.udp.source) != s->port)
		return TCX_NEXT;
	if (s->want) {
		__u8 k = h.probe.kind;
		if (k < 1 || k > 4 || !(s->want & (1 << ((k - 1) * 2 + dir))))
			return TCX_NEXT;
	}

	__u32 zero = 0;
	struct probe_stats *st = bpf_map_lookup_elem(&stats, &zero);

	struct probe_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (st)
			__sync_fetch_and_add(&st->lost, 1);
		return TCX_NEXT;
	}
	e->ts = bpf_ktime_get_ns();
	e->session = id;
	e->seq = bpf_ntohl(h.probe.seq);
	e->ifindex = skb->ifindex;
	e->ip_len = ip_len;
	e->index = bpf_ntohs(h.probe.index);
	e->dir = dir;
	e->kind = h.probe.kind;
	e->flags = h.probe.flags;
	// Reserved memory is not zeroed: clear the padding, user space sees it.
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	// Wake the reader only once a batch has piled up: a wake-up per probe
	// costs more than the probe at high rates. Sinks need events by the end
	// of a session, and Flush wakes the reader for the rest.
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKE_BYTES ?
		BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	if (st)
		__sync_fetch_and_add(&st->probes, 1);
	return TCX_NEXT;
}

// TCX_NEXT (TC_ACT_UNSPEC under clsact) lets later programs run and never
// drops: the probe only watches.
SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
