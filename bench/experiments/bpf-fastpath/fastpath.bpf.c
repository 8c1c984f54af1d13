// Experiment, not product (see README.md): a tc fast path that bypasses the Linux bridge `bb-*` for ports without
// filters. Two classifiers for tc clsact ingress, sharing pinned maps:
//   tx: on a workload's host-side veth. A frame whose destination MAC is a remote port of the same virtual bridge
//       and whose source MAC and IP are the port's own goes straight to the VXLAN device `bx-*` (which finds the
//       remote host in its own FDB); everything else (ARP, ND, broadcast, the gateway, a spoofed frame) continues
//       to the bridge, where nftables port security and the tunnel filter judge it as today.
//   rx: on the VXLAN device. A frame for a local unfiltered port jumps into that port's workload namespace
//       (bpf_redirect_peer: no second veth crossing, no bridge); everything else goes to the bridge.
// Build: clang -O2 -g -target bpf -c fastpath.bpf.c -o fastpath.bpf.o
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// A local port: what its host-side veth may send (port security) and the VXLAN device of its bridge.
struct port {
	__u8 mac[6];
	__u16 has_ip6;
	__u32 ip4;		// network order; 0: no IPv4 address
	__u32 ip6[4];		// network order
	__u32 vx_ifindex;	// the bridge's `bx-*`
};

// A MAC on one virtual bridge (the bridge named by its VXLAN device's ifindex): tenants may reuse MACs.
struct l2key {
	__u32 vx_ifindex;
	__u8 mac[6];
	__u16 pad;		// always 0: part of the hashed key
};

// host-side veth ifindex -> port
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct port);
} fp_ports SEC(".maps");

// remote port on a bridge -> 1 (presence is all that matters)
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct l2key);
	__type(value, __u32);
} fp_remotes SEC(".maps");

// local unfiltered port on a bridge -> its host-side veth ifindex
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct l2key);
	__type(value, __u32);
} fp_locals SEC(".maps");

enum { TX_REDIRECT, TX_PASS, TX_SPOOF, RX_REDIRECT, RX_PASS, N_COUNTERS };

// Packets per outcome (per CPU): proof that the fast path carried the traffic, and what fell back.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, N_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} fp_stats SEC(".maps");

static __always_inline void count(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&fp_stats, &what);
	if (n)
		*n += 1;
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

// Whether an IPv6 packet may take the fast path: its source is the port's address, and it is not neighbour
// discovery or a router message (those stay with the bridge: the port chain checks NA targets, drops RA/redirects).
static __always_inline int ip6_ok(void *l3, void *end, const struct port *p)
{
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > end || !p->has_ip6)
		return 0;
	if (ip6->saddr.in6_u.u6_addr32[0] != p->ip6[0] || ip6->saddr.in6_u.u6_addr32[1] != p->ip6[1] ||
	    ip6->saddr.in6_u.u6_addr32[2] != p->ip6[2] || ip6->saddr.in6_u.u6_addr32[3] != p->ip6[3])
		return 0;
	if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP)
		return 1;
	if (ip6->nexthdr != IPPROTO_ICMPV6)
		return 0;	// extension headers: not parsed here, the slow path decides
	struct icmp6hdr *icmp = (void *)(ip6 + 1);
	if ((void *)(icmp + 1) > end)
		return 0;
	// 133..137: router solicitation/advertisement, neighbour solicitation/advertisement, redirect
	return icmp->icmp6_type < 133 || icmp->icmp6_type > 137;
}

SEC("tc")
int tx(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ifindex;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	struct port *p = bpf_map_lookup_elem(&fp_ports, &ifindex);
	if (!p)
		goto pass;
	if (!mac_eq(eth->h_source, p->mac)) {
		count(TX_SPOOF);
		return TC_ACT_OK;
	}
	struct l2key k = { .vx_ifindex = p->vx_ifindex };
	__builtin_memcpy(k.mac, eth->h_dest, 6);
	if (!bpf_map_lookup_elem(&fp_remotes, &k))
		goto pass;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			goto pass;
		if (!p->ip4 || ip->saddr != p->ip4) {
			count(TX_SPOOF);
			return TC_ACT_OK;
		}
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if (!ip6_ok(eth + 1, end, p))
			goto pass;
	} else {
		goto pass;	// ARP and anything else: the bridge and its port chain
	}
	count(TX_REDIRECT);
	return bpf_redirect(p->vx_ifindex, 0);
pass:
	count(TX_PASS);
	return TC_ACT_OK;
}

SEC("tc")
int rx(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	struct l2key k = { .vx_ifindex = skb->ifindex };
	__builtin_memcpy(k.mac, eth->h_dest, 6);
	__u32 *veth = bpf_map_lookup_elem(&fp_locals, &k);
	if (!veth) {
		count(RX_PASS);
		return TC_ACT_OK;
	}
	count(RX_REDIRECT);
#ifdef RX_VIA_VETH
	// Variant (-DRX_VIA_VETH): out of the host end, so the veth crossing stays and only the bridge goes.
	return bpf_redirect(*veth, 0);
#else
	// eth_type_trans on the VXLAN device marked the frame PACKET_OTHERHOST (not its MAC); the peer's ingress
	// does not classify it again, and IP drops OTHERHOST frames.
	bpf_skb_change_type(skb, PACKET_HOST);
	return bpf_redirect_peer(*veth, 0);
#endif
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
