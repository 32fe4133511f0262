"""Fixtures of the offline Terraform checks: the tool virtualenvs made by scripts/bootstrap.sh.

The tools run in their own virtualenvs (pinned in requirements-terraform.txt and
requirements-checkov.txt), so each check is a subprocess of scripts/terraform/*.py.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
SCRIPTS = ROOT / "scripts" / "terraform"
VENVS = SCRIPTS / ".venvs"
TFVARS = pathlib.Path(__file__).with_name("test.tfvars")
SCHEMA_JSON = pathlib.Path(__file__).with_name("google_provider_schema.json")


def tool_python(tool: str) -> pathlib.Path:
    python = VENVS / tool / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make install` (scripts/bootstrap.sh installs the Terraform tools)")
    return python


def run_tool(tool: str, *args: str, check: bool = True, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(tool_python(tool)), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def tfparse(directory: pathlib.Path, *var_files: pathlib.Path) -> dict:
    proc = run_tool("terraform", str(SCRIPTS / "tfdump.py"), "tfparse", str(directory), *map(str, var_files))
    return json.loads(proc.stdout)


def hcl(directory: pathlib.Path) -> dict:
    proc = run_tool("terraform", str(SCRIPTS / "tfdump.py"), "hcl", str(directory))
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def tf() -> dict:
    """tfparse's evaluated configuration with tests/terraform/test.tfvars."""
    return tfparse(TERRAFORM_DIR, TFVARS)


@pytest.fixture(scope="session")
def raw() -> dict:
    """python-hcl2's raw view: {file name: body}."""
    return hcl(TERRAFORM_DIR)


def resources(tf: dict, tf_type: str) -> dict[str, dict]:
    """{address: block} of one resource type, e.g. {'google_storage_bucket.landing': {...}}."""
    return {r["__tfmeta"]["path"]: r for r in tf.get(tf_type, [])}


def one(tf: dict, address: str) -> dict:
    tf_type = address.split(".")[0]
    found = resources(tf, tf_type)
    assert address in found, f"{address} not in {sorted(found)}"
    return found[address]


def raw_resource(raw: dict, tf_type: str, name: str) -> dict:
    for body in raw.values():
        for entry in body.get("resource", []):
            block = entry.get(f'"{tf_type}"', {}).get(f'"{name}"')
            if block is not None:
                return block
    raise AssertionError(f"resource {tf_type}.{name} not found")
