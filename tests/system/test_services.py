"""The service a default-type package installs, run under the real supervisor.

Alpine 3.23's own OpenRC 0.63 boots its default runlevel with the package's init script
in it, and real s6 supervises the service. Everything runs in private mount, PID,
network, UTS and IPC namespaces (:func:`devkit.alpine.booted`), so no service touches the
host. The files are installed as ``package()`` installs them: the rendered APKBUILD's own
``build`` and ``package`` run in the root, over a ``$srcdir`` laid out as abuild's.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pakman import config, render
from pakman.identity import Identity
from tests.support import rig
from tests.support.http import UnixHTTPServer, lxd_handler, serving

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


def _boot(
    alpine_root: Path, tmp_path: Path, lxd: Path, scenario: str, *, text: str = CONFIG
) -> dict[str, str]:
    rendered = tmp_path / "rendered"
    if not rendered.exists():
        files = render.render(config.parse(text), Identity("acme/app", "1.0.0", 0))
        render.write(files, rendered)
    results = Path(tempfile.mkdtemp(prefix="results-", dir=tmp_path))
    done = rig.booted(
        alpine_root,
        INSTALL + scenario,
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
    seen = _boot(alpine_root, tmp_path, lxd, BOOT + SCENARIO)
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
    seen = _boot(alpine_root, tmp_path, lxd, BOOT + scenario)
    assert seen["start.rc"].strip() == "0", seen["start.out"]
    _pid(seen["up.out"])


# v8's caddy fixture in small: a default-type config with its own ``package:`` that
# installs the rendered service files itself (and no finish script), the binary in /usr/sbin.
OWN_PACKAGE = """\
dependencies:
  runtime: [bash, s6, jq]
build:
  command: |
    mkdir -p bin
    cat > bin/app <<'APP'
    #!/bin/sh
    echo "serving with GREETING=$GREETING"
    exec sleep 3600
    APP
    chmod 755 bin/app
run:
  name: app
  services:
    - name: server
      binary: app
      path: /usr/sbin
      start:
        call: serve
package: |
  cd "$srcdir"
  install -Dm755 bin/app "$pkgdir"/usr/sbin/app
  install -Dm755 "$srcdir"/$pkgname.initd "$pkgdir"/etc/init.d/$pkgname
  install -Dm755 "$srcdir"/$pkgname.run "$pkgdir"/var/lib/$pkgname/service/run
  install -Dm755 "$srcdir"/$pkgname.log "$pkgdir"/var/lib/$pkgname/service/log/run
  install -Dm755 "$srcdir"/$pkgname.environment "$pkgdir"/var/lib/$pkgname/bin/environment
  install -Dm755 "$srcdir"/$pkgname.env-exec "$pkgdir"/var/lib/$pkgname/bin/env-exec
"""

# A cold host: OpenRC's sysinit and boot runlevels, no s6-svscan yet, and nothing in the
# default runlevel, so the app's own `rc-service app start` brings s6-svscan up. A slow
# host's s6-svscan is a second late to get ready (Alpine's s6-svscan service starts it in
# the background and returns at once), made deterministic by a wrapper that sleeps first.
COLD = """
rm -f /etc/runlevels/*/* /etc/init.d/dhcpcd
printf 'auto lo\\niface lo inet loopback\\n' > /etc/network/interfaces
if [ "$SLOW_SCAN" = 1 ]; then
  mv /usr/bin/s6-svscan /usr/bin/s6-svscan.real
  printf '#!/bin/sh\\nsleep 1\\nexec /usr/bin/s6-svscan.real "$@"\\n' > /usr/bin/s6-svscan
  chmod 755 /usr/bin/s6-svscan
fi
openrc sysinit >/dev/null 2>&1
openrc boot >/dev/null 2>&1
step() { name=$1; shift; "$@" > "/results/$name.out" 2>&1; echo $? > "/results/$name.rc"; }
S=/var/lib/app/service
state() {
  { s6-svok $S && echo supervised; s6-svok $S/log && echo log-supervised
    s6-svstat -o up,pid $S 2>/dev/null; } > "/results/$1.state"
}
s6-svscanctl /run/openrc/s6-scan 2>/dev/null; echo $? > /results/cold.rc
step start rc-service app start; state start
step status rc-service app status
step stop rc-service app stop; state stop
step start2 rc-service app start; state start2
# On a slow host the log's supervisor may outlive its "exiting" event; here it does by a
# second, on the first restart. A lock on its supervise/lock, taken the moment the
# supervisor lets go of it, is what s6-svok and s6-svlink see as a supervisor still running.
slow_log() {
  s6-setlock $S/log/supervise/lock sleep 1 & holder=$!
  # Holding the lock or waiting for it: either way, in line before the restart.
  until grep -q " $holder " /proc/locks || ! kill -0 $holder; do sleep 0.01; done
}
for i in 1 2 3 4 5; do
  if [ "$SLOW_LOG" = 1 ] && [ $i = 1 ]; then slow_log; fi
  step restart$i rc-service app restart; state restart$i
done
exit 0
"""
COLD_STEPS = ["start", "status", "stop", "start2", *(f"restart{i}" for i in range(1, 6))]
BOOTS = 20  # per config: a quarter at plain speed, the others slow in one way or both


def _cold_boot_failures(seen: dict[str, str]) -> list[str]:
    """What went wrong in one cold boot: a step's exit code or the supervisors' state after."""
    failures = []
    if seen["cold.rc"].strip() == "0":
        failures.append("s6-svscan was running before the app's start")
    pids: list[str] = []
    for step in COLD_STEPS:
        if seen[f"{step}.rc"].strip() != "0":
            said = " | ".join(line.strip() for line in seen[f"{step}.out"].splitlines())
            failures.append(f"{step} exit {seen[f'{step}.rc'].strip()}: {said}")
            continue
        if step == "status":
            continue
        state = seen[f"{step}.state"].split()
        if step == "stop":
            if state:  # no supervisor left, of the service or of its log
                failures.append(f"after stop: {' '.join(state)}")
            continue
        if state[:3] != ["supervised", "log-supervised", "true"] or state[-1] in pids:
            failures.append(f"after {step}: {' '.join(state)} (earlier pids {pids})")
        pids.append(state[-1] if state else "")
    return failures


@pytest.mark.parametrize("text", [CONFIG, OWN_PACKAGE], ids=["default", "own-package"])
def test_every_cold_boot_starts_stops_and_restarts(
    text: str, alpine_root: Path, tmp_path: Path, lxd: Path
) -> None:
    """The first start brings s6-svscan up, slow or not; stop, start and restart always
    work. Boots run two at a time, each in namespaces of its own."""

    def boot(number: int) -> list[str]:
        scan, log = number % 2 == 0, number % 4 >= 2
        flags = f"SLOW_SCAN={int(scan)} SLOW_LOG={int(log)}\n"
        seen = _boot(alpine_root, tmp_path, lxd, flags + COLD, text=text)
        speed = ", ".join(["slow s6-svscan"] * scan + ["slow log exit"] * log) or "plain speed"
        return [f"boot {number} ({speed}): {failure}" for failure in _cold_boot_failures(seen)]

    files = render.render(config.parse(text), Identity("acme/app", "1.0.0", 0))
    render.write(files, tmp_path / "rendered")
    with ThreadPoolExecutor(max_workers=2) as pool:
        boots = list(pool.map(boot, range(BOOTS)))
    failures = [line for lines in boots for line in lines]
    failed_restarts = sum(": restart" in line for line in failures)
    summary = (
        f"{sum(map(bool, boots))} of {BOOTS} boots and {failed_restarts} of {BOOTS * 5}"
        f" restarts failed:"
    )
    assert failures == [], "\n".join([summary, *failures])


def test_a_start_that_fails_says_why_in_one_line(
    alpine_root: Path, tmp_path: Path, lxd: Path
) -> None:
    """Without execline's redirfd, OpenRC's s6-svscan service starts nothing: the app's
    start waits its bounded time for s6-svscan, then says so, once, and nothing else."""
    scenario = """
rm -f /etc/runlevels/*/* /etc/init.d/dhcpcd /usr/bin/redirfd
printf 'auto lo\\niface lo inet loopback\\n' > /etc/network/interfaces
openrc sysinit >/dev/null 2>&1
openrc boot >/dev/null 2>&1
rc-service app start > /results/start.out 2>&1; echo $? > /results/start.rc
"""
    seen = _boot(alpine_root, tmp_path, lxd, scenario)
    assert seen["start.rc"].strip() == "1", seen["start.out"]
    said = [" ".join(line.split()) for line in seen["start.out"].splitlines() if line.strip()]
    # From OpenRC's "Starting app ...": the reason, its failure mark and its summary.
    start = next(i for i, line in enumerate(said) if line.startswith("* Starting app"))
    assert said[start:] == [
        "* Starting app ...",
        "* s6-svscan is not running on /run/openrc/s6-scan after 10 s",
        "[ !! ]",
        "app | * ERROR: app failed to start",
    ], seen["start.out"]


def test_apk_del_leaves_no_service_state_and_keeps_the_apps_files(
    alpine_root: Path, tmp_path: Path, lxd: Path
) -> None:
    """The package, made with apk-tools 3's own mkpkg from what package() installs (with the
    rendered install scripts), is added and removed with real apk while its service runs."""
    scenario = """
set -- --files /build/pkg --info name:app --info version:1.0.0-r0 --info arch:x86_64
for script in pre-install pre-deinstall; do
  if [ -e /work/app.$script ]; then set -- "$@" --script $script:/work/app.$script; fi
done
apk mkpkg "$@" --output /tmp/app-1.0.0-r0.apk
apk add --quiet --no-network --allow-untrusted /tmp/app-1.0.0-r0.apk
rm -f /etc/runlevels/*/* /etc/init.d/dhcpcd
printf 'auto lo\\niface lo inet loopback\\n' > /etc/network/interfaces
openrc sysinit >/dev/null 2>&1
openrc boot >/dev/null 2>&1
rc-service app start >/dev/null 2>&1
for _ in $(seq 100); do [ -s /var/lib/app/service-env ] && break; sleep 0.1; done
mkdir /var/lib/app/uploads && echo kept > /var/lib/app/uploads/photo
find /var/lib/app | sort > /results/before
apk del --no-network app > /results/del.out 2>&1; echo $? > /results/del.rc
find /var/lib/app | sort > /results/after
ps -o args > /results/ps
"""
    # Installed with apk, not copied: the INSTALL steps but the last.
    install = INSTALL.replace("cp -a /build/pkg/. /\n", "")
    rendered = tmp_path / "rendered"
    render.write(render.render(config.parse(CONFIG), Identity("acme/app", "1.0.0", 0)), rendered)
    results = tmp_path / "results"
    results.mkdir()
    done = rig.booted(
        alpine_root,
        install + scenario,
        {rendered: "/work", results: "/results", lxd: "/dev/lxd"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = {path.name: path.read_text() for path in results.iterdir()}
    # The service ran, so s6 had its runtime state there.
    before = seen["before"].split()
    assert {"/var/lib/app/service/supervise", "/var/lib/app/service/log/event"} <= set(before)
    assert seen["del.rc"].strip() == "0", seen["del.out"]
    assert "Stopping app ... [ ok ]" in seen["del.out"]  # through OpenRC, which started it
    # Only what the app wrote itself is left; the service is stopped.
    assert seen["after"].split() == [
        "/var/lib/app",
        "/var/lib/app/service-env",
        "/var/lib/app/uploads",
        "/var/lib/app/uploads/photo",
    ], seen["del.out"]
    assert "s6-supervise app" not in seen["ps"]
    assert "sleep 3600" not in seen["ps"]
