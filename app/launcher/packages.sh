# Debian packages for the `./bees` launcher (sourced by it; tested by app/test/launcher.test.ts).
# The launcher installs what is missing. Services that installing a package starts are not used (bees starts its
# own ZooKeeper, and tests their own dockerd/containerd), so they are disabled again: only those of packages this
# run just installed, and never one that was running or enabled before: a machine's own Docker is left alone.

# The systemd units a package brings that bees does not want running; none for most packages.
services_of_package() {
  case "$1" in
    zookeeper) echo zookeeper ;;
    docker.io) echo docker docker.socket ;;
    containerd) echo containerd ;;
  esac
}

# services_to_disable PKG... -- UNIT...: the units to disable after installing PKG... (the packages just installed),
# given the UNITs that were active or enabled before the install. One per line.
services_to_disable() {
  local just=() in_use=() p u s skip
  while (($#)) && [ "$1" != -- ]; do just+=("$1"); shift; done
  (($#)) && shift
  in_use=("$@")
  for p in "${just[@]}"; do
    for s in $(services_of_package "$p"); do
      skip=
      for u in "${in_use[@]}"; do [ "$u" = "$s" ] && skip=1; done
      [ -z "$skip" ] && echo "$s"
    done
  done
  return 0
}

# services_in_use PKG...: which units of these packages are active or enabled now.
services_in_use() {
  local p s
  for p in "$@"; do
    for s in $(services_of_package "$p"); do
      if systemctl is-active --quiet "$s" 2>/dev/null || systemctl is-enabled --quiet "$s" 2>/dev/null; then echo "$s"; fi
    done
  done
  return 0
}

ensure_packages() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" -ne 0 ]; then say "missing packages: ${missing[*]} (run as root to install them)"; exit 1; fi
  local in_use=() off=()
  mapfile -t in_use < <(services_in_use "${missing[@]}")
  say "installing ${missing[*]} (once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  mapfile -t off < <(services_to_disable "${missing[@]}" -- "${in_use[@]}")
  if ((${#off[@]})); then
    say "disabling ${off[*]} (just installed; bees starts what it needs itself)"
    systemctl disable --now "${off[@]}" >/dev/null 2>&1 || true
  fi
}
