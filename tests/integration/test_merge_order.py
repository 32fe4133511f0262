"""The MERGE's dedup order and a live holder whose lease runs out, against the emulator stack.

- Two generations of one natural key in one round: the newer generation wins, whatever order
  the staged rows are in; at equal generations the (generation, object) order falls to the object
  name, the last-named wins; and merging the two in two rounds, in either order, ends the same.
- Two generations of one object in one round, through the functions: the bucket keeps only the
  newest, the older marker is `gone`, the table holds the newer generation's rows only.
- A live holder whose lease runs out (it is held at the after_load pause point, past
  ODDSBATCH_LEASE_SECONDS): the next event of its key takes the lock over (stale_takeover) and
  merges both files; the first holder, let go then, fails its fence (the renew right before its
  MERGE) and never runs its MERGE; exactly one MERGE, nothing lost or duplicated, and the logs
  show no two holders of the key at once except by that takeover. Every step waits on the event
  before it (a file, a log line, the lease passing), so a loaded machine cannot reorder them.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import date, datetime, timezone

import pytest
from google.cloud import bigquery

from .staged_upload import stage_bytes
from oddsbatch import staging, synth
from oddsbatch.config import Settings
from oddsbatch.local.stack import Stack
from oddsbatch.paths import batch_key
from oddsbatch.tables import table_for_endpoint
from oddsbatch.warehouse import Warehouse
from tests.chaos.test_chaos import holder_violations, records_since
from tests.integration.test_end_to_end import comparable, expected_rows, merge_jobs, table_rows, upload_all
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
DAY = date(2025, 2, 11)


@pytest.fixture
def warehouse(stack):
    settings = Settings.from_env("game-lines", {**stack.env, "ODDSBATCH_TABLE": "odds_api_game_lines"})
    return Warehouse(settings, table_for_endpoint("game-lines"))


def row(spec, game_id: str, **values) -> dict:
    out = {c: None for c in spec.staged_columns}
    out.update(game_date=DAY.isoformat(), game_id=game_id, snapshot_timestamp="2025-02-11T18:00:00Z",
               snapshot_source="object_name", bookmaker_key="draftkings", market_key="h2h", outcome_name="LAL",
               price_decimal=1.5, price_american=-200, price_format="american", source_object="a.json",
               source_generation=5)
    out.update(values)
    return out


def merge(warehouse, rows: list[dict]):
    """One round: these rows staged together, one MERGE."""
    spec = warehouse.spec
    groups = [({c: r[c] for c in spec.head_columns}, [{c: r[c] for c in spec.line_columns if r[c] is not None}])
              for r in rows]
    run_id = uuid.uuid4().hex[:12]
    staging_id = stage_bytes(warehouse, run_id, staging.encode(groups))
    try:
        return warehouse.merge(run_id, staging_id, DAY)
    finally:
        warehouse.drop_staging(staging_id)


def kept(stack, warehouse, game_id: str) -> list[tuple]:
    query = (f"SELECT price_decimal, source_generation, source_object FROM {warehouse.target} "
             f"WHERE game_date = @game_date AND game_id = @game_id")
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", DAY),
                                                       bigquery.ScalarQueryParameter("game_id", "STRING", game_id)])
    return [tuple(r.values()) for r in stack.bigquery().query(query, job_config=config).result()]


@pytest.mark.parametrize("newer_first", [False, True])
def test_two_generations_of_one_key_in_one_round_the_newer_wins(stack, warehouse, newer_first):
    spec, game = warehouse.spec, f"gen-{newer_first}"
    older, newer = row(spec, game, price_decimal=1.9, source_generation=5), row(spec, game, price_decimal=1.4,
                                                                                source_generation=7)
    result = merge(warehouse, [newer, older] if newer_first else [older, newer])
    assert (result.inserted, result.updated) == (1, 0)  # one key: the dedup kept one source row
    assert kept(stack, warehouse, game) == [(1.4, 7, "a.json")]


@pytest.mark.parametrize("later_first", [False, True])
def test_at_equal_generations_the_last_named_object_wins(stack, warehouse, later_first):
    spec, game = warehouse.spec, f"tie-{later_first}"
    a, b = row(spec, game, price_decimal=1.2, source_object="a.json"), row(spec, game, price_decimal=1.8,
                                                                           source_object="b.json")
    merge(warehouse, [b, a] if later_first else [a, b])
    assert kept(stack, warehouse, game) == [(1.8, 5, "b.json")]
    # negative control: the generation comes first, a later name does not beat a newer generation
    control = f"tie-control-{later_first}"
    z_old, a_new = row(spec, control, price_decimal=1.1, source_object="z.json", source_generation=4), \
        row(spec, control, price_decimal=2.2, source_object="a.json", source_generation=6)
    merge(warehouse, [a_new, z_old] if later_first else [z_old, a_new])
    assert kept(stack, warehouse, control) == [(2.2, 6, "a.json")]


def test_two_rounds_in_either_order_end_the_same(stack, warehouse):
    spec = warehouse.spec
    ends = []
    for order, game in ((("a", "b"), "order-ab"), (("b", "a"), "order-ba")):
        rows = {"a": row(spec, game, price_decimal=1.2, source_object="a.json", source_generation=7),
                "b": row(spec, game, price_decimal=1.8, source_object="b.json", source_generation=7)}
        for name in order:
            merge(warehouse, [rows[name]])
        ends.append(kept(stack, warehouse, game))
    assert ends == [[(1.8, 7, "b.json")]] * 2


def _reprice(data: bytes) -> bytes:
    """The same snapshot with every price of its first market changed (a corrected re-upload)."""
    doc = json.loads(data)
    for outcome in doc["bookmakers"][0]["markets"][0]["outcomes"]:
        outcome["price"] = outcome["price"] + (7 if outcome["price"] > 0 else -7)
    return json.dumps(doc).encode()


def test_two_generations_of_one_object_in_one_round(stack):
    day = "2025-02-13"
    name, data = next(f for f in synth.synthesize_day(date.fromisoformat(day), games=1, snapshots=1, seed=21)
                      if f[0].startswith("odds-api/game-lines/"))
    offset = len(stack.log_text("game_lines"))
    bucket = stack.storage().bucket(stack.bucket)
    first, second = bucket.blob(name), bucket.blob(name)
    first.upload_from_string(data, content_type="application/json")
    second.upload_from_string(_reprice(data), content_type="application/json")  # within the settle window
    assert second.generation > first.generation
    stack.wait_idle(expected_events=2)
    spec = table_for_endpoint("game-lines")
    got = Counter(comparable(r, spec) for r in table_rows(stack, "game-lines", day))
    assert got == expected_rows([(name, _reprice(data))], {name: second.generation}, "game-lines")
    assert got != expected_rows([(name, data)], {name: first.generation}, "game-lines")  # the edit shows
    merged = [r for r in records_since(stack, "game_lines", offset) if r.get("message") == "merged"]
    assert [(r["files"], r["gone"]) for r in merged] == [(1, 1)]  # one round: the older generation is gone


LEASE = 3.0


@pytest.fixture(scope="module")
def short_lease_stack(tmp_path_factory):
    """Leases of 3 s, and the first holder to finish its load stays there (the pause point) until
    the test lets it go: a live holder outlives its lease, for as long as the test needs."""
    pause = tmp_path_factory.mktemp("pause")
    st = Stack(tmp_path_factory.mktemp("short-lease"), settle_seconds=0.5, extra_env={
        "ODDSBATCH_LEASE_SECONDS": str(LEASE),
        "ODDSBATCH_FAULT_PAUSE_AT": "after_load",
        "ODDSBATCH_FAULT_PAUSE_DIR": str(pause),
    })
    st.start()
    try:
        yield st, pause
    finally:
        (pause / "after_load.resume").touch()  # never leave a holder paused
        st.stop()


def _logged(stack, message: str, **fields) -> list[dict]:
    return [r for r in records_since(stack, "game_lines", 0)
            if r.get("message") == message and all(r.get(k) == v for k, v in fields.items())]


def test_a_live_holder_whose_lease_runs_out(short_lease_stack):
    stack, pause = short_lease_stack
    day = "2025-02-14"
    files = [f for f in synth.synthesize_day(date.fromisoformat(day), games=1, snapshots=2, seed=8)
             if f[0].startswith("odds-api/game-lines/")]
    assert len(files) == 2
    generations = upload_all(stack, files[:1])  # its holder settles, loads, then stays at after_load
    wait_for((pause / "after_load.paused").exists, "the first holder at after_load")
    # Its lease was last pushed out before its round; paused, it only beats. Once the lease has
    # passed, the next event of the key finds it stale.
    key = batch_key("game-lines", day)
    lock = stack.firestore().collection("oddsbatch_locks").document(key).get()
    lease_until = lock.to_dict()["lease_until"]
    wait_for(lambda: datetime.now(timezone.utc) > lease_until, f"the lease of {key} to pass", poll=0.1)
    generations.update(upload_all(stack, files[1:]))  # this event finds the lease passed: takeover
    # The taker merges both files while the first holder is still paused; then the first holder goes on.
    wait_for(lambda: _logged(stack, "merged", batch_key=key), "the taker's MERGE")
    (pause / "after_load.resume").touch()
    wait_for(lambda: _logged(stack, "lock_lost", batch_key=key), "the first holder learning it lost the lock")
    stack.wait_idle(expected_events=2, timeout=60)
    spec = table_for_endpoint("game-lines")
    got = Counter(comparable(r, spec) for r in table_rows(stack, "game-lines", day))
    assert got == expected_rows(files, generations, "game-lines")
    records = records_since(stack, "game_lines", 0)
    acquired = [r for r in records if r.get("message") == "lock_acquired"]
    assert [r["how"] for r in acquired] == ["created", "stale_takeover"], acquired
    lost = [r for r in records if r.get("message") == "lock_write_lost"]
    assert [r["nonce"] for r in lost] == [acquired[0]["nonce"]]  # the first holder learned it at a write
    assert any(r.get("message") == "lock_lost" for r in records)
    violations, takeovers, abnormal = holder_violations(records)
    assert violations == [] and takeovers == 1 and abnormal == {acquired[0]["nonce"]}
    assert len(merge_jobs(stack, "odds_api_game_lines")) == 1  # the fenced holder never ran its MERGE
    merged = [r for r in records if r.get("message") == "merged"]
    assert [r["files"] for r in merged] == [2]  # the taker merged both files
