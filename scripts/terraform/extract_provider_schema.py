"""Extract a provider's schema of the resource and data types terraform/ uses.

No provider binary can be fetched here, but PyPI's cdktf provider wheels hold a jsii
assembly generated from the provider's own schema: cdktf-cdktf-provider-google 16.12.1 =
hashicorp/google 6.50.0, cdktf-cdktf-provider-time 11.0.1 = hashicorp/time 0.13.1 (the
version is read from the assembly's registry doc links). Each resource's `<Class>Config`
interface lists its arguments (optional or not), and each nested block is a struct of its
own. This script reads it and writes a small JSON file:

  {"provider": ..., "resource": {TYPE: SCHEMA}, "data": {TYPE: SCHEMA}}
  SCHEMA = {"attributes": {NAME: {"required": bool}}, "blocks": {NAME: SCHEMA + "required"}}

tests/terraform/test_provider_schema.py holds every argument and block of terraform/
against those files. Run it again after adding a resource type to terraform/:

  .venv-terraform/bin/python scripts/terraform/extract_provider_schema.py [--provider google|time]
      [--wheel PATH.whl] [--terraform-dir terraform] [--out tests/terraform/<provider>_provider_schema.json]

Without --wheel it downloads the pinned wheel (google ~50 MB, time ~75 KB) with pip into a
temporary folder.
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

# provider name -> (PyPI package, version): the wheels whose assemblies are read.
PROVIDERS = {
    "google": ("cdktf-cdktf-provider-google", "16.12.1"),
    "time": ("cdktf-cdktf-provider-time", "11.0.1"),
    # google-beta 6.50.0: only for resources that exist in beta alone (google_project_service_identity).
    "google-beta": ("cdktf-cdktf-provider-google-beta", "16.12.1"),
}
ROOT = pathlib.Path(__file__).resolve().parents[2]
# Resource types terraform/ takes from google-beta (provider = google-beta): they exist in no
# other provider. Every other google_* type is the google provider's.
BETA_TYPES = ("google_project_service_identity",)

_BLOCK_HEADER = re.compile(r'^\s*(?P<kind>resource|data)\s+"(?P<type>[A-Za-z0-9_]+)"', re.M)

# Set by select() for the provider being extracted.
PROVIDER = "google"
TYPE_PREFIX = "google"  # resource types of google-beta start with google_ as well
PACKAGE, VERSION = PROVIDERS[PROVIDER]
ASSEMBLY = ""
_DOC_LINK = re.compile("")


def select(provider: str) -> None:
    """Point the module-level package, assembly path and doc-link pattern at one provider."""
    global PROVIDER, TYPE_PREFIX, PACKAGE, VERSION, ASSEMBLY, _DOC_LINK
    PROVIDER = provider
    TYPE_PREFIX = provider.split("-")[0]
    PACKAGE, VERSION = PROVIDERS[provider]
    module = PACKAGE.replace("-", "_")
    ASSEMBLY = f"{module}/_jsii/provider-{provider}@{VERSION}.jsii.tgz"
    _DOC_LINK = re.compile(rf"/providers/hashicorp/{provider}/(?P<version>[0-9.]+)/docs/(?P<kind>resources|data-sources)/(?P<name>[a-z0-9_]+)#(?P<arg>[a-z0-9_]+)")


select("google")


def used_types(terraform_dir: pathlib.Path) -> dict[str, set[str]]:
    """{'resource': {...}, 'data': {...}}: the block types of the selected provider in terraform_dir/*.tf."""
    found: dict[str, set[str]] = {"resource": set(), "data": set()}
    for tf in sorted(terraform_dir.glob("*.tf")):
        for m in _BLOCK_HEADER.finditer(tf.read_text()):
            if m["type"].startswith(f"{TYPE_PREFIX}_") and (m["type"] in BETA_TYPES) == (PROVIDER == "google-beta"):
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
                # A few pages carry the full type name (google-beta's google_project_service_identity).
                name = link["name"] if link["name"].startswith(f"{TYPE_PREFIX}_") else f"{TYPE_PREFIX}_{link['name']}"
                index[(kind, name)] = fqn
                break
    return index


def extract(assembly: dict, wanted: dict[str, set[str]]) -> dict:
    index = config_interfaces(assembly)
    out: dict = {
        "provider": f"hashicorp/{PROVIDER}",
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
    return next(dest.glob(f"{PACKAGE.replace('-', '_')}-*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="google")
    parser.add_argument("--wheel", type=pathlib.Path, help="a downloaded wheel of the provider's pinned cdktf package")
    parser.add_argument("--terraform-dir", type=pathlib.Path, default=ROOT / "terraform")
    parser.add_argument("--out", type=pathlib.Path, help="[tests/terraform/<provider>_provider_schema.json]")
    args = parser.parse_args(argv)
    select(args.provider)
    args.out = args.out or ROOT / "tests" / "terraform" / f"{args.provider}_provider_schema.json"
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
