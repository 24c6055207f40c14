#!/bin/sh
# The official redis image's entrypoint behaviour: options alone mean redis-server; drop root.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = 'redis-server' ]; then
  # official images compile protected mode off; Debian's binary needs the flag
  set -- "$@" --protected-mode no
  if [ "$(id -u)" = '0' ]; then
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
