"""python -m host_lib.run [--addr IP]... (app.py | -m module) args...: see host_lib.run."""

from __future__ import annotations

import ipaddress
import os
import runpy
import sys
from dataclasses import dataclass, field
from typing import NoReturn

from host_lib.run import install
from host_lib.run.placement import Placement

USAGE = """usage: python -m host_lib.run [--addr IP]... (app.py | -m module) [args...]

Runs an unmodified Python program with p4tas as its IPv4 TCP (see host_lib/run/__init__.py).
  --addr IP   a p4tas address of the program: binds to the wildcard use the first; connects
              leave from it (repeatable; default: every address the kernel does not have)
The runtime's control socket is $P4TAS_CONTROL_SOCKET (default /tmp/p4tas-runtime.sock)."""


@dataclass
class Launch:
    """What to run and where."""

    addrs: list[str] = field(default_factory=list)
    module: str | None = None
    argv: list[str] = field(default_factory=list)  # sys.argv of the program


def parse(args: list[str]) -> Launch:
    """The command line; SystemExit(2) with the usage on a mistake."""
    launch = Launch()
    while args and args[0].startswith("-"):
        option, args = args[0], args[1:]
        if option in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        if option == "--addr" and args:
            launch.addrs.append(_ipv4(args[0]))
            args = args[1:]
        elif option.startswith("--addr="):
            launch.addrs.append(_ipv4(option.split("=", 1)[1]))
        elif option == "-m" and args:
            launch.module, launch.argv = args[0], args
            return launch
        else:
            _usage(f"unknown option {option!r}")
    if not args:
        _usage("no program to run")
    launch.argv = args
    return launch


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        _usage(f"--addr {text!r} is not an IPv4 address")


def _usage(problem: str) -> NoReturn:
    print(f"host_lib.run: {problem}\n\n{USAGE}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    launch = parse(sys.argv[1:])
    install(Placement(tuple(launch.addrs)))
    sys.argv = list(launch.argv)
    if launch.module is not None:
        runpy.run_module(launch.module, run_name="__main__", alter_sys=True)
        return
    sys.path[0] = os.path.dirname(os.path.abspath(launch.argv[0]))
    runpy.run_path(launch.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
