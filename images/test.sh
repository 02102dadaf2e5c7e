#!/usr/bin/env bash
# `make image-test` (after `make image`): boots the built images and proves them
# (tests/images), then brings docker-compose.yml up the way a user would.
set -euo pipefail
cd "$(dirname "$0")/.."
source images/engine.sh
if [ "$ENGINE" != podman ]; then
  echo "images: the image tests run the chart's pods as podman pods: install podman" >&2
  exit 1
fi
engine_runs "${APP_IMAGE:-localhost/amrutam:dev}"
start=$SECONDS
pytest -m images -s tests/images "$@"
echo "images: image tests took $((SECONDS - start)) s"
