// Errors reported where kubectl shows them: a core/v1 Event on the object (`kubectl describe` lists it), as
// kube-controller-manager's recorder does. The same message for the same object is sent once per controller run.
import * as k8s from '@kubernetes/client-node';
import type { K8sObject } from './objects.js';

export const COMPONENT = 'midonet-bees-controller';

export class EventRecorder {
  private readonly core: k8s.CoreV1Api;
  private readonly sent = new Set<string>();

  constructor(
    kc: k8s.KubeConfig,
    private readonly host: string,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.core = kc.makeApiClient(k8s.CoreV1Api);
  }

  async warn(obj: K8sObject, kind: string, apiVersion: string, reason: string, message: string): Promise<void> {
    const ns = obj.metadata.namespace ?? 'default';
    const key = `${kind}/${ns}/${obj.metadata.name}/${obj.metadata.uid ?? ''}/${reason}/${message}`;
    if (this.sent.has(key)) return;
    this.sent.add(key);
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace: ns,
        body: {
          metadata: { generateName: `${obj.metadata.name}.`, namespace: ns },
          involvedObject: {
            kind,
            apiVersion,
            namespace: ns,
            name: obj.metadata.name,
            ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
          },
          reason,
          message,
          type: 'Warning',
          source: { component: COMPONENT, host: this.host },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          reportingComponent: COMPONENT,
          reportingInstance: this.host,
        },
      });
    } catch (e) {
      this.sent.delete(key); // try again on the next pass
      this.log(`event for ${kind} ${ns}/${obj.metadata.name} not recorded: ${(e as Error).message}`);
    }
  }
}
