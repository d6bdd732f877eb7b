#!/usr/bin/env bash
# Installs what courier-testkit's PostgreSQL harness needs (testkit/src/postgres.rs
# and testkit/src/patroni.rs), doing nothing that is already done:
#
#   - the PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin, Debian's
#     postgresql-15). The tests start their own servers in temp dirs; the
#     cluster Debian creates for its service is never used;
#   - Patroni with its etcd3 DCS and psycopg 3 (binary wheel, libpq included),
#     in a venv at /opt/courier-patroni, linked as /usr/local/bin/patroni.
#
# The venv lives under /opt and is built from Debian's /usr/bin/python3, not
# a python3 that happens to be first on the PATH (a pyenv under /root, say):
# when the tests run as root they run Patroni as the `postgres` user, which
# must be able to read both the venv and its interpreter.
#
# Needs: Debian/Ubuntu with apt-get (root or sudo).
set -euo pipefail

PATRONI_VERSION=4.1.5
VENV=/opt/courier-patroni
PG_BIN=/usr/lib/postgresql/15/bin
PYTHON=/usr/bin/python3

log() { printf '==> %s\n' "$*" >&2; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    "${sudo_cmd[@]}" apt-get update -qq
    apt_updated=1
  fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. PostgreSQL 15. Installing the package creates and starts a `main`
#    cluster on port 5432; the tests never use it, so stop it (it only holds
#    memory and the port) where systemd runs it.
if [ ! -x "$PG_BIN/postgres" ]; then
  log "installing postgresql-15 (server binaries in $PG_BIN)"
  apt_install postgresql-15
  if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 main .* online'; then
    log "stopping Debian's own 15/main cluster (the tests start their own servers)"
    "${sudo_cmd[@]}" pg_ctlcluster 15 main stop || true
  fi
else
  log "PostgreSQL 15: $("$PG_BIN/postgres" --version)"
fi

# 2. Patroni, unless the venv already has a working one.
patroni_works() {
  [ -x "$VENV/bin/patroni" ] && "$VENV/bin/patroni" --version 2>/dev/null | grep -q "patroni $PATRONI_VERSION"
}
if patroni_works; then
  log "Patroni: $("$VENV/bin/patroni" --version) in $VENV"
else
  if [ ! -x "$PYTHON" ]; then
    log "installing python3"
    apt_install python3
  fi
  if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    log "installing python3-venv"
    apt_install python3-venv
  fi
  log "creating a venv in $VENV and installing patroni[etcd3,psycopg3]==$PATRONI_VERSION"
  "${sudo_cmd[@]}" rm -rf "$VENV"
  "${sudo_cmd[@]}" "$PYTHON" -m venv "$VENV"
  "${sudo_cmd[@]}" "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "patroni[etcd3,psycopg3]==$PATRONI_VERSION"
  "${sudo_cmd[@]}" chmod -R a+rX "$VENV"
  patroni_works || { log "Patroni in $VENV does not run"; exit 1; }
  log "installed $("$VENV/bin/patroni" --version)"
fi

# 3. On the PATH, where the test kit looks first.
if [ "$(readlink /usr/local/bin/patroni 2>/dev/null)" != "$VENV/bin/patroni" ]; then
  log "linking /usr/local/bin/patroni -> $VENV/bin/patroni"
  "${sudo_cmd[@]}" ln -sf "$VENV/bin/patroni" /usr/local/bin/patroni
fi
