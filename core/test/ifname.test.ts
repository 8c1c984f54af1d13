import test from 'ava';
import { ifnameProblem, validIfname } from '../net/ifname.js';

test('interface names: the kernel rules (dev_valid_name), counted in bytes', (t) => {
  for (const ok of ['eth0', 'net1', 'a', 'x'.repeat(15), 'eth0.100', 'veth-a_b@c', 'ééééééé']) t.true(validIfname(ok), ok);
  const refused: [unknown, RegExp][] = [
    ['', /empty/],
    ['x'.repeat(16), /16 bytes long/],
    ['éééééééé', /16 bytes long/],
    ['.', /reserved/],
    ['..', /reserved/],
    ['eth:0', /contains ":"/],
    ['eth/0', /contains "\/"/],
    ['eth 0', /contains " "/],
    ['eth\t0', /contains "\\t"/],
    ['eth\n', /contains "\\n"/],
    ['e\0', /contains "\\u0000"/],
    [7, /expected a string/],
    [undefined, /expected a string/],
  ];
  for (const [name, why] of refused) {
    t.false(validIfname(name), String(name));
    t.regex(ifnameProblem(name) ?? '', why, JSON.stringify(name));
  }
});
