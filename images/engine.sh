# Sourced by the image scripts: picks the container engine and exports ENGINE.
# podman when present, else a docker whose daemon answers; with neither, podman (and
# runc, debootstrap, podman-compose) from Debian when we are root on apt.
# shellcheck shell=bash

image_packages=(podman runc debootstrap podman-compose uidmap fuse-overlayfs slirp4netns
                netavark aardvark-dns catatonit iptables)

if command -v podman >/dev/null 2>&1; then
  ENGINE=podman
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "images: installing podman from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${image_packages[@]}" >/dev/null
  ENGINE=podman
else
  echo "images: neither podman nor a running docker; install podman (apt-get install podman runc)" >&2
  exit 1
fi
export ENGINE

# podman's defaults need two things some hosts (containers without CAP_SYS_RESOURCE, a
# cgroup v1 + v2 hybrid) refuse: rlimits of a million files, and crun. When a trial run
# of IMAGE fails with the defaults and succeeds with images/podman.conf, that file is
# used from then on (exported for podman-compose and the tests too).
engine_runs() {
  local image=$1
  [ "$ENGINE" = podman ] || return 0
  [ -z "${CONTAINERS_CONF:-}" ] || return 0
  if podman run --rm --network=none "$image" true >/dev/null 2>&1; then
    return 0
  fi
  if CONTAINERS_CONF=$images_dir/podman.conf podman run --rm --network=none "$image" true; then
    echo "images: podman runs with images/podman.conf (rlimits and runc for this host)"
    export CONTAINERS_CONF=$images_dir/podman.conf
    return 0
  fi
  echo "images: podman cannot run containers here (see above)" >&2
  return 1
}
images_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
