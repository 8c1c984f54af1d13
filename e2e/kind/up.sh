#!/bin/sh
# Creates the kind cluster, a ZooKeeper for the store, loads the image built from this checkout and installs the
# chart with kube-proxy replaced. NOT RUN by the project's CI (no kind, Docker Hub or registry there): a recipe for
# machines with Docker, kind, kubectl and helm. Run from the repository root: sh e2e/kind/up.sh
set -eu
CLUSTER=${CLUSTER:-bees}
ZK_IMAGE=${ZK_IMAGE:-docker.io/library/zookeeper:3.8}
HERE=$(dirname "$0")
VERSION=$(node -p "require('./package.json').version")
IMAGE=docker.io/midonet/bees:$VERSION

# 1. The image: the project's own builder (an OCI tarball with a Docker manifest), no registry.
npm run build
npm run build:cni
node dist/app/main.js image build --out "$HERE/bees.tar" --ref "$IMAGE"

# 2. The cluster. Nodes stay NotReady until the bees agents write their CNI config.
kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml"
kind load image-archive "$HERE/bees.tar" --name "$CLUSTER"

# 3. The store: with kube-proxy gone nothing may depend on a ClusterIP, so ZooKeeper runs beside the nodes on
#    kind's Docker network and agents and controller reach it by address.
docker rm -f "$CLUSTER-zk" >/dev/null 2>&1 || true
docker run -d --name "$CLUSTER-zk" --network kind "$ZK_IMAGE"
ZK_IP=$(docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' "$CLUSTER-zk")
# The API server's real address (kubernetes.md §1.4: no ClusterIP for what the network itself needs).
API_IP=$(docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' "$CLUSTER-control-plane")

# 4. The chart, kube-proxy replaced. TENANCY=namespace tries the per-namespace tenant mapping instead;
#    CNI_VERSION=1.0.0 writes the conflist in CNI 1.0.0 for a node containerd that cannot read 1.1.0.
#    ${CNI_VERSION:+…} is left unquoted on purpose: absent, it adds no argument at all.
helm install midonet-bees charts/midonet-bees --namespace kube-system \
  --set image.tag="$VERSION" --set image.pullPolicy=Never \
  --set store.url="zk://$ZK_IP:2181/bees" \
  --set kubeProxyReplacement=true \
  --set k8sServiceHost="$API_IP" --set k8sServicePort=6443 \
  --set tenantMapping.mode="${TENANCY:-flat}" \
  ${CNI_VERSION:+--set agent.cniVersion="$CNI_VERSION"}

kubectl -n kube-system rollout status daemonset/bees-agent --timeout=300s
kubectl -n kube-system rollout status deployment/bees-controller --timeout=300s
kubectl wait --for=condition=Ready nodes --all --timeout=300s
kubectl get nodes -o wide
