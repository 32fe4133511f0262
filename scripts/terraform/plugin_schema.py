"""Build the provider schema the local plugin serves (scripts/terraform/plugin.py).

The real-Terraform tests (tests/terraform/test_real_terraform.py) run `terraform init`
through `destroy` with hashicorp/google and hashicorp/time replaced by a local plugin. The
plugin must answer GetProviderSchema with the providers' real schemas, in the format of
`terraform providers schema -json`:

  {"provider": {"version": 0, "block": BLOCK},
   "resource_schemas": {TYPE: {"version": 0, "block": BLOCK}},
   "data_source_schemas": {TYPE: {"version": 0, "block": BLOCK}}}
  BLOCK = {"attributes": {NAME: {"type": CTY, "required"|"optional"|"computed": true}},
           "block_types": {NAME: {"nesting_mode": "list"|"set"|"single", "block": BLOCK,
                                  "min_items": N, "max_items": N}}}

Both come from the cdktf provider wheels that scripts/terraform/extract_provider_schema.py
already reads (cdktf-cdktf-provider-google 16.12.1 = google 6.50.0, cdktf-cdktf-provider-time
11.0.1 = time 0.13.1), which are generated from those providers' own schemas:
- the jsii assembly's `<Class>Config` structs: every argument, its type and whether it is
  optional, and each nested block's struct;
- the generated `lib/<module>/index.js`: per block, list (`new XList(this, "x", false)`), set
  (`..., true`) or at most one (`new XOutputReference(this, "x")`); per attribute, list or set
  (a set's getter wraps it in `Fn.tolist`); and the computed-only attributes (a getter with no
  setter), typed by their getter (getStringAttribute, getNumberAttribute, StringMap, ...).
What the wheel cannot tell: optional vs optional+computed (only `id` is made optional+computed
here), ForceNew, defaults, sensitivity and the provider's own validations. A run that passes
means "consistent with the real schemas", not "deploys".

Only the types terraform/ uses are kept (plus the provider's configuration block), so the
committed files stay small: tests/terraform/plugin_schema_<provider>.json. Run again after
adding a resource type:

  scripts/terraform/.venvs/terraform/bin/python scripts/terraform/plugin_schema.py \
      --provider google|google-beta|time [--wheel PATH.whl] [--also TYPE ...]
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import re
import sys
import tarfile
import tempfile
import zipfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import extract_provider_schema as jsii  # noqa: E402  (same folder: the wheel reader)

ROOT = jsii.ROOT

_CLASS = re.compile(r"^class (\w+) extends ([\w.]+) \{$", re.M)
_GETTER = re.compile(r"^    get (\w+)\(\) \{\n(.*?)\n    \}$", re.M | re.S)
_SETTER = re.compile(r"^    set (\w+)\(value\) \{$", re.M)
_MEMBER = re.compile(r'this\.(_\w+) = new ([\w.]+)\(this, "(\w+)"(?:, (true|false))?\);')
_ATTR_CALL = re.compile(r"this\.(get\w+Attribute)\('(\w+)'\)")

_PRIMITIVE_GETTERS = {
    "getStringAttribute": "string",
    "getNumberAttribute": "number",
    "getBooleanAttribute": "bool",
    "getListAttribute": ["list", "string"],
    "getNumberListAttribute": ["list", "number"],
    "getStringMapAttribute": ["map", "string"],
    "getNumberMapAttribute": ["map", "number"],
    "getBooleanMapAttribute": ["map", "bool"],
}
_MAP_CLASSES = {"cdktf.StringMap": ["map", "string"], "cdktf.NumberMap": ["map", "number"],
                "cdktf.BooleanMap": ["map", "bool"], "cdktf.AnyMap": ["map", "dynamic"]}
# SDKv2 serves `timeouts` as a single nested block; every other at-most-one block is a list
# with max_items 1.
_SINGLE_BLOCKS = {"timeouts"}


class Module:
    """The classes of one generated lib/<module>/index.js: getters, setters, members."""

    def __init__(self, source: str):
        self.classes: dict[str, str] = {}
        starts = list(_CLASS.finditer(source))
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(source)
            self.classes[m[1]] = source[m.start():end]

    # A class the module lacks (the provider's nested blocks have none) has no getters.
    def getters(self, cls: str) -> dict[str, str]:
        return {m[1]: m[2] for m in _GETTER.finditer(self.classes.get(cls, ""))}

    def setters(self, cls: str) -> set[str]:
        return set(_SETTER.findall(self.classes.get(cls, "")))

    def members(self, cls: str) -> dict[str, tuple[str, str, str | None]]:
        """member field -> (class constructed, terraform name, wrapsSet or None)."""
        return {m[1]: (m[2], m[3], m[4]) for m in _MEMBER.finditer(self.classes.get(cls, ""))}


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _getter_type(module: Module, cls: str, body: str) -> tuple[str, object] | None:
    """(terraform name, cty type) of a computed getter, or None when it is not an attribute."""
    call = _ATTR_CALL.search(body)
    if call:
        cty = _PRIMITIVE_GETTERS.get(call[1])
        if cty is None:
            raise SystemExit(f"{cls}: getter {call[1]} has no known type")
        if cty == ["list", "string"] and "Fn.tolist" in body:
            cty = ["set", "string"]
        return call[2], cty
    field = re.fullmatch(r"\s*return this\.(_\w+);", body)
    if not field:
        return None
    member = module.members(cls).get(field[1])
    if member is None:
        return None
    built, name, wraps = member
    if built in _MAP_CLASSES:
        return name, _MAP_CLASSES[built]
    element = re.sub(r"(List|OutputReference)$", "", built) + "OutputReference"
    if element not in module.classes:
        raise SystemExit(f"{cls}.{name}: no class {element}")
    obj = ["object", _object_attributes(module, element)]
    if built.endswith("OutputReference"):
        return name, ["list", obj]
    return name, ["set" if wraps == "true" else "list", obj]


def _object_attributes(module: Module, cls: str) -> dict[str, object]:
    out = {}
    for getter, body in module.getters(cls).items():
        if getter.endswith("Input") or getter in ("internalValue", "fqn"):
            continue
        typed = _getter_type(module, cls, body)
        if typed:
            out[typed[0]] = typed[1]
    return dict(sorted(out.items()))


def _jsii_type(type_ref: dict, is_set: bool) -> object:
    if "primitive" in type_ref:
        return {"string": "string", "number": "number", "boolean": "bool", "any": "dynamic", "json": "dynamic"}[type_ref["primitive"]]
    if "union" in type_ref:
        kinds = [t for t in type_ref["union"]["types"] if t.get("fqn") != "cdktf.IResolvable"]
        if len(kinds) == 1:
            return _jsii_type(kinds[0], is_set)
    if "collection" in type_ref:
        coll = type_ref["collection"]
        elem = _jsii_type(coll["elementtype"], False)
        if coll["kind"] == "map":
            return ["map", elem]
        return ["set" if is_set else "list", elem]
    raise SystemExit(f"no terraform type for {json.dumps(type_ref)}")


def block_schema(types: dict, module: Module, struct_fqn: str, cls: str) -> dict:
    """The BLOCK of one jsii struct (a Config or a nested block) with its generated class."""
    getters = module.getters(cls)
    members = module.members(cls)
    by_name = {name: (built, wraps) for built, name, wraps in members.values()}
    attributes: dict[str, dict] = {}
    blocks: dict[str, dict] = {}
    config_names = set()
    for prop in types[struct_fqn].get("properties", []):
        link = jsii._DOC_LINK.search(jsii._docs(prop))
        name = link["arg"] if link else jsii._snake(prop["name"])
        config_names.add(name)
        required = not prop.get("optional", False)
        struct = jsii._struct_of(prop["type"])
        if struct:
            # The provider's own blocks have no generated class: a struct is at most one
            # block, an array of structs a list.
            many = "collection" in json.dumps(prop["type"])
            built, wraps = by_name.get(name, ("List" if many else "OutputReference", "false"))
            element_cls = re.sub(r"(List|OutputReference)$", "", built) + "OutputReference"
            block = {"block": block_schema(types, module, struct, element_cls)}
            if built.endswith("OutputReference"):
                block["nesting_mode"] = "single" if name in _SINGLE_BLOCKS else "list"
                if block["nesting_mode"] == "list":
                    block["max_items"] = 1
            else:
                block["nesting_mode"] = "set" if wraps == "true" else "list"
            if required:
                block["min_items"] = 1
            blocks[name] = block
            continue
        body = getters.get(_camel(name), "")
        entry: dict = {"type": _jsii_type(prop["type"], "Fn.tolist" in body)}
        if required:
            entry["required"] = True
        else:
            entry["optional"] = True
            if name == "id":
                entry["computed"] = True
        attributes[name] = entry
    for getter, body in getters.items():
        if getter.endswith("Input") or getter in ("internalValue", "fqn") or getter in module.setters(cls):
            continue
        typed = _getter_type(module, cls, body)
        if typed and typed[0] not in config_names:
            attributes[typed[0]] = {"type": typed[1], "computed": True}
    out: dict = {"attributes": dict(sorted(attributes.items()))}
    if blocks:
        out["block_types"] = dict(sorted(blocks.items()))
    return out


def _module_source(tar: tarfile.TarFile, fqn: str, types: dict) -> Module:
    filename = types[fqn]["locationInModule"]["filename"]  # src/<module>/index.ts
    member = tar.extractfile("package/lib/" + filename[len("src/"):].replace(".ts", ".js"))
    assert member is not None, filename
    return Module(member.read().decode())


def build(wheel: pathlib.Path, wanted: dict[str, set[str]]) -> dict:
    with zipfile.ZipFile(wheel) as whl:
        tgz = whl.read(jsii.ASSEMBLY)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/.jsii")
        assert member is not None
        assembly = json.load(member)
        types = assembly["types"]
        index = jsii.config_interfaces(assembly)
        out: dict = {
            "format": "terraform providers schema -json (one provider), built by scripts/terraform/plugin_schema.py",
            "source": f"PyPI {jsii.PACKAGE}=={jsii.VERSION}",
            "provider_version": jsii._provider_version(assembly),
        }
        config_name = "".join(part.capitalize() for part in jsii.PROVIDER.split("-")) + "ProviderConfig"
        provider_fqn = next(f for f in types if f.endswith(f".provider.{config_name}"))
        module = _module_source(tar, provider_fqn, types)
        provider_block = block_schema(types, module, provider_fqn, config_name.removesuffix("Config"))
        provider_block["attributes"].pop("alias", None)  # a cdktf meta-argument, not in the schema
        out["provider"] = {"version": 0, "block": provider_block}
        for kind, key in (("resource", "resource_schemas"), ("data", "data_source_schemas")):
            out[key] = {}
            for tf_type in sorted(wanted[kind]):
                fqn = index.get((kind, tf_type))
                if fqn is None:
                    raise SystemExit(f"not in {jsii.PACKAGE}=={jsii.VERSION}: {kind} {tf_type}")
                module = _module_source(tar, fqn, types)
                cls = fqn.rsplit(".", 1)[1].removesuffix("Config")
                out[key][tf_type] = {"version": 0, "block": block_schema(types, module, fqn, cls)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=sorted(jsii.PROVIDERS), default="google")
    parser.add_argument("--wheel", type=pathlib.Path, help="a downloaded wheel of the provider's pinned cdktf package")
    parser.add_argument("--terraform-dir", type=pathlib.Path, default=ROOT / "terraform")
    parser.add_argument("--also", action="append", default=[], help="another resource type to keep (e.g. used only by a test)")
    parser.add_argument("--out", type=pathlib.Path, help="[tests/terraform/plugin_schema_<provider>.json]")
    args = parser.parse_args(argv)
    jsii.select(args.provider)
    out = args.out or ROOT / "tests" / "terraform" / f"plugin_schema_{args.provider}.json"
    wanted = jsii.used_types(args.terraform_dir)  # google-beta: its beta-only types alone
    wanted["resource"].update(args.also)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or jsii.download_wheel(pathlib.Path(tmp))
        schema = build(wheel, wanted)
    out.write_text(json.dumps(schema, indent=1) + "\n")
    print(f"wrote {out} ({len(schema['resource_schemas'])} resources, {len(schema['data_source_schemas'])} data sources, provider {schema['provider_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
