"""Every argument and block of terraform/ exists in the google provider's schema.

The schema (provider 6.50.0) is tests/terraform/google_provider_schema.json, extracted from
the cdktf provider wheel by scripts/terraform/extract_provider_schema.py: a misspelled or
removed attribute fails here without a provider binary.
"""

from __future__ import annotations

import json
import shutil

from .conftest import SCHEMA_JSON, TERRAFORM_DIR, hcl

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
    schema = json.loads(SCHEMA_JSON.read_text())
    problems, checked = schema_problems(raw, schema)
    assert problems == []
    assert checked >= 20


def test_the_schema_file_was_extracted_from_the_pinned_provider():
    schema = json.loads(SCHEMA_JSON.read_text())
    assert schema["provider_version"] == "6.50.0"
    bucket = schema["resource"]["google_storage_bucket"]
    assert bucket["attributes"]["name"]["required"] is True
    assert "lifecycle_rule" in bucket["blocks"]


def test_a_misspelled_attribute_fails(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    storage = copy / "storage.tf"
    text = storage.read_text()
    assert "uniform_bucket_level_access = true" in text
    storage.write_text(text.replace("uniform_bucket_level_access = true", "uniform_bucket_level_acess = true", 1))
    (copy / "firestore.tf").write_text((copy / "firestore.tf").read_text().replace("ttl_config {}", "ttl_configs {}"))
    problems, _ = schema_problems(hcl(copy), json.loads(SCHEMA_JSON.read_text()))
    assert any("unknown attribute 'uniform_bucket_level_acess'" in p for p in problems), problems
    assert any("unknown block 'ttl_configs'" in p for p in problems), problems


def test_a_missing_required_argument_fails(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    iam = copy / "iam.tf"
    iam.write_text(iam.read_text().replace('  role     = "roles/bigquery.jobUser"\n', "", 1))
    problems, _ = schema_problems(hcl(copy), json.loads(SCHEMA_JSON.read_text()))
    assert any("required attribute 'role' missing" in p for p in problems), problems
