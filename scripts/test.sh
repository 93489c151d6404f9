#!/usr/bin/env bash
# Install scim-bridge with its test tools into .venv and run the whole test suite.
# The suite starts what it needs itself: a redis-server on a free port, a Celery worker,
# gunicorn, Prometheus, OpenLDAP's slapd. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SCIM_BRIDGE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# tests/test_prometheus.py runs a real Prometheus: Debian's package, installed here when it is
# missing and apt-get can be used (root); otherwise that test is skipped and says why.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing Debian's prometheus package (for tests/test_prometheus.py)" >&2
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
      >/dev/null || echo "scripts/test.sh: could not install prometheus; its test will be skipped" >&2
  else
    echo "scripts/test.sh: prometheus is not installed and apt-get cannot be used here;" \
      "tests/test_prometheus.py will be skipped" >&2
  fi
fi
# The ldap adapter's tests run a real OpenLDAP slapd (tests/adapters/directory.py): Debian's slapd
# and ldap-utils packages, installed here when missing and apt-get can be used (root).
if [ ! -x /usr/sbin/slapd ] || [ ! -x /usr/sbin/slapadd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing Debian's slapd and ldap-utils packages (for the ldap adapter's tests)" >&2
    apt-get update -qq >/dev/null || true
    # slapd's own post-install would configure a system directory: only the binaries are used.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slapd ldap-utils \
      >/dev/null || echo "scripts/test.sh: could not install slapd; the ldap tests will be skipped" >&2
  else
    echo "scripts/test.sh: slapd is not installed and apt-get cannot be used here;" \
      "the ldap adapter's tests will be skipped" >&2
  fi
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
exec "$VENV/bin/python" -m pytest "$@"
