#!/bin/sh
# The official envoyproxy/envoy entrypoint's behaviour, with setpriv in place of su-exec.
set -e
loglevel="${loglevel:-}"
USERID=$(id -u)
if [ "${1#-}" != "$1" ]; then
  set -- envoy "$@"
fi
if [ "$1" = 'envoy' ] && [ -n "$loglevel" ]; then
  set -- "$@" --log-level "$loglevel"
fi
if [ "$ENVOY_UID" != "0" ] && [ "$USERID" = 0 ]; then
  if [ -n "$ENVOY_UID" ]; then usermod -u "$ENVOY_UID" envoy; fi
  if [ -n "$ENVOY_GID" ]; then groupmod -g "$ENVOY_GID" envoy; fi
  chown envoy:envoy /dev/stdout /dev/stderr
  exec setpriv --reuid=envoy --regid=envoy --init-groups "$@"
fi
exec "$@"
