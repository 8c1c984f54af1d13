// The six CNI commands, each a translation of one workload API call. Kernel work is the agent's; here we only
// decide what to ask for and how to say the answer in CNI's words.
import type { PortOwner } from '../../core/model/types.js';
import type { ErrorKind } from '../../core/errors.js';
import { AgentError, AgentProtocolError, AgentUnreachable, type WorkloadApi } from '../../core/workload/api.js';
import type { AttachRequest, AttachResult } from '../../core/workload/types.js';
import { checkMac, decodeConfig, type DecodedConfig, type MidonetNetConf } from './config.js';
import type { CniEnv } from './env.js';
import { CniError, Code } from './errors.js';
import { amend, fromAnyVersion, fromAttach, toVersion, type Result } from './result.js';
import { compareVersions, LATEST, SUPPORTED_VERSIONS } from './versions.js';

export type { WorkloadApi };

type Op = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';

/** The CNI code for each kind of core/errors.ts (some depend on the operation). */
const CNI_CODE_OF_KIND: Record<ErrorKind, (op: Op) => number> = {
  invalid: () => Code.invalidConfig,
  // ADD names a network: one that does not exist is a config mistake. Later calls name an attachment.
  not_found: (op) => (op === 'ADD' ? Code.invalidConfig : Code.unknownContainer),
  conflict: () => Code.conflict,
  exhausted: () => Code.addressExhausted,
  // STATUS asks exactly this ("plugin not available"); the others may succeed later.
  unavailable: (op) => (op === 'STATUS' ? Code.unavailable : Code.tryAgainLater),
  internal: () => Code.agentInternal,
};

/** Turns whatever the agent call threw into a CniError a person can act on. */
export function toCniError(e: unknown, op: Op): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof AgentUnreachable) {
    return new CniError(CNI_CODE_OF_KIND.unavailable(op), e.message);
  }
  if (e instanceof AgentProtocolError) return new CniError(Code.agentProtocol, e.message);
  if (e instanceof AgentError) {
    const field = e.body.field ? ` (field ${e.body.field})` : '';
    const msg = `${op} refused by the bees agent: ${e.body.error}${field}`;
    const code = Object.hasOwn(CNI_CODE_OF_KIND, e.body.code) ? CNI_CODE_OF_KIND[e.body.code](op) : Code.agentInternal;
    return new CniError(code, msg);
  }
  return new CniError(Code.agentInternal, `${op} failed: ${(e as Error)?.message ?? String(e)}`);
}

/** What the agent answers to one call of `op`; whatever it throws becomes the CniError for `op`. */
async function askAgent<T>(op: Op, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw toCniError(e, op);
  }
}

function requireAtLeast(cfg: DecodedConfig, op: Op, min: string): void {
  if (compareVersions(cfg.cniVersion, min) < 0) {
    throw new CniError(Code.incompatibleVersion, `${op} needs cniVersion ${min} or later; the config says ${cfg.cniVersion}`);
  }
}

function owner(cfg: DecodedConfig): PortOwner['orchestrator'] {
  return cfg.mesos ? 'mesos' : 'cni';
}

function checkAttachResult(a: unknown): asserts a is AttachResult {
  const r = a as Partial<AttachResult>;
  if (
    !r ||
    typeof r.interface?.mac !== 'string' ||
    typeof r.hostInterface?.name !== 'string' ||
    !Array.isArray(r.ips) ||
    !Array.isArray(r.routes)
  ) {
    throw new AgentProtocolError(`the agent's attach answer lacks interface/hostInterface/ips/routes: ${JSON.stringify(a).slice(0, 200)}`);
  }
}

/** Which attachment a call is about: the runtime's (container, ifname, netns) in the network the configuration names. */
function attachmentOf(env: CniEnv, cfg: DecodedConfig) {
  return {
    orchestrator: owner(cfg),
    // For pods the runtime's CNI_CONTAINERID is the sandbox id, so (sandbox id, ifname) keys the attachment.
    workloadId: env.containerId,
    ifname: env.ifname,
    netns: env.netns,
    tenant: cfg.tenant,
    network: cfg.network,
  };
}

export async function cmdAdd(env: CniEnv, conf: MidonetNetConf, api: WorkloadApi): Promise<Record<string, unknown>> {
  const cfg = decodeConfig(conf);
  const prev = cfg.prevResult !== undefined ? fromAnyVersion(cfg.prevResult) : undefined;
  const ips = [...cfg.ips, ...(env.args.ips ?? [])];
  const mac = cfg.mac ?? (env.args.mac ? checkMac('CNI_ARGS MAC', env.args.mac) : undefined);
  const labels: Record<string, string> = { ...cfg.labels };
  if (env.args.podNamespace) labels['k8s.pod.namespace'] = env.args.podNamespace;
  if (env.args.podName) labels['k8s.pod.name'] = env.args.podName;
  if (env.args.podUid) labels['k8s.pod.uid'] = env.args.podUid;
  if (env.args.infraContainerId) labels['k8s.pod.infraContainerId'] = env.args.infraContainerId;
  const req: AttachRequest = { ...attachmentOf(env, cfg), labels };
  if (cfg.create) req.create = cfg.create;
  if (ips.length) req.ips = [...new Set(ips)];
  if (mac) req.mac = mac;
  if (cfg.portMappings?.length) req.portMappings = cfg.portMappings;
  if (cfg.bandwidth && Object.keys(cfg.bandwidth).length) req.bandwidth = cfg.bandwidth;
  const attached = await askAgent('ADD', async () => {
    const a: unknown = await api.attach(req);
    checkAttachResult(a);
    return a;
  });
  const ours: Result = fromAttach(attached, env.ifname, env.netns);
  if (!ours.dns && cfg.dns) ours.dns = cfg.dns;
  else if (ours.dns && cfg.dns) ours.dns = { ...ours.dns, ...cfg.dns };
  return toVersion(amend(prev, ours), cfg.cniVersion);
}

export async function cmdDel(env: CniEnv, conf: MidonetNetConf, api: WorkloadApi): Promise<void> {
  const cfg = decodeConfig(conf);
  try {
    // No netns when the runtime gives none (the container died with its namespace): the agent frees what it holds.
    const { netns, ...which } = attachmentOf(env, cfg);
    await api.detach({ ...which, ...(netns ? { netns } : {}) });
  } catch (e) {
    // DEL must succeed when there is nothing left to delete (repeated DEL, ADD that never happened).
    if (e instanceof AgentError && e.body.code === 'not_found') return;
    throw toCniError(e, 'DEL');
  }
}

export async function cmdCheck(env: CniEnv, conf: MidonetNetConf, api: WorkloadApi): Promise<void> {
  const cfg = decodeConfig(conf);
  requireAtLeast(cfg, 'CHECK', '0.4.0');
  if (cfg.prevResult === undefined) throw new CniError(Code.invalidConfig, 'CHECK needs prevResult (the result of ADD); none was given');
  const prev = fromAnyVersion(cfg.prevResult);
  const idx = prev.interfaces.findIndex((i) => i.name === env.ifname && i.sandbox === env.netns);
  const problems: string[] = [];
  if (idx < 0) problems.push(`prevResult has no interface ${env.ifname} in ${env.netns}`);
  else if (!prev.ips.some((ip) => ip.interface === idx)) problems.push(`prevResult has no address on ${env.ifname}`);
  const agentProblems = await askAgent('CHECK', async () => {
    const r = await api.check(attachmentOf(env, cfg));
    if (r.ok) return [];
    return Array.isArray(r.problems) && r.problems.length ? r.problems : ['the agent reports the attachment is not in order'];
  });
  problems.push(...agentProblems);
  if (problems.length) throw new CniError(Code.checkFailed, `CHECK of ${env.containerId}/${env.ifname} failed: ${problems.join('; ')}`);
}

interface Attachment {
  containerID: string;
  ifname: string;
}

function validAttachments(conf: MidonetNetConf): Attachment[] {
  // libcni sends both keys: the spec-v1.1.0 tag named it cni.dev/attachments, later fixed to valid-attachments.
  const keys = ['cni.dev/valid-attachments', 'cni.dev/attachments'].filter((k) => k in conf);
  if (keys.length === 0)
    throw new CniError(Code.invalidConfig, 'GC needs cni.dev/valid-attachments (the attachments still in use); none was given');
  const seen = new Map<string, Attachment>();
  for (const k of keys) {
    const list = conf[k];
    if (list === null) continue; // libcni marshals an empty Go slice as null: nothing is valid
    if (!Array.isArray(list)) throw new CniError(Code.invalidConfig, `invalid config: ${k} must be a list of {containerID, ifname}`);
    list.forEach((a: unknown, i) => {
      const x = a as Partial<Attachment>;
      if (typeof x?.containerID !== 'string' || typeof x.ifname !== 'string')
        throw new CniError(Code.invalidConfig, `invalid config: ${k}[${i}]=${JSON.stringify(a)}: needs containerID and ifname`);
      seen.set(`${x.containerID}\0${x.ifname}`, { containerID: x.containerID, ifname: x.ifname });
    });
  }
  return [...seen.values()];
}

export async function cmdGc(_env: CniEnv, conf: MidonetNetConf, api: WorkloadApi): Promise<void> {
  const cfg = decodeConfig(conf);
  requireAtLeast(cfg, 'GC', '1.1.0');
  const valid = validAttachments(conf).map((a) => ({ workloadId: a.containerID, ifname: a.ifname }));
  await askAgent('GC', () => api.gc({ orchestrator: 'cni', valid, tenant: cfg.tenant, network: cfg.network }));
}

export async function cmdStatus(_env: CniEnv, conf: MidonetNetConf, api: WorkloadApi): Promise<void> {
  const cfg = decodeConfig(conf);
  requireAtLeast(cfg, 'STATUS', '1.1.0');
  const s = await askAgent('STATUS', () => api.status());
  if (!s.ready) throw new CniError(Code.unavailable, `the bees agent is not ready for ADD: ${s.reason ?? 'no reason given'}`);
}

export function cmdVersion(conf: MidonetNetConf | undefined): Record<string, unknown> {
  const asked = typeof conf?.cniVersion === 'string' && conf.cniVersion ? conf.cniVersion : LATEST;
  return { cniVersion: asked, supportedVersions: [...SUPPORTED_VERSIONS] };
}
