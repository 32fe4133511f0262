"""Dump a Terraform configuration as JSON for the tests (run in the terraform tool venv).

  python tfdump.py tfparse DIR [VARS.tfvars ...]   tfparse's evaluated view: every resource,
                                                   data source, local, output and variable
                                                   with variables, locals and file() applied
  python tfdump.py hcl DIR                         python-hcl2's raw view of each DIR/*.tf
                                                   ({file name: parsed body}), blocks marked
                                                   with __is_block__

tfparse runs with stop_on_hcl_error=True: a file that does not parse is an error, never an
empty result.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys


def dump_tfparse(directory: str, var_files: list[str]) -> dict:
    import tfparse

    root = os.path.abspath(directory)
    # tfparse resolves tfvars paths relative to the module directory.
    vars_paths = [os.path.relpath(os.path.abspath(v), root) for v in var_files]
    return tfparse.load_from_path(root, stop_on_hcl_error=True, vars_paths=vars_paths or None)


def dump_hcl(directory: str) -> dict:
    import hcl2

    out = {}
    for tf in sorted(pathlib.Path(directory).glob("*.tf")):
        with tf.open() as fh:
            out[tf.name] = hcl2.load(fh)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] not in ("tfparse", "hcl"):
        print(__doc__, file=sys.stderr)
        return 2
    result = dump_tfparse(argv[2], argv[3:]) if argv[1] == "tfparse" else dump_hcl(argv[2])
    json.dump(result, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
