"""A local Terraform provider plugin that serves a real provider's schema and emulates CRUD.

No provider binary can be fetched on these machines, so the real-Terraform tests
(tests/terraform/test_real_terraform.py) install this plugin as hashicorp/google 6.50.0 and
hashicorp/time 0.13.1 (`init -plugin-dir`, a shell wrapper per provider, see
scripts/terraform/realterraform.py). Terraform then does everything it does against the real
providers: it decodes every value with the provider's schema (types, required arguments,
nesting and item counts of blocks, computed attributes), evaluates validations and
references, plans, applies, refreshes and destroys. The schema is the real one, built by
scripts/terraform/plugin_schema.py from the cdktf wheels; the CRUD is emulated:

- plan: the proposed new state, with each computed attribute that has no value yet unknown
  (create) or kept from the prior state (update); no replacement is ever required;
- apply: the planned state with each unknown filled by a plausible value (ids, emails,
  members, numbers in the formats Google uses, so that outputs read like real ones);
- read: the state as it is (nothing changes outside Terraform), data sources get plausible
  computed values.

Protocol: tfplugin6 over go-plugin's gRPC transport with AutoMTLS (the stubs, the go-plugin
controller and stdio services and the self-signed certificate come from PyPI `tf==1.2.0`).
Usage (by Terraform, through the wrapper): plugin.py --schema tests/terraform/plugin_schema_google.json
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import pathlib
import sys
import tempfile
from concurrent import futures

import grpc
import msgpack
from msgpack.ext import ExtType
from tf.gen import grpc_controller_pb2 as controller_pb
from tf.gen import grpc_controller_pb2_grpc as controller_rpc
from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc
from tf.runner import _self_signed_cert

# go-plugin's handshake: Terraform sets this cookie; a plugin started by hand refuses to run.
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"


class _Unknown:
    """A value not known until apply (cty's unknown: msgpack extension 0)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


def _ext_hook(code: int, data: bytes):
    # 0: unknown; 12: unknown with refinements (cty 1.13+, what Terraform 1.6+ sends).
    if code in (0, 12):
        return UNKNOWN
    return ExtType(code, data)


def decode(value: pb.DynamicValue):
    if value.msgpack:
        return msgpack.unpackb(value.msgpack, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    if value.json:
        return json.loads(value.json)
    return None


def encode(value) -> pb.DynamicValue:
    return pb.DynamicValue(msgpack=msgpack.packb(value, default=lambda o: ExtType(0, b"\x00") if o is UNKNOWN else o))


# --- schema ---------------------------------------------------------------------------------

_NESTING = {"single": pb.Schema.NestedBlock.SINGLE, "list": pb.Schema.NestedBlock.LIST, "set": pb.Schema.NestedBlock.SET}


def block_pb(block: dict) -> pb.Schema.Block:
    return pb.Schema.Block(
        attributes=[
            pb.Schema.Attribute(name=name, type=json.dumps(a["type"]).encode(), required=a.get("required", False),
                                optional=a.get("optional", False), computed=a.get("computed", False))
            for name, a in block.get("attributes", {}).items()
        ],
        block_types=[
            pb.Schema.NestedBlock(type_name=name, block=block_pb(b["block"]), nesting=_NESTING[b["nesting_mode"]],
                                  min_items=b.get("min_items", 0), max_items=b.get("max_items", 0))
            for name, b in block.get("block_types", {}).items()
        ],
    )


def walk(block: dict, obj, on_attribute):
    """obj (one object of block) with on_attribute(name, attribute schema, value) applied to
    every attribute, nested blocks included."""
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for name, attr in block.get("attributes", {}).items():
        out[name] = on_attribute(name, attr, out.get(name))
    for name, nested in block.get("block_types", {}).items():
        value = out.get(name)
        if nested["nesting_mode"] == "single":
            out[name] = walk(nested["block"], value, on_attribute)
        elif isinstance(value, list):
            out[name] = [walk(nested["block"], item, on_attribute) for item in value]
    return out


# --- plausible values of computed attributes --------------------------------------------------

# Formats Google uses for what terraform/ reads back (outputs, references), filled from the
# resource's own arguments: "{project}" is its project or the provider's.
PLAUSIBLE = {
    "google_service_account": {
        "email": "{account_id}@{project}.iam.gserviceaccount.com",
        "member": "serviceAccount:{account_id}@{project}.iam.gserviceaccount.com",
        "name": "projects/{project}/serviceAccounts/{account_id}@{project}.iam.gserviceaccount.com",
        "id": "projects/{project}/serviceAccounts/{account_id}@{project}.iam.gserviceaccount.com",
    },
    "google_pubsub_topic": {"id": "projects/{project}/topics/{name}"},
    "google_pubsub_subscription": {"id": "projects/{project}/subscriptions/{name}"},
    "google_project_iam_custom_role": {"id": "projects/{project}/roles/{role_id}", "name": "projects/{project}/roles/{role_id}"},
    "google_bigquery_dataset": {"id": "projects/{project}/datasets/{dataset_id}"},
    "google_storage_bucket": {"id": "{name}", "url": "gs://{name}", "self_link": "https://www.googleapis.com/storage/v1/b/{name}"},
    "google_project": {"number": "123456789012", "id": "projects/{project_id}", "name": "{project_id}"},
    "google_storage_project_service_account": {
        "email_address": "service-123456789012@gs-project-accounts.iam.gserviceaccount.com",
        "member": "serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com",
    },
    "google_project_service_identity": {
        "email": "service-123456789012@gcp-sa-{short_service}.iam.gserviceaccount.com",
        "member": "serviceAccount:service-123456789012@gcp-sa-{short_service}.iam.gserviceaccount.com",
    },
}


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return f"emulated-{key}"


def plausible(type_name: str, name: str, cty, fields: dict):
    template = PLAUSIBLE.get(type_name, {}).get(name)
    if template is not None:
        return template.format_map(fields)
    if cty == "string":
        if name == "id":
            digest = hashlib.sha256(json.dumps(sorted((k, str(v)) for k, v in fields.items())).encode()).hexdigest()[:12]
            return f"{type_name}/{digest}"
        return f"emulated-{name}"
    if cty == "number":
        return 1
    if cty == "bool":
        return False
    if isinstance(cty, list) and cty[0] == "map":
        return {}
    if isinstance(cty, list):
        return []
    return None


# --- the servicer ----------------------------------------------------------------------------


class Provider(rpc.ProviderServicer):
    def __init__(self, schema: dict):
        self.schema = schema
        self.provider_config: dict = {}

    def _block(self, kind: str, type_name: str) -> dict:
        return self.schema[kind][type_name]["block"]

    def _fields(self, obj: dict) -> _Fields:
        fields = _Fields({k: v for k, v in obj.items() if isinstance(v, str)})
        fields.setdefault("project", self.provider_config.get("project") or "emulated-project")
        if isinstance(obj.get("service"), str):
            fields["short_service"] = obj["service"].split(".")[0]
        return fields

    def _fill_unknowns(self, type_name: str, block: dict, obj):
        fields = self._fields(obj) if isinstance(obj, dict) else _Fields()
        return walk(block, obj, lambda name, attr, value: plausible(type_name, name, attr["type"], fields) if value is UNKNOWN else value)

    def GetMetadata(self, request, context):
        return pb.GetMetadata.Response(
            resources=[pb.GetMetadata.ResourceMetadata(type_name=t) for t in self.schema["resource_schemas"]],
            data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=t) for t in self.schema["data_source_schemas"]],
        )

    def GetProviderSchema(self, request, context):
        def schema(entry):
            return pb.Schema(version=entry.get("version", 0), block=block_pb(entry["block"]))

        return pb.GetProviderSchema.Response(
            provider=schema(self.schema["provider"]),
            resource_schemas={t: schema(s) for t, s in self.schema["resource_schemas"].items()},
            data_source_schemas={t: schema(s) for t, s in self.schema["data_source_schemas"].items()},
            server_capabilities=pb.ServerCapabilities(plan_destroy=True),
        )

    def ValidateProviderConfig(self, request, context):
        return pb.ValidateProviderConfig.Response()

    def ValidateResourceConfig(self, request, context):
        return pb.ValidateResourceConfig.Response()

    def ValidateDataResourceConfig(self, request, context):
        return pb.ValidateDataResourceConfig.Response()

    def ConfigureProvider(self, request, context):
        config = decode(request.config)
        self.provider_config = {k: v for k, v in (config or {}).items() if isinstance(v, str)}
        return pb.ConfigureProvider.Response()

    def UpgradeResourceState(self, request, context):
        # The state was written by this plugin at the same schema version: as it is.
        state = json.loads(request.raw_state.json) if request.raw_state.json else None
        return pb.UpgradeResourceState.Response(upgraded_state=encode(state))

    def ReadResource(self, request, context):
        return pb.ReadResource.Response(new_state=request.current_state, private=request.private)

    def PlanResourceChange(self, request, context):
        proposed = decode(request.proposed_new_state)
        prior = decode(request.prior_state)
        if proposed is None or prior is not None:
            # Destroy, or update: computed attributes keep their prior values (proposed has them).
            return pb.PlanResourceChange.Response(planned_state=request.proposed_new_state, planned_private=request.prior_private)
        block = self._block("resource_schemas", request.type_name)
        planned = walk(block, proposed, lambda name, attr, value: UNKNOWN if attr.get("computed") and value is None else value)
        return pb.PlanResourceChange.Response(planned_state=encode(planned))

    def ApplyResourceChange(self, request, context):
        planned = decode(request.planned_state)
        if planned is None:
            return pb.ApplyResourceChange.Response(new_state=request.planned_state)
        block = self._block("resource_schemas", request.type_name)
        return pb.ApplyResourceChange.Response(new_state=encode(self._fill_unknowns(request.type_name, block, planned)),
                                               private=request.planned_private)

    def ReadDataSource(self, request, context):
        config = decode(request.config)
        block = self._block("data_source_schemas", request.type_name)
        state = walk(block, config, lambda name, attr, value: UNKNOWN if attr.get("computed") and value is None else value)
        return pb.ReadDataSource.Response(state=encode(self._fill_unknowns(request.type_name, block, state)))

    def GetFunctions(self, request, context):
        return pb.GetFunctions.Response()

    def StopProvider(self, request, context):
        return pb.StopProvider.Response()


def serve(schema: dict) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rpc.add_ProviderServicer_to_server(Provider(schema), server)
    stopped = []

    class Controller(controller_rpc.GRPCControllerServicer):
        def Shutdown(self, request, context):
            stopped.append(True)
            return controller_pb.Empty()

    class Stdio(stdio_rpc.GRPCStdioServicer):
        def StreamStdio(self, request, context):
            return iter([])

    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    with tempfile.TemporaryDirectory(prefix="tfplugin-") as tmp:
        socket = f"{tmp}/plugin.sock"
        chain, credentials = _self_signed_cert()
        server.add_secure_port(f"unix://{socket}", credentials)
        server.start()
        # go-plugin handshake line: core version | app protocol | network | address | grpc | server cert
        print(f"1|6|unix|{socket}|grpc|{base64.b64encode(chain).decode().rstrip('=')}", flush=True)
        # wait_for_termination(t) returns True on timeout: poll until Terraform shuts us down
        # (Shutdown) or closes our stdin's parent (the process is killed then anyway).
        while server.wait_for_termination(0.05):
            if stopped:
                break
        server.stop(grace=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", type=pathlib.Path, required=True, help="a schema JSON of scripts/terraform/plugin_schema.py")
    args = parser.parse_args(argv)
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        print("This binary is a plugin. These are not meant to be executed directly.", file=sys.stderr)
        return 1
    serve(json.loads(args.schema.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
