// The two readers of attribution, without a kernel: `nft monitor trace` output into per-host verdicts (the probe),
// and an NFLOG packet message into a flow record. The kernel and e2e tests (attrib-kernel, e2e/attribution) read
// the real ones.
import test from 'ava';
import { legOf, markScript, parseTrace } from '../agent/probe.js';
import { attr } from '../datapath/netlink/attributes.js';
import { decodePacket } from '../datapath/netlink/nflog.js';

const TRACE = `trace id 1a bridge bees-probe-x pre packet: iif "bv1" ether saddr 02:00:00:00:00:01 ether daddr 02:00:00:00:00:02 ip saddr 10.0.0.2 ip daddr 10.0.0.3 ip protocol icmp icmp type echo-request
trace id 1a bridge bees-probe-x pre rule ether saddr 02:00:00:00:00:01 meta nftrace set 1 (verdict continue)
trace id 1a bridge bees st-to rule oifname vmap @to-port (verdict jump tp-bv2)
trace id 1a bridge bees c-chain rule meta l4proto icmp limit rate 10/second log prefix "bees drop r=r9" group 3054 comment "l=r9" (verdict continue)
trace id 1a bridge bees c-chain rule meta l4proto icmp counter packets 0 bytes 0 drop comment "r=r9" (verdict drop)
trace id 2b bridge bees-probe-x pre packet: iif "bv2" ip saddr 10.0.0.3 ip daddr 10.0.0.2 ip protocol icmp
trace id 2b bridge bees forward policy accept
`;

test('nft monitor trace: the first traced packet of each direction, dropped by the rule its comment names', (t) => {
  const traces = parseTrace(TRACE);
  t.is(traces.size, 2);
  const req = legOf(traces, '10.0.0.2', '10.0.0.3');
  t.is(req.verdict, 'drop');
  t.is(req.ruleId, 'r9', 'the log rule (l=) is not the dropping rule');
  t.is(req.steps.length, 4);
  t.deepEqual(legOf(traces, '10.0.0.3', '10.0.0.2'), {
    verdict: 'accept',
    steps: [{ table: 'bridge bees', chain: 'forward', verdict: 'accept' }],
  });
  t.is(legOf(traces, '10.0.0.9', '10.0.0.2').verdict, 'unseen');
});

test('the probe marks exactly its tuple and the reply', (t) => {
  const s = markScript({
    id: 'x',
    proto: 'tcp',
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    srcIp: '10.0.0.2',
    dstIp: '10.0.0.3',
    srcPort: 45000,
    dstPort: 80,
    hosts: [],
  });
  t.regex(
    s,
    /ether saddr 02:00:00:00:00:01 ether daddr 02:00:00:00:00:02 ip saddr 10.0.0.2 ip daddr 10.0.0.3 tcp sport 45000 tcp dport 80 meta nftrace set 1/,
  );
  t.regex(
    s,
    /ether saddr 02:00:00:00:00:02 ether daddr 02:00:00:00:00:01 ip saddr 10.0.0.3 ip daddr 10.0.0.2 tcp sport 80 tcp dport 45000 meta nftrace set 1/,
  );
});

test('an NFLOG packet message: prefix, bridge ports, MACs, addresses, ports', (t) => {
  const be32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    return b;
  };
  const ip = Buffer.alloc(28);
  ip[0] = 0x45;
  ip.writeUInt16BE(28, 2);
  ip[9] = 17;
  Buffer.from([10, 0, 0, 2, 10, 0, 0, 3]).copy(ip, 12);
  ip.writeUInt16BE(5000, 20);
  ip.writeUInt16BE(53, 22);
  const hw = Buffer.from('0200000000020200000000010800', 'hex');
  const body = Buffer.concat([
    Buffer.from([7, 0, 0x0b, 0xee]), // nfgenmsg: family bridge, group 3054
    attr(1, Buffer.from([0x08, 0x00, 4, 0])), // NFULA_PACKET_HDR: IPv4, hook
    attr(4, be32(9)), // INDEV: the bridge
    attr(6, be32(21)), // PHYSINDEV: the bridge port
    attr(7, be32(22)), // PHYSOUTDEV
    attr(16, hw), // HWHEADER
    attr(9, ip), // PAYLOAD
    attr(10, Buffer.from('bees drop r=abc\0')), // PREFIX
  ]);
  const p = decodePacket(body, 1000);
  t.deepEqual(p, {
    time: 1000,
    prefix: 'bees drop r=abc',
    inIndex: 21,
    outIndex: 22,
    inDevIndex: 9,
    ethertype: 0x0800,
    dstMac: '02:00:00:00:00:02',
    srcMac: '02:00:00:00:00:01',
    srcIp: '10.0.0.2',
    dstIp: '10.0.0.3',
    proto: 17,
    length: 28,
    srcPort: 5000,
    dstPort: 53,
  });
});
