// nftables for the datapath: the table registry (tables.ts), transactions (apply.ts over libnftables, lib.ts),
// script building for a declared table (script.ts), and the features that hang chains on those tables.
export { nftApply, nftQuery, nftQueryCounter, nftTransactionCounter } from './apply.js';
export { NftError } from './lib.js';
export * from './tables.js';
export {
  applyStageChain,
  dropTable,
  ensureBaseChain,
  ensureBaseChains,
  forgetDevices,
  listStageChain,
  removeStageChainScript,
  stageChain,
  stageChainScript,
} from './script.js';
export {
  hasPortSecurity,
  installPortSecurity,
  removePortSecurity,
  removePortSecurityScript,
  type PortSecuritySpec,
} from './port-security.js';
export { installTunnelFilter, removeTunnelFilter, removeTunnelFilterScript, type Gateway } from './tunnel-filter.js';
export { PortMapError, publishedPorts, publishPorts, unpublishPorts, type PublishedPort } from './port-publishing.js';
export { dropHostMasquerade, setHostMasquerade, setRouterSnat } from './router-snat.js';
export { ensureRouterChains, routerChainsScript, setRouterChains } from './router-chains.js';
