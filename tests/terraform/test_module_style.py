"""The module keeps fabric's conventions, and its README lists every variable and output."""

from __future__ import annotations

import re

from .conftest import TERRAFORM_DIR

README = (TERRAFORM_DIR / "README.md").read_text()


def _blocks(raw: dict, filename: str, kind: str) -> list[tuple[str, dict]]:
    return [(name.strip('"'), body) for entry in raw[filename].get(kind, []) for name, body in entry.items()]


def test_variables_are_alphabetical_with_description_type_and_validation_except_bools(raw):
    variables = _blocks(raw, "variables.tf", "variable")
    names = [n for n, _ in variables]
    assert names == sorted(names)
    for name, body in variables:
        assert body.get("description", "").strip('"'), name
        assert "type" in body, name
        # A bool (nullable = false) has nothing left to validate.
        if body["type"] != "bool":
            assert body.get("validation"), f"variable {name} has no validation"
        else:
            assert body.get("nullable") is False, name
    assert all(f"| {n} |" in README for n in names)


def test_outputs_are_alphabetical_described_and_documented(raw):
    outputs = _blocks(raw, "outputs.tf", "output")
    names = [n for n, _ in outputs]
    assert names == sorted(names)
    assert all(body.get("description") for _, body in outputs)
    assert all(f"| {n} |" in README for n in names)


def test_provider_is_pinned_to_a_bounded_range(raw):
    providers = raw["versions.tf"]["terraform"][0]["required_providers"][0]
    google = providers["google"]
    assert google["source"].strip('"') == "hashicorp/google"
    assert google["version"].strip('"') == ">= 6.50.0, < 8.0.0"
    time = providers["time"]
    assert time["source"].strip('"') == "hashicorp/time"
    assert time["version"].strip('"') == ">= 0.13.1, < 1.0.0"


def test_readme_starts_with_an_example_and_files_are_one_concern_each():
    assert re.search(r"## Example\n\n```hcl\nmodule \"oddsbatch\"", README)
    assert README.index("## Example") < README.index("## Variables") < README.index("## Outputs")
    files = {p.name for p in TERRAFORM_DIR.glob("*.tf")}
    assert {"versions.tf", "variables.tf", "outputs.tf", "storage.tf", "firestore.tf", "bigquery.tf", "iam.tf",
            "monitoring.tf", "services.tf"} <= files
    assert (TERRAFORM_DIR / "terraform.tfvars.example").exists()


def test_tfvars_example_evaluates(tmp_path):
    from .conftest import tfparse

    tf = tfparse(TERRAFORM_DIR, TERRAFORM_DIR / "terraform.tfvars.example")
    landing = [b for b in tf["google_storage_bucket"] if b["__tfmeta"]["path"] == "google_storage_bucket.landing"]
    assert landing[0]["name"] == "my-odds-landing"
