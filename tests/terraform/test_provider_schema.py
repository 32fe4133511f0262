"""Every argument and block of terraform/ exists in its provider's schema.

The schemas are tests/terraform/google_provider_schema.json (hashicorp/google 6.50.0) and
time_provider_schema.json (hashicorp/time 0.13.1, for time_sleep), extracted from the cdktf
provider wheels by scripts/terraform/extract_provider_schema.py: a misspelled or removed
attribute fails here without a provider binary.
"""

from __future__ import annotations

import json
import re
import shutil

from .conftest import SCHEMA_JSON, TERRAFORM_DIR, hcl

TIME_SCHEMA_JSON = SCHEMA_JSON.with_name("time_provider_schema.json")
BETA_SCHEMA_JSON = SCHEMA_JSON.with_name("google-beta_provider_schema.json")


def provider_schemas() -> dict:
    """The google, google-beta (its beta-only types) and time schemas merged: {"resource": {...}, "data": {...}}."""
    merged: dict = {"resource": {}, "data": {}}
    for path in (SCHEMA_JSON, BETA_SCHEMA_JSON, TIME_SCHEMA_JSON):
        schema = json.loads(path.read_text())
        for kind in merged:
            merged[kind].update(schema[kind])
    return merged

# Meta-arguments Terraform itself accepts in any resource or data block.
META_ATTRIBUTES = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"lifecycle", "provisioner", "connection"}


def _unquote(label: str) -> str:
    return label[1:-1] if label.startswith('"') and label.endswith('"') else label


def _is_block(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def _check_body(body: dict, schema: dict, where: str, top: bool) -> list[str]:
    problems = []
    seen = set()
    for key, value in body.items():
        if key.startswith("__"):
            continue
        if top and (key in META_ATTRIBUTES or key in META_BLOCKS):
            continue
        if key == "dynamic":
            for entry in value:
                for label, dyn in entry.items():
                    name = _unquote(label)
                    seen.add(name)
                    if name not in schema["blocks"]:
                        problems.append(f"{where}: unknown dynamic block {name!r}")
                        continue
                    for content in dyn.get("content", []):
                        problems += _check_body(content, schema["blocks"][name], f"{where}.{name}", False)
            continue
        seen.add(key)
        if _is_block(value):
            if key not in schema["blocks"]:
                problems.append(f"{where}: unknown block {key!r}")
                continue
            for item in value:
                problems += _check_body(item, schema["blocks"][key], f"{where}.{key}", False)
        elif key not in schema["attributes"]:
            problems.append(f"{where}: unknown attribute {key!r}")
    for name, attr in schema["attributes"].items():
        if attr["required"] and name not in seen:
            problems.append(f"{where}: required attribute {name!r} missing")
    for name, block in schema["blocks"].items():
        if block.get("required") and name not in seen:
            problems.append(f"{where}: required block {name!r} missing")
    return problems


def schema_problems(raw: dict, schema: dict) -> tuple[list[str], int]:
    """(problems, number of blocks checked) for every resource and data block of raw."""
    problems, checked = [], 0
    for filename, body in raw.items():
        for kind in ("resource", "data"):
            for entry in body.get(kind, []):
                for tf_type, named in entry.items():
                    tf_type = _unquote(tf_type)
                    for name, block in named.items():
                        where = f"{filename}: {'data.' if kind == 'data' else ''}{tf_type}.{_unquote(name)}"
                        if tf_type not in schema[kind]:
                            problems.append(f"{where}: {kind} type not in the extracted schema (run scripts/terraform/extract_provider_schema.py)")
                            continue
                        checked += 1
                        problems += _check_body(block, schema[kind][tf_type], where, True)
    return problems, checked


def test_every_argument_and_block_exists_in_the_provider_schema(raw):
    problems, checked = schema_problems(raw, provider_schemas())
    assert problems == []
    assert checked >= 20


def test_the_schema_file_was_extracted_from_the_pinned_provider():
    schema = json.loads(SCHEMA_JSON.read_text())
    assert schema["provider_version"] == "6.50.0"
    bucket = schema["resource"]["google_storage_bucket"]
    assert bucket["attributes"]["name"]["required"] is True
    assert "lifecycle_rule" in bucket["blocks"]
    time = json.loads(TIME_SCHEMA_JSON.read_text())
    assert (time["provider"], time["provider_version"]) == ("hashicorp/time", "0.13.1")
    assert set(time["resource"]["time_sleep"]["attributes"]) == {"create_duration", "destroy_duration", "triggers"}


def test_a_misspelled_time_sleep_attribute_fails(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    mon = copy / "monitoring.tf"
    mon.write_text(mon.read_text().replace("create_duration = ", "create_duratoin = ", 1))
    problems, _ = schema_problems(hcl(copy), provider_schemas())
    assert any("time_sleep.metrics_propagation: unknown attribute 'create_duratoin'" in p for p in problems), problems


def test_a_misspelled_attribute_fails(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    storage = copy / "storage.tf"
    text = storage.read_text()
    assert "uniform_bucket_level_access = true" in text
    storage.write_text(text.replace("uniform_bucket_level_access = true", "uniform_bucket_level_acess = true", 1))
    (copy / "firestore.tf").write_text((copy / "firestore.tf").read_text().replace("ttl_config {}", "ttl_configs {}"))
    problems, _ = schema_problems(hcl(copy), provider_schemas())
    assert any("unknown attribute 'uniform_bucket_level_acess'" in p for p in problems), problems
    assert any("unknown block 'ttl_configs'" in p for p in problems), problems


def test_a_missing_required_argument_fails(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    iam = copy / "iam.tf"
    text, n = re.subn(r'\n  role += "roles/bigquery.jobUser"\n', "\n", iam.read_text(), count=1)
    assert n == 1
    iam.write_text(text)
    problems, _ = schema_problems(hcl(copy), provider_schemas())
    assert any("required attribute 'role' missing" in p for p in problems), problems
