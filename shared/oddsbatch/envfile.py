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


# Every variable that names a project to the functions and the Google clients (config.Settings
# reads the same three): any one of them means "this project", never the local stack.
PROJECT_VARIABLES = ("ODDSBATCH_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")


def named_project(env=None) -> str | None:
    env = os.environ if env is None else env
    for name in PROJECT_VARIABLES:
        if env.get(name):
            return env[name]
    return None


def use_local_stack_if_unconfigured(state_dir: str | os.PathLike) -> bool:
    """Point the Google clients at a running local stack only when the environment names no
    project at all (ODDSBATCH_PROJECT, GOOGLE_CLOUD_PROJECT or GCLOUD_PROJECT): a named project
    is real GCP, or a stack the caller chose. True if applied."""
    path = Path(state_dir) / LOCAL_ENV_FILE
    if named_project() or not path.exists():
        return False
    from . import clients

    os.environ.update(read_env_file(path))
    clients.reset()
    return True


def target_line(command: str, local: bool, state_dir: str | os.PathLike) -> str:
    """The one line an operator command prints before it acts: which project, and where."""
    project = named_project() or "(none)"
    if local:
        return f"oddsbatch {command}: project {project} on the local stack ({Path(state_dir) / LOCAL_ENV_FILE})"
    emulated = [v for v in ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST") if os.environ.get(v)]
    where = f"emulators named by {', '.join(emulated)}" if emulated else "Google Cloud"
    return f"oddsbatch {command}: project {project} on {where}"
