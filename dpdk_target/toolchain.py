"""Build what the dpdk target runs, from Debian's DPDK and this repository's sources: the
runner (dpdk_target/runner/*.c) and the pipeline library of the committed .spec (DPDK's
codegen, then cc). Both are cached under the venv, named by the hash of what they are built
from, DPDK's version and the flags.

DPDK's generated pipeline code includes private headers (rte_swx_pipeline_internal.h,
rte_swx_pipeline_spec.h) that libdpdk-dev does not ship; they come from Debian's `dpdk` source
package of the installed version, fetched with apt-get into the cache (a private source list:
the system's apt configuration is not touched; apt checks the archive's signature and the
files' hashes). The runner and the libraries run as root from the venv, trusted as the venv's
Python is.
`python -m dpdk_target.toolchain` (run by `make setup`) builds everything ahead of time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from nic_contract.pipeline import PNA_SPEC

RUNNER_SOURCES = Path(__file__).with_name("runner")
CACHE = Path(sys.prefix) / "dpdk"
PRIVATE_HEADER = "rte_swx_pipeline_internal.h"   # the last one extracted: all are there
PIPELINE_SOURCES = "lib/pipeline/"
DEBIAN_SOURCES = """Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
CFLAGS = ["-O2", "-DALLOW_EXPERIMENTAL_API", "-Wno-deprecated-declarations"]


class DpdkUnavailable(RuntimeError):
    """The dpdk target cannot be built here; the message says what is missing."""


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if done.returncode != 0:
        raise DpdkUnavailable(f"{what} failed ({' '.join(cmd[:3])} ...): "
                              f"{(done.stderr or done.stdout).strip()[-1500:]}")
    return done.stdout


def dpdk_flags(kind: str) -> list[str]:
    """pkg-config's --cflags or --libs of libdpdk; DpdkUnavailable when it is not installed."""
    if shutil.which("pkg-config") is None or shutil.which("cc") is None:
        raise DpdkUnavailable("cc or pkg-config not found: install Debian packages gcc "
                              "pkg-config libdpdk-dev (`make setup` does as root)")
    done = subprocess.run(["pkg-config", kind, "libdpdk"], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise DpdkUnavailable("DPDK not found (pkg-config libdpdk): install Debian package "
                              "libdpdk-dev (`make setup` does as root)")
    return done.stdout.split()


def dpdk_version() -> str:
    """The installed libdpdk-dev's Debian version (the source package must match it)."""
    return _run(["dpkg-query", "-W", "-f", "${Version}", "libdpdk-dev"], "dpkg-query").strip()


def _hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def private_header_dir() -> Path:
    """The directory holding DPDK's pipeline headers (private ones too) of the installed
    version."""
    version = dpdk_version()
    target = CACHE / f"src-{version}"
    if (target / PRIVATE_HEADER).is_file():
        return target
    work = CACHE / "apt"
    parts = work / "sources.list.d"
    for sub in (parts, work / "lists" / "partial", work / "cache", work / "download"):
        sub.mkdir(parents=True, exist_ok=True)
    (parts / "debian-src.sources").write_text(DEBIAN_SOURCES, encoding="utf-8")
    options = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}",
               "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
               "-o", "APT::Sandbox::User=root", "-qq"]
    _run(["apt-get", *options, "update"], "apt-get update of Debian's source index")
    download = work / "download"
    _run(["apt-get", *options, "source", "--download-only", f"dpdk={version}"],
         f"apt-get source dpdk={version}", cwd=download)
    tarballs = sorted(download.glob("dpdk_*.orig.tar.*"))
    if not tarballs:
        raise DpdkUnavailable(f"Debian's dpdk {version} source has no orig tarball")
    with tarfile.open(tarballs[-1]) as tar:
        headers = {Path(m.name).name: tar.extractfile(m).read()   # type: ignore[union-attr]
                   for m in tar.getmembers()
                   if f"/{PIPELINE_SOURCES}" in m.name and m.name.endswith(".h")}
    if PRIVATE_HEADER not in headers:
        raise DpdkUnavailable(f"{tarballs[-1].name} has no {PIPELINE_SOURCES}{PRIVATE_HEADER}")
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(headers, key=lambda n: n == PRIVATE_HEADER):
        (target / name).write_bytes(headers[name])
    for tarball in download.iterdir():
        tarball.unlink()
    return target


def _build_key(*parts: bytes) -> str:
    """A cache name's hash: what it is built from, DPDK's version and the flags (a library
    built against one DPDK's private headers must not be loaded by another)."""
    return _hash(*parts, dpdk_version().encode(), " ".join(CFLAGS).encode())


def _publish(build: Callable[[Path], None], target: Path) -> Path:
    """Build into a private temporary name, then rename: builds side by side never mix."""
    fd, name = tempfile.mkstemp(dir=CACHE, prefix=f".{target.name}.")
    os.close(fd)
    partial = Path(name)
    try:
        build(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def runner() -> Path:
    """The runner binary, built from dpdk_target/runner/ when its sources changed."""
    sources = sorted(RUNNER_SOURCES.glob("*.[ch]"))
    binary = CACHE / f"p4tas-swx-{_build_key(*(s.read_bytes() for s in sources))}"
    if binary.is_file():
        return binary
    cflags, libs = dpdk_flags("--cflags"), dpdk_flags("--libs")
    CACHE.mkdir(parents=True, exist_ok=True)
    c_files = [str(s) for s in sources if s.suffix == ".c"]
    return _publish(lambda out: _run(["cc", *CFLAGS, "-Wall", "-o", str(out), *c_files,
                                      *cflags, *libs], "building the runner"), binary)


def pipeline_library(spec: Path = PNA_SPEC) -> Path:
    """The pipeline library of `spec` (DPDK's codegen, then cc), built when missing."""
    if not spec.is_file():
        raise DpdkUnavailable(f"{spec} is missing: run `make p4` (needs p4c-dpdk)")
    tool = runner()
    library = CACHE / f"pipeline-{_build_key(spec.read_bytes(), tool.read_bytes())}.so"
    if library.is_file():
        return library
    headers = private_header_dir()

    def build(out: Path) -> None:
        code = out.parent / f"{out.name}.c"
        try:
            _run([str(tool), "codegen", str(spec), str(code)], "DPDK's pipeline codegen")
            _run(["cc", *CFLAGS, "-fPIC", "-shared", "-I", str(headers),
                  *dpdk_flags("--cflags"), "-o", str(out), str(code)], "building the pipeline")
        finally:
            code.unlink(missing_ok=True)

    return _publish(build, library)


def main() -> int:
    try:
        print(f"dpdk target: runner {runner()}, pipeline {pipeline_library()}")
    except DpdkUnavailable as err:
        print(f"dpdk target unavailable: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
