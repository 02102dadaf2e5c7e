#!/usr/bin/env bash
# `make image`: the application image and the PostgreSQL image, from the Dockerfile.
#
# Base images come from their registries. A machine that reaches no container registry
# gets local STAND-INS instead, built from Debian's mirror (debootstrap) and tagged with
# the names the Dockerfile and docker-compose.yml use: see images/README.md for what
# they are and what they may hide.
#
# Environment: APP_IMAGE, POSTGRES_IMAGE (tags to build), EXTRA_CA_CERTS (PEM files a
# TLS-intercepting proxy needs for HTTPS inside the build; passed as a build argument).
set -euo pipefail
cd "$(dirname "$0")/.."
source images/engine.sh

APP_IMAGE=${APP_IMAGE:-localhost/amrutam:dev}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-localhost/amrutam-postgresql:dev}
BASE=localhost/amrutam-stand-in/bookworm-base:latest
work=${TMPDIR:-/tmp}/amrutam-images
mkdir -p "$work"

qualified() {  # docker's short names, spelled out
  case $1 in
    */*/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}

exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
# podman would otherwise try a registry for a base it has under its full name
local_only=(); [ "$ENGINE" = podman ] && local_only=(--pull=never)

# The images the Dockerfile starts from or copies from, and the services compose adds.
bases() {
  { sed -nE 's/^FROM +([^ ]+).*/\1/p; s/.*--from=([^ ]+).*/\1/p' Dockerfile
    sed -nE 's/^ +image: +([^ ]+:[^ ]+) *$/\1/p' docker-compose.yml
  } | grep -E '[:/]' | grep -v '^amrutam' | sort -u
}

debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

base_image() {  # Debian bookworm, minimal, like the official images' debian:bookworm-slim
  exists "$BASE" && return 0
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  local root=$work/rootfs mirror
  mirror=$(debian_mirror)
  rm -rf "$root"
  echo "images: debootstrap bookworm from $mirror (stand-in base)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # As the official images: apt keeps no downloaded packages or caches in a layer,
  # and (slim) installs no documentation, manuals or translations.
  cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' \
    > "$root/etc/dpkg/dpkg.cfg.d/slim"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/*
  tar -C "$root" -c . | "$ENGINE" import --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
}

uv_binaries() {  # the uv release's binaries, from its wheel on PyPI
  local version=$1 dir=$2 python
  python=$(command -v python3)
  [ -x .tools/bin/pip ] && python=.tools/bin/python
  "$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform "manylinux_2_17_$(uname -m)" --python-version 3.11 -d "$work/uv" "uv==$version"
  "$python" - "$work/uv" "$dir" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.endswith(("/scripts/uv", "/scripts/uvx")):
            target = pathlib.Path(sys.argv[2]) / pathlib.Path(name).name
            target.write_bytes(archive.read(name))
            target.chmod(0o755)
PY
}

stand_in() {
  local name=$1 kind context
  kind=${name##*/}; kind=${kind%%:*}
  context=images/stand-ins/$kind
  [ -d "$context" ] || { echo "images: no stand-in for $name" >&2; exit 1; }
  base_image
  engine_runs "$BASE"
  if [ "$kind" = uv ]; then
    context=$work/uv-context
    rm -rf "$context" && mkdir -p "$context"
    cp images/stand-ins/uv/Containerfile "$context/"
    uv_binaries "${name##*:}" "$context"
  fi
  echo "images: building STAND-IN $name"
  "$ENGINE" build --quiet "${local_only[@]}" -f "$context/Containerfile" -t "$name" "$context" >/dev/null
}

is_stand_in() {
  [ -n "$("$ENGINE" image inspect --format '{{index .Config.Labels "io.amrutam.stand-in"}}' "$1")" ]
}

for name in $(bases); do
  name=$(qualified "$name")
  if exists "$name"; then
    # a stand-in is rebuilt (from its cached layers) so that edits to it take effect
    is_stand_in "$name" && stand_in "$name"
    continue
  fi
  if timeout 120 "$ENGINE" pull --quiet "$name" >/dev/null 2>&1; then
    echo "images: pulled $name"
  else
    stand_in "$name"
  fi
done
engine_runs "$(qualified "$(sed -nE 's/^FROM +([^ ]+).*/\1/p' Dockerfile | head -1)")"

ca_bundle=""
for file in ${EXTRA_CA_CERTS:-}; do
  ca_bundle+="$(cat "$file")"$'\n'
done
build() {
  "$ENGINE" build "${local_only[@]}" --build-arg "EXTRA_CA_CERTS=$ca_bundle" "$@" .
}
start=$SECONDS
build -t "$APP_IMAGE"
build --target postgresql -t "$POSTGRES_IMAGE"
echo "images: built in $((SECONDS - start)) s"
for image in "$APP_IMAGE" "$POSTGRES_IMAGE"; do
  "$ENGINE" image inspect --format "{{.Size}}" "$image" \
    | awk -v name="$image" '{printf "images: %s %.0f MB\n", name, $1 / 1e6}'
done
