"""bench/RESULTS.md: figures, machine, date, commit, the command, notes."""

from __future__ import annotations

import time
from pathlib import Path

from .common import Run, commit, machine


def write_results(run: Run, path: Path) -> None:
    m = machine()
    a = run.args
    kind = "SMALL development run (not the benchmark)" if a.small else ("quick run" if a.quick else "full run")
    lines = [
        "# oddsbatch benchmark results",
        "",
        f"Written by `make bench` (`python -m bench {run.argv}`): {kind}.",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(run.started))}, {run.seconds:.0f} s",
        f"- Commit: {commit()}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at the end {m['load']}",
        f"- Sections: {', '.join(sorted(a.sections))}; settle delays {', '.join(f'{s:g}' for s in a.settle)} s "
        f"(first = shipped default); seed {a.seed}",
        "",
        "| Figure | Value | Target | Met | Notes | Reproduce |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in run.figures:
        value = f"{f.value:.3g}" if isinstance(f.value, float) else str(f.value)
        met = "" if not f.target else ("yes" if f.met else "**no**")
        note = f.note.replace("|", "/")
        lines.append(f"| `{f.name}` | {value} {f.unit} | {f.target} | {met} | {note} | `{f.reproduce}` |")
    if run.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    if getattr(run, "profile", ""):
        lines += ["", "## cProfile of transform + serialization (tottime, top 8)", "", "```", run.profile, "```"]
    path.write_text("\n".join(lines) + "\n")
