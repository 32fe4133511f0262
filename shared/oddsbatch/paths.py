"""Object names of the scraper's layout, parsed into what the batch needs.

`odds-api/{endpoint}[-history]/{YYYY-MM-DD}/{event_id}-{AWAYHOME}/{YYYYMMDD_HHMMSS}-snap-{HHMM}.json`
and the shorter `odds-api/{endpoint}[-history]/{YYYY-MM-DD}/{file}.json`.

Pure functions, no Google imports: the function's ignore path runs through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

from .config import ENDPOINTS, OBJECT_ROOT
from .errors import BadInputError

_ENDPOINT_DIR = re.compile(r"^odds-api/(?P<endpoint>[a-z-]+?)(?P<history>-history)?/")
_LONG = re.compile(
    r"^odds-api/(?P<endpoint>game-lines|player-props)(?P<history>-history)?/"
    r"(?P<date>[^/]+)/(?P<event_id>[0-9A-Za-z]+)-(?P<teams>[A-Z]{6})/(?P<file>[^/]+)\.json$"
)
_SHORT = re.compile(
    r"^odds-api/(?P<endpoint>game-lines|player-props)(?P<history>-history)?/"
    r"(?P<date>[^/]+)/(?P<file>[^/]+)\.json$"
)
_NAME_TIME = re.compile(r"(?P<stamp>\d{8}_\d{6})")
_SNAP_TAG = re.compile(r"(?P<tag>snap-\d{4})")


@dataclass(frozen=True)
class ObjectRef:
    """What an object's name says about it."""

    name: str
    endpoint: str  # "game-lines" | "player-props"
    historical: bool
    game_date: date
    event_id: str | None = None
    away_abbr: str | None = None
    home_abbr: str | None = None
    name_time: datetime | None = None  # snapshot time written in the file name (UTC)
    snapshot_tag: str | None = None  # e.g. "snap-0324"

    @property
    def batch_key(self) -> str:
        return batch_key(self.endpoint, self.game_date)


def batch_key(endpoint: str, game_date: date | str) -> str:
    """Lock / pending-work key: live and -history objects of one date share it."""
    day = game_date if isinstance(game_date, str) else game_date.isoformat()
    return f"{endpoint}_{day}"


def endpoint_of(name: str) -> str | None:
    """The endpoint an object name belongs to, or None outside `odds-api/{endpoint}[-history]/`.

    Cheap: used to acknowledge other objects without parsing anything else.
    """
    m = _ENDPOINT_DIR.match(name)
    if not m or m.group("endpoint") not in ENDPOINTS:
        return None
    return m.group("endpoint")


def parse_object_name(name: str) -> ObjectRef:
    """Parse a name under an endpoint prefix; BadInputError if it does not fit the layout."""
    m = _LONG.match(name) or _SHORT.match(name)
    if not m:
        raise BadInputError(f"object name outside the layout: {name}")
    raw_date = m.group("date")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw_date):
            raise ValueError
        game_date = date.fromisoformat(raw_date)
    except ValueError:
        raise BadInputError(f"impossible game date {raw_date!r} in object name: {name}") from None
    groups = m.groupdict()
    teams = groups.get("teams")
    file_part = m.group("file")
    name_time = None
    t = _NAME_TIME.search(file_part)
    if t:
        stamp = t.group("stamp")  # 8 digits, "_", 6 digits: strptime("%Y%m%d_%H%M%S") has one way to read
        try:  # it, and its fields' ranges are datetime's own; built directly, it costs a tenth of strptime
            name_time = datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]),
                                 int(stamp[11:13]), int(stamp[13:]), tzinfo=timezone.utc)
        except ValueError:
            raise BadInputError(f"impossible snapshot time {t.group('stamp')!r} in object name: {name}") from None
    tag = _SNAP_TAG.search(file_part)
    return ObjectRef(
        name=name,
        endpoint=m.group("endpoint"),
        historical=bool(m.group("history")),
        game_date=game_date,
        event_id=groups.get("event_id"),
        away_abbr=teams[:3] if teams else None,
        home_abbr=teams[3:] if teams else None,
        name_time=name_time,
        snapshot_tag=tag.group("tag") if tag else None,
    )


def object_name(endpoint: str, game_date: date, event_id: str, away_abbr: str, home_abbr: str,
                snapshot: datetime, historical: bool = False) -> str:
    """The scraper's object name for one snapshot file (used by synth and tests)."""
    suffix = "-history" if historical else ""
    stamp = snapshot.strftime("%Y%m%d_%H%M%S")
    return (f"{OBJECT_ROOT}{endpoint}{suffix}/{game_date.isoformat()}/{event_id}-{away_abbr}{home_abbr}/"
            f"{stamp}-snap-{snapshot.strftime('%H%M')}.json")
