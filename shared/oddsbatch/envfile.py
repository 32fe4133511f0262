"""KEY=VALUE files: the local stack's `.oddsbatch/local.env`, read by the command-line tools."""

from __future__ import annotations

import os
from pathlib import Path

LOCAL_ENV_FILE = "local.env"


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def use_local_stack_if_unconfigured(state_dir: str | os.PathLike) -> bool:
    """Point the Google clients at a running local stack, unless the environment already
    names a project (then it is real GCP, or a stack the caller chose). True if applied."""
    path = Path(state_dir) / LOCAL_ENV_FILE
    if os.environ.get("ODDSBATCH_PROJECT") or not path.exists():
        return False
    from . import clients

    os.environ.update(read_env_file(path))
    clients.reset()
    return True
