"""The emulator's model of BigQuery's DML rules, without the emulator: bigquery_dml.SnapshotIsolation.

The rules (quoted in oddsbatch/local/bigquery_dml.py from the DML page, "DML statement conflicts"):
a statement's snapshot is taken when it starts running; only statements that updated or deleted
rows conflict, with another such statement committed to an overlapping partition after the snapshot;
a rerun takes a fresh snapshot; an INSERT is a commit that never conflicts.
"""

import threading

import pytest

from oddsbatch.local.bigquery_dml import WHOLE_TABLE, SnapshotIsolation


def test_the_model_per_table_partition_and_kind_of_change():
    iso = SnapshotIsolation(running=2)
    day1, day2 = frozenset({"2025-01-21"}), frozenset({"2025-01-22"})
    iso.admit("t", "a", day1)
    iso.admit("t", "b", day1)
    iso.admit("t", "c", day2)  # queued (third), other partition
    iso.admit("u", "d", day1)  # another table
    assert iso.snapshot("c") is None and iso.snapshot("d") == 0 and not iso.started("c")
    assert iso.conflict("a", mutates=True) is None
    iso.commit("a", mutated=True)
    iso.finish("a")
    assert iso.snapshot("c") == 1  # left the queue after a was done: its snapshot has a's commit
    assert iso.conflict("b", mutates=False) is None  # b only inserted: never conflicts
    assert iso.conflict("b", mutates=True) == "Could not serialize access to table t due to concurrent update"
    iso.start("b")  # the rerun: a fresh snapshot
    assert iso.conflict("b", mutates=True) is None
    iso.commit("b", mutated=False)
    iso.finish("b")
    assert iso.conflict("c", mutates=True) is None and iso.conflict("d", mutates=True) is None
    iso.admit("t", "e", WHOLE_TABLE)  # partitions unknown: overlaps any partition
    iso.commit("c", mutated=True)
    assert iso.conflict("e", mutates=True) is not None
    iso.finish("c")
    iso.finish("e")
    iso.admit("t", "f", day1)
    iso.write("t", mutated=None)  # an INSERT statement: a commit that never conflicts
    assert iso.conflict("f", mutates=True) is None and len(iso.since_snapshot("f")) == 1
    assert iso.conflicts == 2 and iso.committed == 3
    with pytest.raises(ValueError):
        SnapshotIsolation(running=0)


def test_a_queued_statement_waits_as_long_as_it_must_and_starts_on_the_table_as_then():
    """No cap on the PENDING wait: the third statement runs only when one of the 2 running is done."""
    iso = SnapshotIsolation(running=2)
    day = frozenset({"2025-01-21"})
    for job in ("a", "b", "c"):
        iso.admit("t", job, day)
    waiting = threading.Thread(target=iso.wait_started, args=("c",))
    waiting.start()
    iso.commit("b", mutated=True)  # b committed, but is not done yet: c still waits
    assert not iso.started("c") and waiting.is_alive()
    iso.finish("b")
    waiting.join(timeout=30)  # bounds a hang only: finish() wakes it
    assert not waiting.is_alive() and iso.snapshot("c") == 1
    assert iso.conflict("c", mutates=True) is None  # b's commit is in its snapshot
    assert iso.conflict("a", mutates=True) is not None  # a started before it
