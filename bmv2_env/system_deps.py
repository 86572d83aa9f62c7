"""The system tools p4tas runs (bmv2_env/system_packages.txt) and their installation.

`python3 bmv2_env/system_deps.py install` is what `make setup` runs before it builds the venv,
so it uses the standard library only: every missing tool's Debian package is installed with
apt-get (after `apt-get update` when a package is not found); without root or apt-get it says
which packages to install and why. `missing(...)` and `skip_reason(...)` let tests and the
environment say which tool is missing instead of failing in set-up.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE_LIST = Path(__file__).with_name("system_packages.txt")
IMPORT_PREFIX = "import:"
PKGCONFIG_PREFIX = "pkgconfig:"
APT_LOCK_WAIT_S = 300  # another apt-get (unattended upgrades) may hold the dpkg lock
# The tools the environment needs to build veths and peers (tests skip without them).
ENVIRONMENT_TOOLS = ("ip", "ethtool", "sysctl")


@dataclass(frozen=True)
class Requirement:
    """One line of the package list: what is checked, its Debian package, what needs it."""

    check: str
    package: str
    purpose: str

    @property
    def present(self) -> bool:
        """Whether the command is on PATH (an absolute path: that executable; import:M: the
        Python module importable; pkgconfig:L: pkg-config knows the library L)."""
        if self.check.startswith(IMPORT_PREFIX):
            return importlib.util.find_spec(self.check[len(IMPORT_PREFIX):]) is not None
        if self.check.startswith(PKGCONFIG_PREFIX):
            return shutil.which("pkg-config") is not None and subprocess.run(
                ["pkg-config", "--exists", self.check[len(PKGCONFIG_PREFIX):]],
                check=False).returncode == 0
        if self.check.startswith("/"):
            return os.access(self.check, os.X_OK)
        return shutil.which(self.check) is not None

    def describe(self) -> str:
        return f"{self.check} (Debian package {self.package}: {self.purpose})"


def requirements(path: Path = PACKAGE_LIST) -> list[Requirement]:
    """Every requirement of the package list, in file order."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        check, package, purpose = line.split(maxsplit=2)
        found.append(Requirement(check, package, purpose))
    return found


def missing(checks: Iterable[str] | None = None) -> list[Requirement]:
    """The requirements (all, or those named in `checks`) that this machine lacks."""
    wanted = set(checks) if checks is not None else None
    return [r for r in requirements() if (wanted is None or r.check in wanted) and not r.present]


def skip_reason(checks: Iterable[str] = ENVIRONMENT_TOOLS) -> str | None:
    """Why a test that runs these tools cannot run here (None: all present)."""
    lacking = missing(checks)
    if not lacking:
        return None
    packages = " ".join(sorted({r.package for r in lacking}))
    return (f"{', '.join(r.check for r in lacking)} not found: install Debian package(s) "
            f"{packages} (`make setup` does as root)")


def _apt_install(packages: list[str]) -> bool:
    """apt-get install; True on success. Quiet: only apt's errors reach the user."""
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
           "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}", *packages]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    return done.returncode == 0


def _apt_update() -> bool:
    done = subprocess.run(["apt-get", "update", "-qq", "-o",
                           f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    return done.returncode == 0


def install() -> int:
    """Install what is missing; 0 when everything is present afterwards."""
    lacking = missing()
    if not lacking:
        return 0
    packages = sorted({r.package for r in lacking})
    why = "".join(f"\n  {r.describe()}" for r in lacking)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"missing system tools; install these Debian packages as root: "
              f"apt-get install {' '.join(packages)}{why}\n"
              "(the tests that need them are skipped with this reason)")
        return 1
    print(f"installing Debian packages {', '.join(packages)} for:{why}", flush=True)
    if not _apt_install(packages):
        print("a package was not found: running apt-get update first, then installing again",
              flush=True)
        if not (_apt_update() and _apt_install(packages)):
            print(f"could not install {' '.join(packages)}: the tests that need them skip")
            return 1
    still = missing()
    if still:
        print("still missing after installing: " + ", ".join(r.describe() for r in still))
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        return install()
    if argv == ["check"]:
        lacking = missing()
        for r in lacking:
            print(f"missing: {r.describe()}")
        return 1 if lacking else 0
    print("usage: python3 bmv2_env/system_deps.py install|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
