"""Extract the google provider's schema of the resource and data types terraform/ uses.

No provider binary can be fetched here, but PyPI's cdktf-cdktf-provider-google wheel holds a
jsii assembly generated from the provider's own schema (16.12.1 = hashicorp/google 6.50.0):
each resource's `<Class>Config` interface lists its arguments (optional or not), and each
nested block is a struct of its own. This script reads it and writes a small JSON file:

  {"provider": ..., "resource": {TYPE: SCHEMA}, "data": {TYPE: SCHEMA}}
  SCHEMA = {"attributes": {NAME: {"required": bool}}, "blocks": {NAME: SCHEMA + "required"}}

tests/terraform/test_provider_schema.py holds every argument and block of terraform/
against that file. Run it again after adding a resource type to terraform/:

  .venv-terraform/bin/python scripts/terraform/extract_provider_schema.py
      [--wheel PATH.whl] [--terraform-dir terraform] [--out tests/terraform/google_provider_schema.json]

Without --wheel it downloads the pinned wheel (~50 MB) with pip into a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

PACKAGE = "cdktf-cdktf-provider-google"
VERSION = "16.12.1"
ASSEMBLY = f"cdktf_cdktf_provider_google/_jsii/provider-google@{VERSION}.jsii.tgz"
ROOT = pathlib.Path(__file__).resolve().parents[2]

_DOC_LINK = re.compile(r"/providers/hashicorp/google/(?P<version>[0-9.]+)/docs/(?P<kind>resources|data-sources)/(?P<name>[a-z0-9_]+)#(?P<arg>[a-z0-9_]+)")
_BLOCK_HEADER = re.compile(r'^\s*(?P<kind>resource|data)\s+"(?P<type>[A-Za-z0-9_]+)"', re.M)


def used_types(terraform_dir: pathlib.Path) -> dict[str, set[str]]:
    """{'resource': {...}, 'data': {...}}: the block types declared in terraform_dir/*.tf."""
    found: dict[str, set[str]] = {"resource": set(), "data": set()}
    for tf in sorted(terraform_dir.glob("*.tf")):
        for m in _BLOCK_HEADER.finditer(tf.read_text()):
            found[m["kind"]].add(m["type"])
    return found


def load_assembly(wheel: pathlib.Path) -> dict:
    with zipfile.ZipFile(wheel) as whl:
        tgz = whl.read(ASSEMBLY)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/.jsii")
        assert member is not None, "no package/.jsii in the assembly"
        return json.load(member)


def _docs(prop: dict) -> str:
    docs = prop.get("docs", {})
    return f"{docs.get('summary', '')} {docs.get('remarks', '')}"


def _struct_of(type_ref: dict) -> str | None:
    """The fqn of the struct a property holds (a block), or None for a plain attribute."""
    if "fqn" in type_ref:
        return None if type_ref["fqn"].startswith("cdktf.") else type_ref["fqn"]
    if "collection" in type_ref:
        return _struct_of(type_ref["collection"]["elementtype"])
    if "union" in type_ref:
        for option in type_ref["union"]["types"]:
            fqn = _struct_of(option)
            if fqn:
                return fqn
    return None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _schema(types: dict, fqn: str, seen: tuple[str, ...] = ()) -> dict:
    out: dict = {"attributes": {}, "blocks": {}}
    for prop in types[fqn].get("properties", []):
        link = _DOC_LINK.search(_docs(prop))
        name = link["arg"] if link else _snake(prop["name"])
        required = not prop.get("optional", False)
        struct = _struct_of(prop["type"])
        if struct and struct not in seen:
            block = _schema(types, struct, seen + (fqn,))
            block["required"] = required
            out["blocks"][name] = block
        else:
            out["attributes"][name] = {"required": required}
    out["attributes"] = dict(sorted(out["attributes"].items()))
    out["blocks"] = dict(sorted(out["blocks"].items()))
    return out


def config_interfaces(assembly: dict) -> dict[tuple[str, str], str]:
    """(kind, terraform type) -> fqn of its Config interface, from the docs links."""
    index: dict[tuple[str, str], str] = {}
    for fqn, t in assembly["types"].items():
        if t.get("kind") != "interface" or "cdktf.TerraformMetaArguments" not in t.get("interfaces", []):
            continue
        for prop in t.get("properties", []):
            link = _DOC_LINK.search(_docs(prop))
            if link:
                kind = "resource" if link["kind"] == "resources" else "data"
                index[(kind, f"google_{link['name']}")] = fqn
                break
    return index


def extract(assembly: dict, wanted: dict[str, set[str]]) -> dict:
    index = config_interfaces(assembly)
    out: dict = {
        "provider": "hashicorp/google",
        "provider_version": _provider_version(assembly),
        "source": f"PyPI {PACKAGE}=={VERSION} ({ASSEMBLY})",
        "resource": {},
        "data": {},
    }
    missing = []
    for kind in ("resource", "data"):
        for tf_type in sorted(wanted[kind]):
            fqn = index.get((kind, tf_type))
            if fqn is None:
                missing.append(f"{kind} {tf_type}")
                continue
            out[kind][tf_type] = _schema(assembly["types"], fqn)
    if missing:
        raise SystemExit(f"not in provider {out['provider_version']}: {', '.join(missing)}")
    return out


def _provider_version(assembly: dict) -> str:
    for t in assembly["types"].values():
        for prop in t.get("properties", []):
            link = _DOC_LINK.search(_docs(prop))
            if link:
                return link["version"]
    return "unknown"


def download_wheel(dest: pathlib.Path) -> pathlib.Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                    f"{PACKAGE}=={VERSION}"], check=True)
    return next(dest.glob("cdktf_cdktf_provider_google-*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=pathlib.Path, help=f"a downloaded {PACKAGE}=={VERSION} wheel")
    parser.add_argument("--terraform-dir", type=pathlib.Path, default=ROOT / "terraform")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "terraform" / "google_provider_schema.json")
    args = parser.parse_args(argv)
    wanted = used_types(args.terraform_dir)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(pathlib.Path(tmp))
        assembly = load_assembly(wheel)
    schema = extract(assembly, wanted)
    args.out.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")
    n = sum(len(schema[k]) for k in ("resource", "data"))
    print(f"wrote {args.out} ({n} types, provider {schema['provider_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
