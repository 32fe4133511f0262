"""NBA teams: The Odds API's full names <-> the three-letter abbreviations of the object names.

The abbreviations are the NBA's own tricodes (the scraper writes them as `{AWAY}{HOME}`,
e.g. `HOUOKC`). A few spellings other feeds use map to the same team (ALIASES).
"""

from __future__ import annotations

# Full name (as The Odds API writes it) -> abbreviation. All 30 teams.
TEAMS: dict[str, str] = {
    "Atlanta Hawks": "ATL",
    "Boston Celtics": "BOS",
    "Brooklyn Nets": "BKN",
    "Charlotte Hornets": "CHA",
    "Chicago Bulls": "CHI",
    "Cleveland Cavaliers": "CLE",
    "Dallas Mavericks": "DAL",
    "Denver Nuggets": "DEN",
    "Detroit Pistons": "DET",
    "Golden State Warriors": "GSW",
    "Houston Rockets": "HOU",
    "Indiana Pacers": "IND",
    "Los Angeles Clippers": "LAC",
    "Los Angeles Lakers": "LAL",
    "Memphis Grizzlies": "MEM",
    "Miami Heat": "MIA",
    "Milwaukee Bucks": "MIL",
    "Minnesota Timberwolves": "MIN",
    "New Orleans Pelicans": "NOP",
    "New York Knicks": "NYK",
    "Oklahoma City Thunder": "OKC",
    "Orlando Magic": "ORL",
    "Philadelphia 76ers": "PHI",
    "Phoenix Suns": "PHX",
    "Portland Trail Blazers": "POR",
    "Sacramento Kings": "SAC",
    "San Antonio Spurs": "SAS",
    "Toronto Raptors": "TOR",
    "Utah Jazz": "UTA",
    "Washington Wizards": "WAS",
}

# Other spellings of the same teams (matched case-insensitively, like the full names).
ALIASES: dict[str, str] = {
    "LA Clippers": "LAC",
    "LA Lakers": "LAL",
    "Philadelphia Sixers": "PHI",
}

ABBREVIATIONS: dict[str, str] = {abbr: name for name, abbr in TEAMS.items()}

_LOOKUP: dict[str, str] = {name.casefold(): abbr for name, abbr in {**TEAMS, **ALIASES}.items()}


def abbreviation(full_name: str | None) -> str | None:
    """The team's three-letter abbreviation, or None for a name we do not know."""
    if not full_name:
        return None
    return _LOOKUP.get(" ".join(full_name.split()).casefold())


def full_name(abbr: str | None) -> str | None:
    """The Odds API's full name of an abbreviation, or None."""
    if not abbr:
        return None
    return ABBREVIATIONS.get(abbr.upper())
