#!/bin/sh
# The smoke test on a cluster made by up.sh: two pods on different nodes, a Service in front of the server, then
# a NetworkPolicy that admits only labelled clients. Each step prints PASS or FAIL; exit 1 on any FAIL.
# NOT RUN by the project's CI (no kind there): see README.md.
set -eu
NS=${NS:-bees-smoke}
AGNHOST=${AGNHOST:-registry.k8s.io/e2e-test-images/agnhost:2.53}
failed=0
check() { # check "what" expected(0 = reachable, 1 = not) command...
  what=$1 want=$2
  shift 2
  if "$@" >/dev/null 2>&1; then got=0; else got=1; fi
  if [ "$got" = "$want" ]; then echo "PASS $what"; else echo "FAIL $what"; failed=1; fi
}
connect() { # connect FROM-POD HOST:PORT
  kubectl -n "$NS" exec "$1" -- /agnhost connect "$2" --timeout=3s --protocol=tcp
}

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
WORKERS=$(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[*].metadata.name}')
set -- $WORKERS
N1=$1 N2=${2:-$1}
kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeName: $N1
  containers:
    - name: c
      image: $AGNHOST
      args: [netexec, --http-port=8080]
      ports: [{name: http, containerPort: 8080}]
      readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: $N2
  containers: [{name: c, image: $AGNHOST, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: stranger, labels: {app: stranger}}
spec:
  nodeName: $N2
  containers: [{name: c, image: $AGNHOST, args: [pause]}]
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
kubectl -n "$NS" wait --for=condition=Ready pod/server pod/client pod/stranger --timeout=180s
SERVER_IP=$(kubectl -n "$NS" get pod server -o jsonpath='{.status.podIP}')
CLUSTER_IP=$(kubectl -n "$NS" get service server -o jsonpath='{.spec.clusterIP}')

check "client -> server pod, across nodes" 0 connect client "$SERVER_IP:8080"
check "client -> server through the Service ClusterIP" 0 connect client "$CLUSTER_IP:80"
check "stranger -> server through the Service ClusterIP" 0 connect stranger "$CLUSTER_IP:80"
check "kubelet's readiness probe kept the server Ready" 0 kubectl -n "$NS" wait --for=condition=Ready pod/server --timeout=5s

# Only app=client may reach the server; the client may talk only to the server (egress by selector: through the
# ClusterIP too, since policy applies after the Service's DNAT).
kubectl -n "$NS" apply -f - <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-from-client}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-to-server}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: server}}}]}]
YAML
sleep 2
check "client -> server pod under policy" 0 connect client "$SERVER_IP:8080"
check "client -> server ClusterIP under ingress and egress policy" 0 connect client "$CLUSTER_IP:80"
check "stranger -> server pod denied" 1 connect stranger "$SERVER_IP:8080"
check "stranger -> server ClusterIP denied" 1 connect stranger "$CLUSTER_IP:80"
check "kubelet's probes still reach the isolated server (node-local traffic)" 0 \
  sh -c "sleep 15; kubectl -n '$NS' wait --for=condition=Ready pod/server --timeout=5s"

[ -n "${KEEP:-}" ] || kubectl delete namespace "$NS" --wait=false
exit $failed
