"""Figures, targets and the reproduce command shared by every section."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    section: str
    name: str
    value: object
    unit: str = ""
    target: str = ""  # e.g. "<= 2 per table"
    met: bool | None = None  # None: no target
    note: str = ""
    reproduce: str = ""

    def line(self) -> str:
        value = f"{self.value:.3g}" if isinstance(self.value, float) else str(self.value)
        parts = [f"bench: {self.name}={value}{(' ' + self.unit) if self.unit else ''}"]
        if self.target:
            parts.append(f"target {self.target}: {'MET' if self.met else 'MISSED'}")
        if self.note:
            parts.append(self.note)
        parts.append(f"reproduce: {self.reproduce}")
        return " | ".join(parts)


@dataclass
class Run:
    args: object
    figures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def reproduce(self, section: str, extra: str = "") -> str:
        flags = [f"--only {section}"]
        if self.args.quick:
            flags.append("--quick")
        if self.args.small:
            flags.append("--small")
        if getattr(self.args, "backfill_snapshots", None) and section == "backfill":
            flags.append(f"--backfill-snapshots {self.args.backfill_snapshots}")
        if extra:
            flags.append(extra)
        return f'make bench BENCH_ARGS="{" ".join(flags)}"'

    def add(self, section: str, name: str, value, unit: str = "", target: str = "", met: bool | None = None,
            note: str = "", extra: str = "") -> Figure:
        fig = Figure(section, name, value, unit, target, met, note, self.reproduce(section, extra))
        self.figures.append(fig)
        print(fig.line(), flush=True)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"bench: note: {text}", flush=True)


def log(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "python": platform.python_version(), "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def median(values):
    values = sorted(values)
    n = len(values)
    if not n:
        return float("nan")
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
