#!/bin/sh
# The official image builds Redis with protected mode off (the network is the boundary);
# Debian's is on, so the stand-in turns it off the same way for any redis-server command.
set -e
if [ "${1#-}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
