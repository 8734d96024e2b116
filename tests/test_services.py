"""The service a default-type package installs, run under the real supervisor.

Alpine 3.23's own OpenRC 0.63 boots its default runlevel with the package's init script
in it, and real s6 supervises the service. Everything runs in private mount, PID,
network, UTS and IPC namespaces (:func:`tests.rig.booted`), so no service touches the
host. The files are installed as ``package()`` installs them: the rendered APKBUILD's own
``build`` and ``package`` run in the root, over a ``$srcdir`` laid out as abuild's.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pakman import config, render
from pakman.identity import Identity
from tests import rig
from tests.servers import UnixHTTPServer, lxd_handler, serving

# A service that shows what it was started with, and an extra command that does the same.
CONFIG = """\
dependencies:
  runtime: [bash]
build:
  command: |
    mkdir -p bin
    cat > bin/app <<'APP'
    #!/bin/sh
    case "$1" in
      serve)
        echo "serving with GREETING=$GREETING"
        env > /var/lib/app/service-env
        exec sleep 3600
        ;;
      greet) echo "greeted with GREETING=$GREETING" > /var/lib/app/greeted ;;
    esac
    APP
    chmod 755 bin/app
  destinations: [bin]
run:
  name: app
  commands:
    - name: greet
      binary: app
      call: greet
  services:
    - name: web
      binary: app
      start:
        call: serve
"""
VARIABLES = {"GREETING": "hello from the installation", "DATABASE_URL": "postgres://db/app"}

INSTALL = """
set -u
cd /work && ./app.pre-install
mkdir -p /build/src /build/pkg
(cd /build/src && . /work/APKBUILD && srcdir=/build/src && build)
(cd /work && . ./APKBUILD && for s in $source; do ln -sf "/work/$s" /build/src/; done)
(cd /work && . ./APKBUILD && srcdir=/build/src pkgdir=/build/pkg && package)
cp -a /build/pkg/. /
"""
# Only the package's service in the runlevels, loopback only: nothing else of the image
# (dhcpcd, its guest agent, sysctl) is started, even inside the namespaces.
BOOT = """
rm -f /etc/runlevels/*/* /etc/init.d/dhcpcd
printf 'auto lo\\niface lo inet loopback\\n' > /etc/network/interfaces
rc-update add app default >/dev/null
openrc sysinit >/dev/null 2>&1
openrc boot >/dev/null 2>&1
step() { name=$1; shift; "$@" > "/results/$name.out" 2>&1; echo $? > "/results/$name.rc"; }
settle() { for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done; }
"""
SCENARIO = """
step boot openrc default
settle /var/lib/app/service-env
step up s6-svstat /run/openrc/s6-scan/app
step status rc-service app status
cp /var/lib/app/service-env /results/service-env
step greet rc-service app greet
cp /var/lib/app/greeted /results/greeted
rm /var/lib/app/service-env
step restart rc-service app restart
settle /var/lib/app/service-env
step restarted s6-svstat /run/openrc/s6-scan/app
step stop rc-service app stop
step down s6-svstat /run/openrc/s6-scan/app
step stopped rc-service app status
ps -o args > /results/ps
settle /var/log/app/current
cp /var/log/app/current /results/log
"""


@pytest.fixture
def lxd(tmp_path: Path) -> Iterator[Path]:
    """LXD's /dev/lxd/sock, handing out the installation's variables as v8's hosts do."""
    folder = tmp_path / "lxd"
    folder.mkdir()
    data = json.dumps({"data": {"attributes": {"variables": VARIABLES}}}).encode()
    routes = {"/1.0/config/user.INSTELLAR_INSTALLATION_DATA": (200, base64.b64encode(data))}
    with serving(UnixHTTPServer(str(folder / "sock"), lxd_handler(routes, []))):
        yield folder


def _boot(alpine_root: Path, tmp_path: Path, lxd: Path, scenario: str) -> dict[str, str]:
    rendered = tmp_path / "rendered"
    files = render.render(config.parse(CONFIG), Identity("acme/app", "1.0.0", 0))
    render.write(files, rendered)
    results = tmp_path / "results"
    results.mkdir()
    done = rig.booted(
        alpine_root,
        INSTALL + BOOT + scenario,
        {rendered: "/work", results: "/results", lxd: "/dev/lxd"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {path.name: path.read_text() for path in results.iterdir()}


def _pid(svstat: str) -> int:
    found = re.match(r"up \(pid (\d+)\)", svstat)
    assert found, svstat
    return int(found.group(1))


def test_openrc_starts_stops_and_restarts_the_service_under_s6(
    alpine_root: Path, tmp_path: Path, lxd: Path
) -> None:
    seen = _boot(alpine_root, tmp_path, lxd, SCENARIO)
    assert seen["boot.rc"].strip() == "0", seen["boot.out"]
    assert "Starting app ... [ ok ]" in seen["boot.out"], seen["boot.out"]
    first = _pid(seen["up.out"])
    assert seen["status.rc"].strip() == "0", seen["status.out"]
    assert seen["status.out"].startswith("up (pid ")
    # The service runs with the variables bin/environment read from LXD.
    started_with = dict(line.split("=", 1) for line in seen["service-env"].splitlines())
    assert {k: started_with.get(k) for k in VARIABLES} == VARIABLES
    # An extra command runs through env-exec, with the same variables.
    assert seen["greet.rc"].strip() == "0", seen["greet.out"]
    assert seen["greeted"] == f"greeted with GREETING={VARIABLES['GREETING']}\n"
    # restart: a new process; stop: down, unlinked, nothing left running.
    assert seen["restart.rc"].strip() == "0", seen["restart.out"]
    assert _pid(seen["restarted.out"]) != first
    assert seen["stop.rc"].strip() == "0", seen["stop.out"]
    assert seen["down.rc"].strip() != "0"  # no supervisor: the service is gone
    assert seen["stopped.rc"].strip() == "3", seen["stopped.out"]  # OpenRC's "stopped"
    assert "sleep 3600" not in seen["ps"]
    # The log service ran under s6 and kept the service's output on disk.
    assert f"serving with GREETING={VARIABLES['GREETING']}" in seen["log"]


def test_a_service_left_linked_is_started_again(
    alpine_root: Path, tmp_path: Path, lxd: Path
) -> None:
    """A stop cut short leaves the link in the scan directory; start must not fail on it."""
    scenario = """
step boot openrc default
settle /var/lib/app/service-env
s6-svc -d /run/openrc/s6-scan/app
rc-service app zap >/dev/null 2>&1
rm /var/lib/app/service-env
step start rc-service app start
settle /var/lib/app/service-env
step up s6-svstat /run/openrc/s6-scan/app
"""
    seen = _boot(alpine_root, tmp_path, lxd, scenario)
    assert seen["start.rc"].strip() == "0", seen["start.out"]
    _pid(seen["up.out"])
