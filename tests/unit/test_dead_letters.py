"""`oddsbatch reconcile --from-dead-letters`: which dates the dead letters name, and what is acked."""

import json
from datetime import date
from types import SimpleNamespace

import pytest

from oddsbatch import reconcile
from oddsbatch.errors import TransientError

NAME = "odds-api/game-lines/2025-01-21/abc-BOSLAL/20250120_180000-snap-1800.json"
PROPS = "odds-api/player-props-history/2025-01-20/x.json"


def received(ack_id, attributes=None, data=b""):
    return SimpleNamespace(ack_id=ack_id, message=SimpleNamespace(attributes=attributes or {}, data=data))


@pytest.mark.parametrize("attributes,data", [
    ({"ce-subject": f"objects/{NAME}", "ce-source": "//storage.googleapis.com/projects/_/buckets/landing"}, b""),
    ({"objectId": NAME, "bucketId": "landing", "eventType": "OBJECT_FINALIZE"}, b""),
    ({}, json.dumps({"bucket": "landing", "name": NAME}).encode()),
])
def test_every_message_shape_names_its_object(attributes, data):
    assert reconcile.dead_letter_object(attributes, data) == ("landing", NAME)


def test_dates_group_the_messages_and_foreign_ones_are_set_aside():
    dates, other = reconcile.dead_letter_dates([
        received("a", {"objectId": NAME, "bucketId": "landing"}),
        received("b", {"ce-subject": f"objects/{PROPS}"}),
        received("c", {"objectId": NAME.replace("180000", "190000"), "bucketId": "landing"}),
        received("d", {"objectId": "scraper/log.txt", "bucketId": "landing"}),
        received("e", {}, b"not json"),
    ])
    assert dates == {("game-lines", date(2025, 1, 21)): ["a", "c"], ("player-props", date(2025, 1, 20)): ["b"]}
    assert other == ["d", "e"]


class FakeSubscriber:
    def __init__(self, batches):
        self.batches, self.acked = list(batches), []

    def pull(self, request):
        return SimpleNamespace(received_messages=self.batches.pop(0) if self.batches else [])

    def acknowledge(self, request):
        self.acked += request["ack_ids"]


def test_converged_dates_are_acked_and_a_transient_one_stays(monkeypatch):
    monkeypatch.setenv("ODDSBATCH_PROJECT", "p")
    seen = []

    def fake_reconcile(settings, bucket, day, dry_run=False):
        seen.append((settings.endpoint, day, bucket))
        if settings.endpoint == "player-props":
            raise TransientError("BigQuery 503")
        return reconcile.DateReport(settings.endpoint, day, decision="merged", files=2)

    monkeypatch.setattr(reconcile, "reconcile_date", fake_reconcile)
    sub = FakeSubscriber([[received("a", {"objectId": NAME, "bucketId": "landing"}),
                           received("b", {"ce-subject": f"objects/{PROPS}"}),
                           received("d", {"objectId": "scraper/log.txt"})]])
    reports = reconcile.replay_dead_letters("projects/p/subscriptions/dl", "landing", dry_run=False, subscriber=sub)
    assert sorted(seen) == [("game-lines", date(2025, 1, 21), "landing"), ("player-props", date(2025, 1, 20), "landing")]
    assert sorted(sub.acked) == ["a", "d"]  # the failed date's message comes back for the next run
    assert [r.error is not None for r in sorted(reports, key=lambda r: r.endpoint)] == [False, True]


def test_a_dry_run_acknowledges_nothing(monkeypatch):
    monkeypatch.setenv("ODDSBATCH_PROJECT", "p")
    monkeypatch.setattr(reconcile, "reconcile_date",
                        lambda s, b, d, dry_run=False: reconcile.DateReport(s.endpoint, d, decision="dry_run"))
    sub = FakeSubscriber([[received("a", {"objectId": NAME, "bucketId": "landing"})]])
    reconcile.replay_dead_letters("projects/p/subscriptions/dl", "landing", dry_run=True, subscriber=sub)
    assert sub.acked == []
