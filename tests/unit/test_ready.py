"""`oddsbatch ready` and the ingest log writer: pure logic with fakes (no emulator)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from oddsbatch import cli, ingest_log, ready
from oddsbatch.errors import TerminalError, TransientError
from oddsbatch.paths import batch_key

DAY = date(2025, 1, 21)
NOW = datetime(2025, 1, 21, 12, 0, tzinfo=timezone.utc)


def obj(n: int) -> tuple[str, int]:
    return (f"odds-api/game-lines/2025-01-21/e{n}-BOSNYK/20250121_1{n:05d}-snap-1000.json", 100 + n)


class FakeSources:
    """What CloudSources reads, in memory; counts which reads a check made."""

    def __init__(self, objects=(), done=(), pending=0, lock=None):
        self.bucket = {o: NOW - timedelta(minutes=60 - i) for i, o in enumerate(objects)}  # later = newer
        self.done, self.markers, self.lock_doc = set(done), pending, lock
        self.reads: list[str] = []
        self.fail: Exception | None = None

    def pending(self, key):
        self.reads.append("pending")
        if self.fail:
            raise self.fail
        return self.markers

    def lock(self, key):
        self.reads.append("lock")
        return self.lock_doc

    def objects(self, game_date):
        self.reads.append("objects")
        return dict(self.bucket)

    def finished(self, key, game_date):
        self.reads.append("finished")
        return set(self.done)


def test_every_object_finished_and_nothing_queued_is_ready():
    files = [obj(i) for i in range(3)]
    state = ready.check_key("game-lines", DAY, FakeSources(files, done=files), now=NOW)
    assert state.ready and state.objects == 3 and state.missing == []
    assert state.describe() == "game-lines: ready (3 files finished)"


def test_a_quarantined_file_is_finished_not_missing():
    """The ledger lists a quarantined generation as finished: it is in `done` though no row came of it."""
    good, bad = obj(1), obj(2)
    assert ready.check_key("game-lines", DAY, FakeSources([good, bad], done=[good, bad]), now=NOW).ready
    # negative control: the same bucket without the ledger's entry for the bad file is not ready
    state = ready.check_key("game-lines", DAY, FakeSources([good, bad], done=[good]), now=NOW)
    assert not state.ready and state.missing == [bad]


def test_missing_files_are_reported_newest_first():
    files = [obj(i) for i in range(5)]
    state = ready.check_key("game-lines", DAY, FakeSources(files, done=files[:2]), now=NOW)
    assert not state.ready
    assert state.missing == [files[4], files[3], files[2]]
    assert state.describe() == f"game-lines: 0 pending, 3 missing of 5, newest missing {files[4][0]}"


def test_pending_work_is_not_ready_and_spares_the_bucket_and_the_table():
    files = [obj(1)]
    sources = FakeSources(files, done=files, pending=2)
    state = ready.check_key("game-lines", DAY, sources, now=NOW)
    assert not state.ready and state.pending == 2 and state.objects is None
    assert sources.reads == ["pending", "lock"]
    full = ready.check_key("game-lines", DAY, sources, full=True, now=NOW)
    assert full.objects == 1 and full.describe() == "game-lines: 2 pending, 0 missing of 1"


def test_a_live_lock_is_not_ready_a_stale_one_is_no_obstacle():
    files = [obj(1)]
    live = {"owner": "evt-7", "lease_until": NOW + timedelta(seconds=30)}
    state = ready.check_key("game-lines", DAY, FakeSources(files, done=files, lock=live), now=NOW)
    assert not state.ready and state.lock_owner == "evt-7"
    assert state.describe() == "game-lines: 0 pending, lock held by evt-7"
    stale = {"owner": "evt-7", "lease_until": NOW - timedelta(seconds=1)}
    assert ready.check_key("game-lines", DAY, FakeSources(files, done=files, lock=stale), now=NOW).ready


def test_transient_errors_mean_not_ready_terminal_errors_end_the_run():
    from google.api_core.exceptions import Forbidden, ServiceUnavailable

    sources = FakeSources([obj(1)], done=[obj(1)])
    sources.fail = ServiceUnavailable("firestore down")
    state = ready.check_key("game-lines", DAY, sources, now=NOW)
    assert not state.ready and "firestore down" in state.error
    sources.fail = Forbidden("missing role")
    with pytest.raises(TerminalError):
        ready.check_key("game-lines", DAY, sources, now=NOW)


class Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def _states(is_ready: bool, full: bool):
    files = [obj(1)]
    return [ready.check_key("game-lines", DAY, FakeSources(files, done=files if is_ready else [], pending=0),
                            full=full, now=NOW)]


def test_wait_polls_with_growing_capped_intervals_until_ready():
    clock, fulls = Clock(), []
    answers = iter([False] * 8 + [True])

    def check(full):
        fulls.append(full)
        return _states(next(answers), full)

    ok, states = ready.wait_until_ready(check, 600, clock=clock, sleep=clock.sleep)
    assert ok and states[0].ready
    assert clock.slept[:3] == [1.0, 1.5, 2.25] and max(clock.slept) == ready.MAX_POLL_SECONDS
    assert not any(fulls)  # never needed a full count


def test_wait_gives_up_after_the_wait_with_a_full_check():
    clock, fulls = Clock(), []

    def check(full):
        fulls.append(full)
        return _states(False, full)

    ok, states = ready.wait_until_ready(check, 10, clock=clock, sleep=clock.sleep)
    assert not ok and fulls[-1] is True and sum(clock.slept) == pytest.approx(10)
    assert states[0].missing == [obj(1)]
    ok, _ = ready.wait_until_ready(check, 0, clock=clock, sleep=clock.sleep)  # --wait 0: one look
    assert not ok and fulls[-2:] == [False, True]


@pytest.mark.parametrize("argv, message", [
    (["ready"], "give --date"),
    (["ready", "--date", "2025-13-01"], "is not a date"),
    (["ready", "--date", "yesterday"], "is not a date"),
    (["ready", "--date", "2025-01-21", "--endpoint", "totals"], "unknown endpoint 'totals'"),
    (["ready", "--date", "2025-01-21", "--wait", "-5"], "give 0 to"),
    (["ready", "--date", "2025-01-21", "--wait", "soon"], "is not a number"),
    (["ready", "--date", "2025-01-21", "--wait", "nan"], "give 0 to"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("oddsbatch ready: ") and message in err


@pytest.fixture
def fake_cloud(monkeypatch, tmp_path):
    monkeypatch.setenv("ODDSBATCH_PROJECT", "p")
    monkeypatch.delenv("ODDSBATCH_BUCKET", raising=False)
    made = {}

    def sources(settings, bucket):
        made[settings.endpoint] = (bucket, made_sources[settings.endpoint])
        return made_sources[settings.endpoint]

    made_sources = {}
    monkeypatch.setattr(ready, "CloudSources", sources)
    return made_sources, made, ["--state-dir", str(tmp_path)]


def test_cmd_ready_exit_0_and_1_with_one_line(capsys, fake_cloud):
    sources, made, state_dir = fake_cloud
    files = [obj(1), obj(2)]
    sources["game-lines"] = FakeSources(files, done=files)
    sources["player-props"] = FakeSources([], done=[])
    assert cli.main(["ready", "--date", "2025-01-21", "--bucket", "b", *state_dir]) == 0
    out, err = capsys.readouterr()
    assert out == ("ready 2025-01-21: game-lines: ready (2 files finished); player-props: ready (0 files finished)\n")
    assert "project p on Google Cloud" in err and made["game-lines"][0] == "b"

    sources["game-lines"] = FakeSources(files, done=files[:1], pending=1)
    assert cli.main(["ready", "--date", "2025-01-21", "--endpoint", "game-lines", "--bucket", "b", *state_dir]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("not ready 2025-01-21 after 0s: game-lines: 1 pending, 1 missing of 2")
    assert files[1][0] in out and "player-props" not in out


def test_cmd_ready_needs_a_bucket(capsys, fake_cloud):
    _, _, state_dir = fake_cloud
    assert cli.main(["ready", "--date", "2025-01-21", *state_dir]) == 2
    assert "no bucket" in capsys.readouterr().err


# -- the ingest log writer ------------------------------------------------------------------------


class FakeClient:
    def __init__(self, insert_errors=None, raise_on_insert=None):
        self.inserted, self.queries = [], []
        self.insert_errors, self.raise_on_insert = insert_errors or [], raise_on_insert

    def insert_rows_json(self, table, rows, row_ids=None, timeout=None):
        if self.raise_on_insert:
            raise self.raise_on_insert
        self.inserted.append((table, rows, row_ids))
        return self.insert_errors

    def query(self, statement, job_config=None, job_id_prefix=None):
        self.queries.append(statement)
        raise AssertionError("the log writer sent a query")


def _holder(client, pending=3, days=(DAY,)):
    from oddsbatch.config import Settings
    from oddsbatch.deadline import Deadline
    from oddsbatch.holder import HeldKey
    from oddsbatch.tables import table_for_endpoint

    settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p"})
    held = [HeldKey(batch_key("game-lines", day), day, None, SimpleNamespace(count=lambda: pending)) for day in days]
    return SimpleNamespace(settings=settings, key=held[0].key, label=held[0].key, game_date=DAY, held=held,
                           spec=table_for_endpoint("game-lines"), deadline=Deadline(540),
                           warehouse=SimpleNamespace(client=client))


def _result(rows=10, last_snapshot=None, days=(DAY,)):
    """A round of 4 merged files (`rows` rows in all) and 1 quarantined one per date."""
    from oddsbatch.holder import RoundResult
    from oddsbatch.ledger import MERGED, QUARANTINED, Entry
    from oddsbatch.pending import Marker, marker_id

    result = RoundResult(run_id="run123")
    for day in days:
        key = batch_key("game-lines", day)
        markers = [Marker(marker_id(key, "b", f"f{i}.json", 1), "b", f"f{i}.json", 1) for i in range(5)]
        shares = [rows // 4] * 3 + [rows - 3 * (rows // 4)]
        result.entries += [Entry(m, MERGED, rows=n) for m, n in zip(markers, shares)]
        result.entries.append(Entry(markers[4], QUARANTINED, reason="bad"))
        if last_snapshot:
            result.last_snapshots[key] = last_snapshot
    return result


def test_record_round_streams_one_row_with_the_run_id_as_insert_id():
    snap = datetime(2025, 1, 21, 23, 55, tzinfo=timezone.utc)
    client = FakeClient()
    assert ingest_log.record_round(_holder(client), _result(last_snapshot=snap)) is True
    [(table, [row], row_ids)] = client.inserted
    assert table == "p.odds_api.odds_api_ingest_log" and row_ids == ["run123_2025-01-21"]
    assert {k: row[k] for k in ("run_id", "endpoint", "game_date", "files_merged", "quarantined", "gone",
                                "rows_merged", "pending_after", "last_snapshot", "table_name")} == {
        "run_id": "run123", "endpoint": "game-lines", "game_date": "2025-01-21", "files_merged": 4,
        "quarantined": 1, "gone": 0, "rows_merged": 10, "pending_after": 3,
        "last_snapshot": "2025-01-21T23:55:00+00:00", "table_name": "odds_api_game_lines"}
    assert client.queries == []  # the holder knows its files' snapshots: no BigQuery job for the log row
    assert set(row) == {f["name"] for f in ingest_log.log_table_spec().schema}  # every column, no other


def test_a_group_round_logs_one_row_per_date_in_one_insert():
    from datetime import timedelta

    days = (DAY, DAY + timedelta(days=1), DAY + timedelta(days=3))
    client = FakeClient()
    assert ingest_log.record_round(_holder(client, days=days), _result(rows=8, days=days)) is True
    [(_, rows, row_ids)] = client.inserted  # one insertAll for the round
    assert [r["game_date"] for r in rows] == [d.isoformat() for d in days]
    assert all(r["run_id"] == "run123" and r["rows_merged"] == 8 and r["files_merged"] == 4 for r in rows)
    assert len(set(row_ids)) == 3  # insertIds apart: the rows of one round never deduplicate each other


def test_a_round_without_rows_logs_no_snapshot():
    client = FakeClient()
    assert ingest_log.record_round(_holder(client, pending=0), _result(rows=0))
    [(_, [row], _)] = client.inserted
    assert row["last_snapshot"] is None and row["pending_after"] == 0 and client.queries == []


@pytest.mark.parametrize("client", [FakeClient(raise_on_insert=RuntimeError("503")),
                                    FakeClient(insert_errors=[{"index": 0, "errors": [{"reason": "invalid"}]}])])
def test_a_failing_insert_never_fails_the_round(client, capsys):
    assert ingest_log.record_round(_holder(client), _result()) is False
    assert '"ingest_log_failed"' in capsys.readouterr().out


def test_the_log_is_partitioned_with_a_required_filter_and_is_no_merge_target():
    from oddsbatch.tables import all_tables

    spec = ingest_log.log_table_spec()
    types = {f["name"]: f["type"] for f in spec.schema}
    assert spec.partition_field == "game_date" and types["game_date"] == "DATE" and spec.require_partition_filter
    assert spec.name not in all_tables()  # tables.json lists MERGE targets only
    assert "rows" not in types  # ROWS is a reserved keyword of GoogleSQL: the column is rows_merged
