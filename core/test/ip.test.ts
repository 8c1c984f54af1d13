import test from 'ava';
import {
  AddressError,
  addToIp,
  broadcastAddress,
  canonicalCidr,
  canonicalIp,
  cidrSize,
  compareIp,
  contains,
  defaultGateway,
  enclosingCidr,
  firstUsable,
  formatCidr,
  formatIp,
  indexOf,
  ipDistance,
  ipFamily,
  isCidr,
  isIp,
  isMac,
  isNetwork,
  isUnicastMac,
  lastAddress,
  lastUsable,
  networkAddress,
  normalizeMac,
  nthAddress,
  overlaps,
  parseCidr,
  parseIp,
  parseNetwork,
  prefixLength,
  splitCidr,
  usableCount,
} from '../net/ip.js';
import * as dp from '../datapath/addresses.js';

test('parses and canonicalises IPv4 and IPv6', (t) => {
  t.deepEqual(parseIp('10.1.2.3'), { family: 4, value: 0x0a010203n });
  t.is(canonicalIp('10.1.2.3'), '10.1.2.3');
  t.is(canonicalIp('FD00:0:0:0:0:0:0:1'), 'fd00::1');
  t.is(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1'); // first of two equal runs
  t.is(canonicalIp('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // a single zero group stays
  t.is(canonicalIp('::'), '::');
  t.is(canonicalIp('::1'), '::1');
  t.is(canonicalIp('1::'), '1::');
  t.is(canonicalIp('::ffff:10.0.0.1'), '::ffff:10.0.0.1');
  t.is(canonicalIp('64:ff9b::192.0.2.33'), '64:ff9b::c000:221');
  t.is(parseIp('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff').value, (1n << 128n) - 1n);
  t.is(ipFamily('::1'), 6);
  t.is(ipFamily('1.2.3.4'), 4);
  t.is(ipFamily('nope'), 0);
});

test('refuses bad addresses with a message naming the value and field', (t) => {
  for (const bad of ['', '1.2.3', '1.2.3.256', '01.2.3.4', '1.2.3.4 ', '1::2::3', 'g::1', '1.2.3.4/24', 'fe80::1%eth0']) {
    const err = t.throws(() => parseIp(bad, 'ips[0]'), { instanceOf: AddressError });
    t.true(err.message.startsWith('ips[0]: '), err.message);
    t.true(err.message.includes(JSON.stringify(bad)), err.message);
    t.is(err.field, 'ips[0]');
    t.false(isIp(bad));
  }
  t.throws(() => parseIp(42), { message: /expected an IP address as a string, got 42/ });
  t.throws(() => parseIp(undefined), { instanceOf: AddressError });
});

test('parses CIDRs, keeps the written address, refuses host bits where a network is required', (t) => {
  const c = parseCidr('10.0.0.5/24');
  t.is(formatCidr(c), '10.0.0.0/24');
  t.is(c.address, 0x0a000005n);
  t.is(canonicalCidr('FD00:0001::/64'), 'fd00:1::/64');
  t.is(prefixLength('fd00::/48'), 48);
  t.throws(() => parseNetwork('10.0.0.5/24', 'subnets[0].cidr'), {
    message: 'subnets[0].cidr: "10.0.0.5/24" has host bits set; did you mean 10.0.0.0/24?',
  });
  t.true(isNetwork('10.0.0.0/24'));
  t.false(isNetwork('10.0.0.1/24'));
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/08', '10.0.0.0/', 'fd00::/129', 'x/24', '10.0.0.0/24/1']) {
    t.false(isCidr(bad), bad);
    const err = t.throws(() => parseCidr(bad), { instanceOf: AddressError });
    t.true(err.message.includes(JSON.stringify(bad)), err.message);
  }
  t.throws(() => parseCidr('10.0.0.0/33'), { message: /prefix length "33" is not a number from 0 to 32/ });
});

test('network, broadcast, usable range and sizes', (t) => {
  t.is(formatIp(networkAddress('192.168.1.77/24')), '192.168.1.0');
  t.is(formatIp(broadcastAddress('192.168.1.0/24')!), '192.168.1.255');
  t.is(formatIp(firstUsable('192.168.1.0/24')), '192.168.1.1');
  t.is(formatIp(lastUsable('192.168.1.0/24')), '192.168.1.254');
  t.is(usableCount('192.168.1.0/24'), 254n);
  t.is(usableCount('10.0.0.0/31'), 2n);
  t.is(usableCount('10.0.0.7/32'), 1n);
  t.is(broadcastAddress('10.0.0.0/31'), undefined);
  t.is(broadcastAddress('fd00::/64'), undefined);
  t.is(formatIp(lastUsable('fd00::/120')), 'fd00::ff');
  t.is(formatIp(firstUsable('fd00::/120')), 'fd00::1');
  t.is(formatIp(lastAddress('fd00::/64')), 'fd00::ffff:ffff:ffff:ffff');
  t.is(cidrSize('fd00::/64'), 1n << 64n);
  t.is(defaultGateway('10.8.0.0/16'), '10.8.0.1');
  t.is(defaultGateway('fd00:1::/64'), 'fd00:1::1');
});

test('nth address, index, arithmetic', (t) => {
  t.is(formatIp(nthAddress('10.0.0.0/24', 10)), '10.0.0.10');
  t.is(formatIp(nthAddress('10.0.0.0/24', -1)), '10.0.0.255');
  t.is(formatIp(nthAddress('fd00::/64', 0x10000n)), 'fd00::1:0');
  t.throws(() => nthAddress('10.0.0.0/24', 256), { message: /10\.0\.0\.0\/24 has 256 addresses; index 256 is outside it/ });
  t.is(indexOf('10.0.0.0/24', '10.0.0.9'), 9n);
  t.throws(() => indexOf('10.0.0.0/24', '10.0.1.9'), { message: '10.0.1.9 is not inside 10.0.0.0/24' });
  t.is(formatIp(addToIp('10.0.0.255', 1)), '10.0.1.0');
  t.is(formatIp(addToIp('fd00::1', -1)), 'fd00::');
  t.throws(() => addToIp('255.255.255.255', 1), { message: /leaves the IPv4 address space/ });
  t.throws(() => addToIp('::', -1), { message: /leaves the IPv6 address space/ });
  t.is(ipDistance('10.0.0.1', '10.0.0.11'), 10n);
  t.true(compareIp('10.0.0.2', '10.0.0.10') < 0);
  t.true(compareIp('10.0.0.2', '::1') < 0); // v4 sorts first
});

test('contains and overlaps', (t) => {
  t.true(contains('10.0.0.0/8', '10.255.0.1'));
  t.false(contains('10.0.0.0/8', '11.0.0.0'));
  t.true(contains('10.0.0.0/8', '10.1.0.0/16'));
  t.false(contains('10.1.0.0/16', '10.0.0.0/8'));
  t.true(contains('10.0.0.0/8', '10.0.0.0/8'));
  t.false(contains('::/0', '10.0.0.1')); // families never mix
  t.true(contains('fd00::/64', 'fd00::abcd'));
  t.true(overlaps('10.0.0.0/8', '10.3.0.0/16'));
  t.true(overlaps('10.3.0.0/16', '10.0.0.0/8'));
  t.false(overlaps('10.0.0.0/24', '10.0.1.0/24'));
  t.false(overlaps('0.0.0.0/0', '::/0'));
  t.true(overlaps('fd00::/48', 'fd00:0:0:1::/64'));
});

test('splits a subnet into blocks', (t) => {
  t.deepEqual(splitCidr('10.0.0.0/24', 26).map(formatCidr), ['10.0.0.0/26', '10.0.0.64/26', '10.0.0.128/26', '10.0.0.192/26']);
  t.deepEqual(splitCidr('10.0.0.16/28', 28).map(formatCidr), ['10.0.0.16/28']);
  t.deepEqual(splitCidr('fd00::/120', 122).map(formatCidr), ['fd00::/122', 'fd00::40/122', 'fd00::80/122', 'fd00::c0/122']);
  t.throws(() => splitCidr('10.0.0.0/24', 20), { message: /block prefix must be from 24 to 32/ });
  t.throws(() => splitCidr('fd00::/64', 122), { message: /would make 288230376151711744 blocks \(more than 1048576\)/ });
  t.is(formatCidr(enclosingCidr('10.0.0.77', 26)), '10.0.0.64/26');
});

test('MAC validation and normalisation', (t) => {
  t.is(normalizeMac('02:BE:00:0a:0B:ff'), '02:be:00:0a:0b:ff');
  t.is(normalizeMac('02-be-00-0a-0b-ff'), '02:be:00:0a:0b:ff');
  t.is(normalizeMac('02be.000a.0bff'), '02:be:00:0a:0b:ff');
  t.is(normalizeMac('02be000a0bff'), '02:be:00:0a:0b:ff');
  for (const bad of ['02:be:00:0a:0b', '02:be:00:0a:0b:fg', '02:be-00:0a:0b:ff', '', '02:be:00:0a:0b:ff:00']) {
    t.false(isMac(bad), bad);
    t.throws(() => normalizeMac(bad, 'mac'), {
      message: new RegExp(`^mac: ${JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a valid MAC`),
    });
  }
  t.true(isUnicastMac('02:be:00:00:00:01'));
  t.false(isUnicastMac('ff:ff:ff:ff:ff:ff'));
  t.false(isUnicastMac('01:00:5e:00:00:01'));
});

test("the datapath's address words are core/net's parsing with the datapath's wording", (t) => {
  t.deepEqual(dp.parseCidr('FD00:0:0:0:0:0:0:5/64'), { ip: 'fd00::5', prefix: 64, family: 6 });
  t.throws(() => dp.parseCidr('10.1.0.300/24'), { message: /^invalid address: .*"10\.1\.0\.300" is not an IPv4 or IPv6 address/ });
  t.throws(() => dp.parseCidr('10.1.0.3/33', 'route destination'), { message: /^invalid route destination: .*prefix length "33"/ });
  t.is(dp.familyOf('fd00::1'), 6);
  t.throws(() => dp.familyOf('10.0.0.256', 'gateway'), { message: 'invalid gateway "10.0.0.256"' });
  t.is(dp.normalizeMac(' 0A:58:0A:00:00:77 '), '0a:58:0a:00:00:77');
  t.throws(() => dp.normalizeMac('zz'), { message: 'invalid MAC address "zz"' });
  t.throws(() => dp.normalizeMac('01:00:5e:00:00:01'), { message: /multicast bit set/ });
  t.is(dp.eui64LinkLocal('02:00:00:00:00:01'), 'fe80::ff:fe00:1');
  t.is(dp.solicitedNode('fd00::1:2:3'), 'ff02::1:ff02:3');
  t.deepEqual(dp.ipv6Groups('fd00::1:2:3'), [0xfd00, 0, 0, 0, 0, 1, 2, 3]);
});
