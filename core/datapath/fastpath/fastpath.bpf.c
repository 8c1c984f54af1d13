// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The overlay's fast path: a frame between a workload without filters and a remote port of the same virtual bridge
// skips the Linux bridge `bb-*` and its netfilter hooks (what keeps the overlay under 0.85 of the underlay: see
// ../README.md, "Throughput" and "The fast path"). Two tc classifiers (clsact ingress), sharing maps the agent fills
// (fastpath.ts):
//   tx, on a workload's host-side veth: a frame for a remote port of the port's bridge, with the port's own source
//       MAC and address, goes straight out of the bridge's VXLAN device `bx-*`, whose own FDB finds the remote host.
//   rx, on `bx-*`: a TCP or UDP frame for a local port without filters, which conntrack has not NATed on this host,
//       goes straight into the workload's namespace.
// Anything else (ARP, ND, RA, broadcast, multicast, the gateway's MAC, another source address, ICMP, fragments,
// IPv6 extension headers, a NATed flow's reply) takes the bridge as before: the fast path only ever skips work
// whose outcome is known (no filter to run, no NAT to undo), and a frame it does not understand is never dropped.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// A local port on the fast path: what its host-side veth may send (its own MAC, its fixed addresses).
struct port {
	__u8 mac[6];
	__u8 has_ip4;
	__u8 has_ip6;
	__u32 ip4;		// network order
	__u32 ip6[4];		// network order
	__u32 vx_ifindex;	// the VXLAN device of the port's bridge
};

// A MAC on one virtual bridge, the bridge named by its VXLAN device's ifindex: tenants may reuse MACs.
struct l2key {
	__u32 vx_ifindex;
	__u8 mac[6];
	__u16 pad;		// always 0: part of the hashed key
};

// Where rx sends a local port's frames: its host-side veth (whose peer is the workload's interface).
struct local {
	__u32 ifindex;
	__u16 zone;		// the bridge's conntrack zone (inet bees-ct), for the NAT check
	__u16 pad;
};

// Per port and CPU: frames and bytes the fast path carried each way.
struct counts {
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 rx_bytes;
};

// Sizes: a host holds up to 16384 local ports and 262144 remote MACs across its bridges; full maps only mean
// more frames on the bridge (an update that does not fit fails, and the agent leaves that port off the fast path).
// Not preallocated: a preallocated hash takes its whole size at load (the remote MACs alone ~19 MB of kernel memory
// per agent, and the time to allocate it), where most hosts hold a few hundred entries.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct port);
} fp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, struct l2key);
	__type(value, __u32);
} fp_remotes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct l2key);
	__type(value, struct local);
} fp_locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct counts);
} fp_counts SEC(".maps");

// Outcomes per CPU, for the agent's metrics: what the fast path carried and why the rest took the bridge.
enum { TX_FAST, TX_BRIDGE, TX_SPOOF, RX_FAST, RX_BRIDGE, RX_NAT, N_OUTCOMES };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, N_OUTCOMES);
	__type(key, __u32);
	__type(value, __u64);
} fp_outcomes SEC(".maps");

// The kernel's conntrack lookup (kfuncs, Linux 6.0+; zones from 6.1 with the 16-byte options).
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};

struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple_sz,
					 struct bpf_ct_opts *opts, __u32 opts_sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

#define IPS_SRC_NAT (1 << 4)
#define IPS_DST_NAT (1 << 5)
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

static __always_inline void outcome(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&fp_outcomes, &what);
	if (n)
		*n += 1;
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

// An IPv6 packet the fast path may carry from port p: its source is the port's address and it is TCP, UDP or an
// ICMPv6 message other than neighbour discovery and router messages (those stay with the bridge, where the port's
// anti-spoofing chain checks NA targets and drops RA and redirects). Extension headers: not parsed, the bridge.
static __always_inline int tx_ip6_ok(struct ipv6hdr *ip6, void *end, const struct port *p)
{
	if ((void *)(ip6 + 1) > end || !p->has_ip6)
		return 0;
	if (ip6->saddr.in6_u.u6_addr32[0] != p->ip6[0] || ip6->saddr.in6_u.u6_addr32[1] != p->ip6[1] ||
	    ip6->saddr.in6_u.u6_addr32[2] != p->ip6[2] || ip6->saddr.in6_u.u6_addr32[3] != p->ip6[3])
		return 0;
	if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP)
		return 1;
	if (ip6->nexthdr != 58)	// IPPROTO_ICMPV6
		return 0;
	__u8 *type = (void *)(ip6 + 1);
	if ((void *)(type + 1) > end)
		return 0;
	// 133..137: router solicitation and advertisement, neighbour solicitation and advertisement, redirect
	return *type < 133 || *type > 137;
}

SEC("tc")
int tx(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ifindex;

	if ((void *)(eth + 1) > end)
		goto bridge;
	struct port *p = bpf_map_lookup_elem(&fp_ports, &ifindex);
	if (!p)
		goto bridge;
	struct l2key k = { .vx_ifindex = p->vx_ifindex };
	__builtin_memcpy(k.mac, eth->h_dest, 6);
	if (!bpf_map_lookup_elem(&fp_remotes, &k))
		goto bridge;
	// Port security: a frame that is not plainly the port's own goes to the bridge, whose chain decides.
	if (!mac_eq(eth->h_source, p->mac))
		goto spoof;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			goto bridge;
		if (!p->has_ip4 || ip->saddr != p->ip4)
			goto spoof;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if (!tx_ip6_ok((void *)(eth + 1), end, p))
			goto bridge;
	} else {
		goto bridge;	// ARP and anything else
	}
	struct counts *c = bpf_map_lookup_elem(&fp_counts, &ifindex);
	if (c) {
		c->tx_packets += 1;
		c->tx_bytes += skb->len;
	}
	outcome(TX_FAST);
	return bpf_redirect(p->vx_ifindex, 0);
spoof:
	outcome(TX_SPOOF);
	return TC_ACT_OK;
bridge:
	outcome(TX_BRIDGE);
	return TC_ACT_OK;
}

// Whether conntrack on this host has NATed the flow this frame belongs to (a VIP's DNAT at the client's bridge,
// kube-proxy's ClusterIP): then its reply must cross the bridge, where conntrack undoes the translation.
static __always_inline int natted(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 tsz, __u8 proto, __u16 zone)
{
	struct bpf_ct_opts opts = {
		.netns_id = -1,	// BPF_F_CURRENT_NETNS
		.l4proto = proto,
		.ct_zone_id = zone,
	};
	struct nf_conn *ct = bpf_skb_ct_lookup(skb, t, tsz, &opts, sizeof(opts));
	if (!ct)
		return 0;
	unsigned long status = ct->status;
	bpf_ct_release(ct);
	return (status & (IPS_SRC_NAT | IPS_DST_NAT)) != 0;
}

SEC("tc")
int rx(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		goto bridge;
	struct l2key k = { .vx_ifindex = skb->ifindex };
	__builtin_memcpy(k.mac, eth->h_dest, 6);
	struct local *l = bpf_map_lookup_elem(&fp_locals, &k);
	if (!l)
		goto bridge;
	__u32 to = l->ifindex;
	__u16 zone = l->zone;
	struct bpf_sock_tuple t = {};
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
			goto bridge;
		if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
			goto bridge;
		__be16 *ports = (void *)(ip + 1);
		if ((void *)(ports + 2) > end)
			goto bridge;
		t.ipv4.saddr = ip->saddr;
		t.ipv4.daddr = ip->daddr;
		t.ipv4.sport = ports[0];
		t.ipv4.dport = ports[1];
		if (natted(skb, &t, sizeof(t.ipv4), ip->protocol, zone))
			goto nat;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			goto bridge;
		if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP)
			goto bridge;
		__be16 *ports = (void *)(ip6 + 1);
		if ((void *)(ports + 2) > end)
			goto bridge;
		__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, &ip6->daddr, 16);
		t.ipv6.sport = ports[0];
		t.ipv6.dport = ports[1];
		if (natted(skb, &t, sizeof(t.ipv6), ip6->nexthdr, zone))
			goto nat;
	} else {
		goto bridge;
	}
	struct counts *c = bpf_map_lookup_elem(&fp_counts, &to);
	if (c) {
		c->rx_packets += 1;
		c->rx_bytes += skb->len;
	}
	outcome(RX_FAST);
	// Decapsulation marked the frame PACKET_OTHERHOST (not the VXLAN device's MAC); the workload's interface does
	// not classify it again, and IP would drop it.
	bpf_skb_change_type(skb, PACKET_HOST);
	return bpf_redirect_peer(to, 0);
nat:
	outcome(RX_NAT);
	return TC_ACT_OK;
bridge:
	outcome(RX_BRIDGE);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
