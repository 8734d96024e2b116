#!/usr/bin/env bash
# Sets up a fresh machine and runs every check: ruff, mypy --strict and pytest.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real tools the tests use: qemu-img and e2fsprogs for the Alpine root, shellcheck, zip, git,
# bash, curl and jq to run the rendered environment script, and s6 and execline to run the
# rendered service under the real supervisor.
packages=(qemu-utils e2fsprogs shellcheck zip git bash curl jq s6 execline)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi

# Go tools, pinned and built once per machine into a folder that later runs reuse (a fresh
# machine builds versitygw, the real S3 server of the tests, in about 1.5 minutes).
# MinIO would be the first choice, but the Go module proxy does not serve it.
VERSITYGW_VERSION=v1.8.0
tools="${PAKMAN_TOOLS:-$HOME/.cache/pakman-tools}"
versitygw_dir="$tools/versitygw-$VERSITYGW_VERSION"
if [ ! -x "$versitygw_dir/versitygw" ]; then
  if command -v go >/dev/null; then
    echo "== building versitygw $VERSITYGW_VERSION into $versitygw_dir"
    GOBIN="$versitygw_dir" GOFLAGS=-buildvcs=false \
      go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  else
    echo "warning: go is not installed: the real S3 server (versitygw) cannot be built" >&2
  fi
fi
export PATH="$versitygw_dir:$PATH"

python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check pip==26.3
.venv/bin/python -m pip install -q --disable-pip-version-check -c scripts/constraints.txt \
  -e ".[test]" -e ./ci -e ./ci/tests
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check pakman tests devkit ci/src ci/tests/src benchmarks
ruff format --check pakman tests devkit ci/src ci/tests/src benchmarks
echo "== mypy --strict"
mypy pakman tests devkit ci/src ci/tests/src benchmarks
echo "== import contracts"
lint-imports
echo "== pytest"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
