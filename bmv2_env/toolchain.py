"""Find the P4 tools: first an environment variable, then PATH, then /opt/p4/bin."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OPT_P4_BIN = Path("/opt/p4/bin")
SIMPLE_SWITCH_GRPC = "simple_switch_grpc"
SIMPLE_SWITCH_GRPC_ENV = "SIMPLE_SWITCH_GRPC"
README = "bmv2_env/README.md"


class ToolNotFound(RuntimeError):
    """A P4 tool is missing; the message says how to make it findable."""


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_env(name: str, env_var: str) -> Path | None:
    """Return the tool named by `env_var`, None if unset; raise if it names nothing runnable."""
    value = os.environ.get(env_var, "").strip()
    if not value:
        return None
    path = Path(value)
    if os.sep not in value:  # a bare command name: resolve it on PATH
        found = shutil.which(value)
        path = Path(found) if found else path
    if _is_executable(path):
        return path
    raise ToolNotFound(
        f"{env_var}={value} is not an executable file: point {env_var} at the {name} binary "
        f"(e.g. {env_var}={OPT_P4_BIN / name}), or unset it to search PATH and {OPT_P4_BIN}"
    )


def find_tool(name: str, env_var: str, fallback_dir: Path | None = None) -> Path:
    """Return the path of `name`: $`env_var`, else PATH, else `fallback_dir` (/opt/p4/bin)."""
    fallback_dir = fallback_dir or OPT_P4_BIN
    from_env = _from_env(name, env_var)
    if from_env is not None:
        return from_env
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    candidate = fallback_dir / name
    if _is_executable(candidate):
        return candidate
    raise ToolNotFound(
        f"{name} not found: set {env_var}=/path/to/{name}, add its directory to PATH, "
        f"or install it (p4lang packages or Docker images; see {README}) "
        f"[searched ${env_var}, PATH, {fallback_dir}]"
    )


def find_simple_switch_grpc() -> Path:
    """Return the simple_switch_grpc binary or raise ToolNotFound with the fix."""
    return find_tool(SIMPLE_SWITCH_GRPC, SIMPLE_SWITCH_GRPC_ENV)
