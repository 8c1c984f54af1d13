#!/bin/sh
# Removes what up.sh made. NOT RUN by the project's CI.
set -eu
CLUSTER=${CLUSTER:-bees}
kind delete cluster --name "$CLUSTER"
docker rm -f "$CLUSTER-zk" >/dev/null 2>&1 || true
rm -f "$(dirname "$0")/bees.tar"
