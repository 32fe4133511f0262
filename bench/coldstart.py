"""Cold start: import time of functions/<fn>/main.py in a fresh interpreter, and the ignore
path: after handling an event for an object outside the function's prefix, neither
google.cloud.bigquery nor google.cloud.firestore may be in sys.modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .common import REPO, Run, median

PROBE = r'''
import json, sys, time
t0 = time.perf_counter()
import oddsbatch.handler
t1 = time.perf_counter()
import importlib.util
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
main = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main)
t2 = time.perf_counter()
from cloudevents.http import CloudEvent
event = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "//storage.googleapis.com/b",
                    "id": "bench-1"}, {"bucket": "oddsbatch-landing", "name": "scraper-logs/2025-01-21/run.json"})
main._handle(event)
t3 = time.perf_counter()
print(json.dumps({"import_s": t2 - t0, "handler_s": t1 - t0, "ignore_s": t3 - t2,
                  "bigquery": "google.cloud.bigquery" in sys.modules,
                  "firestore": "google.cloud.firestore" in sys.modules,
                  "storage": "google.cloud.storage" in sys.modules}))
'''


def run(r: Run) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODDSBATCH_")}
    env.update({"ODDSBATCH_PROJECT": "bench-project", "ODDSBATCH_BUCKET": "oddsbatch-landing",
                "PYTHONPATH": str(REPO / "shared")})
    times = 3 if r.args.small else 7
    for fn in ("game_lines", "player_props"):
        results = []
        for _ in range(times):
            out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "functions" / fn / "main.py")], env=env,
                                 capture_output=True, text=True, check=True, cwd=REPO)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        imp = median([x["import_s"] for x in results]) * 1000
        handler = median([x["handler_s"] for x in results]) * 1000
        r.add("coldstart", f"{fn}_import_ms", round(imp), "ms",
              note=f"median of {times} fresh interpreters; functions/{fn}/main.py incl. functions_framework; "
                   f"oddsbatch.handler alone {handler:.0f} ms")
        loaded = {k for k in ("bigquery", "firestore", "storage") if any(x[k] for x in results)}
        clean = not ({"bigquery", "firestore"} & loaded)
        r.add("coldstart", f"{fn}_ignore_path_imports", ",".join(sorted(loaded)) or "none",
              target="neither bigquery nor firestore", met=clean,
              note=f"sys.modules after handling an ignored event; ignore took "
                   f"{median([x['ignore_s'] for x in results]) * 1000:.2f} ms")
