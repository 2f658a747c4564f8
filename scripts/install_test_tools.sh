#!/usr/bin/env bash
# Install the Debian packages that tests drive: chromium (the dashboard rendered in a headless
# browser), docker-compose (the compose file validated) and pgbouncer (a study run through it in
# transaction mode). Without them those tests skip, and a skipped test proves nothing, so CI
# (.ci/run) installs them first.
# Best effort: without root or apt-get it says what is missing and leaves the rest to the tests.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_test_tools: not root or no apt-get; missing ${missing[*]} (their tests will skip)" >&2
  exit 0
fi
echo "install_test_tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "install_test_tools: apt-get could not install ${missing[*]} (their tests will skip)" >&2
fi
exit 0
