// Policy routing rules (RTM_*RULE, linux/fib_rules.h): read, as `ip rule show` lists them, without a process.
import { addressFamily, parseAttrs, readString } from './attributes.js';
import type { NetlinkSocket } from './socket.js';

const RTM_NEWRULE = 32;
const RTM_GETRULE = 34;
const FRA_IIFNAME = 3;
const FRA_PRIORITY = 6;
const FRA_TABLE = 15;

export interface Rule {
  priority: number;
  /** The input interface it matches (`iif`), if any. */
  iif?: string;
  table: number;
}

/** The policy rules of one address family. */
export async function listRules(s: NetlinkSocket, family: 4 | 6): Promise<Rule[]> {
  const hdr = Buffer.alloc(12); // struct fib_rule_hdr
  hdr[0] = addressFamily(family);
  const out: Rule[] = [];
  for (const r of await s.dump(RTM_GETRULE, hdr, `list IPv${family} policy rules`)) {
    if (r.type !== RTM_NEWRULE) continue;
    const a = parseAttrs(r.body, 12);
    const iif = a.get(FRA_IIFNAME);
    out.push({
      priority: a.get(FRA_PRIORITY)?.readUInt32LE(0) ?? 0,
      ...(iif ? { iif: readString(iif) } : {}),
      table: a.get(FRA_TABLE)?.readUInt32LE(0) ?? r.body[4]!,
    });
  }
  return out;
}
