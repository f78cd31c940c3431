"""The plant's clock: its IANA time zone, its shifts, and where each local day or shift starts in UTC.

A plant reads "Tuesday's night shift", not "2026-11-03 UTC". Its offset may be a half or three
quarters of an hour (Asia/Kolkata +05:30, Asia/Kathmandu +05:45) and may change twice a year, so a
local day lasts 23, 24 or 25 hours and starts at a different UTC hour in summer and in winter. This
module turns the recipe's ``report.timezone``, ``report.shifts`` and ``report.bucket`` into those
bucket starts (``edges``), with zoneinfo; ``inspect_core.store.report_times`` counts into them.

A bucket starts at the first instant whose local wall-clock time reaches its start: a day at local
midnight, a shift at its ``HH:MM``. Where the clock jumps over that time (a spring-forward gap, or a
zone whose DST change is at midnight) the bucket starts at the jump; where the clock turns back, it
starts at the first of the two readings. A shift runs until the next one starts; the last of the day
wraps past midnight and belongs to the day it started (a 22:00-06:00 night shift that started on
Monday is Monday's, also for the frames it saw on Tuesday at 03:00).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, available_timezones

from inspect_core.errors import UsageError

if TYPE_CHECKING:  # the store takes the section as a value; it never loads recipes
    from inspect_core.config import ReportSection

BUCKETS = ("day", "shift")
_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Shift:
    name: str
    start: time


@dataclass(frozen=True)
class Edge:
    """Where one bucket starts: UTC seconds since the epoch, the local day it belongs to, and its shift (None for day buckets)."""

    at: int
    day: date
    shift: str | None

    @property
    def label(self) -> str:
        return f"{self.day.isoformat()}" if self.shift is None else f"{self.day.isoformat()} {self.shift}"


def _zone(name: Any, field: str) -> ZoneInfo:
    """The IANA zone ``name``, or a UsageError naming ``field`` with the nearest real names."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{field} {name!r} is not a time zone name; give an IANA name such as Europe/Istanbul or UTC")
    try:
        return ZoneInfo(name.strip())
    except (KeyError, ValueError, OSError, UnicodeError):  # unknown, a path, a folder (Europe), a NUL byte, not text
        pass
    known = available_timezones()
    folded = {key.lower(): key for key in known}
    near = [folded[name.strip().lower()]] if name.strip().lower() in folded else difflib.get_close_matches(name.strip(), known, n=3)
    hint = f" (did you mean {', '.join(near)}?)" if near else " such as Europe/Istanbul, America/New_York or UTC"
    raise UsageError(f"{field} {name!r} is not an IANA time zone name{hint}")


def _shift(item: Any, index: int, field: str) -> Shift:
    """One ``{name, start: "HH:MM"}`` entry (a mapping or a config ShiftSpec), checked."""
    name, start = (item.get("name"), item.get("start")) if isinstance(item, Mapping) else (getattr(item, "name", None),
                                                                                           getattr(item, "start", None))  # fmt: skip
    where = f"{field}[{index}]"
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where}.name {name!r}: every shift needs a name, such as A or night")
    match = _HH_MM.match(start.strip()) if isinstance(start, str) else None
    if match is None:
        raise UsageError(f"{where}.start {start!r} (shift {name.strip()!r}) is not a local time of day HH:MM from 00:00 to 23:59")
    return Shift(name.strip(), time(int(match.group(1)), int(match.group(2))))


@dataclass(frozen=True)
class PlantClock:
    """The plant's time zone, shifts (sorted by start) and bucket kind; build it with ``plant_clock`` (checked)."""

    zone: ZoneInfo
    shifts: tuple[Shift, ...] = ()
    bucket: str = "day"

    @property
    def name(self) -> str:
        return self.zone.key

    @property
    def starts(self) -> list[tuple[time, str | None]]:
        """Each bucket's local start time in a day and its shift name (None: the day itself)."""
        return [(s.start, s.name) for s in self.shifts] if self.bucket == "shift" else [(time(0, 0), None)]

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.zone)

    def first_at(self, day: date, at: time) -> int:
        """UTC epoch seconds of the first instant whose local wall time is at or after ``day`` ``at``."""
        target = datetime.combine(day, at)
        earlier, later = (int(target.replace(tzinfo=self.zone, fold=fold).timestamp()) for fold in (0, 1))
        candidate = min(earlier, later)
        if self._wall(candidate) == target:  # exists (for a repeated time, the first reading)
            return candidate
        low, high = min(earlier, later), max(earlier, later)  # a gap: the clock jumps over target between these
        if self._wall(high) < target:  # not a plain gap (cannot happen with real zones): be safe, use zoneinfo's answer
            return earlier
        while high - low > 1:  # the last second before the jump reads below target; find the jump, to the second
            middle = (low + high) // 2
            low, high = (middle, high) if self._wall(middle) < target else (low, middle)
        return high

    def _wall(self, epoch: int) -> datetime:
        return datetime.fromtimestamp(epoch, timezone.utc).astimezone(self.zone).replace(tzinfo=None)

    def edges(self, days: Iterable[date]) -> list[Edge]:
        """The bucket starts of the given local days, sorted by time.

        Two starts the clock jumps over together fall on one instant: the earlier bucket is empty and
        only the later one is kept, so every instant belongs to exactly one bucket.
        """
        found: dict[int, Edge] = {}
        for day in sorted(set(days)):
            for at, shift in self.starts:
                edge = Edge(self.first_at(day, at), day, shift)
                found[edge.at] = edge  # a later start on the same instant wins
        return [found[at] for at in sorted(found)]

    def days_around(self, epochs: Iterable[int]) -> set[date]:
        """The local days of these UTC instants, with the day before and after each (a night shift's day, a jump)."""
        days: set[date] = set()
        for epoch in set(epochs):
            try:
                day = datetime.fromtimestamp(epoch, timezone.utc).astimezone(self.zone).date()
            except (OverflowError, ValueError, OSError):
                continue  # outside Python's calendar: no stored time can be there
            days.add(day)
            for step in (-1, 1):
                try:
                    days.add(day + timedelta(days=step))
                except OverflowError:
                    pass
        return days

    def offset_seconds(self, when: datetime) -> int:
        offset = self.local(when).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def describe(self) -> str:
        if self.bucket == "day":
            return f"local days ({self.name})"
        return f"shifts {', '.join(f'{s.name} from {s.start:%H:%M}' for s in self.shifts)} ({self.name})"


def plant_clock(timezone_name: Any = "UTC", shifts: Sequence[Any] | None = (), bucket: Any = "day", field: str = "report") -> PlantClock:
    """The checked clock: a real IANA zone, shifts with distinct names and start times, a known bucket kind.

    Every error is a UsageError naming the recipe field (``report.timezone``, ``report.shifts[1].start``, ...).
    """
    zone = _zone(timezone_name, f"{field}.timezone")
    if shifts is None:
        shifts = ()
    if isinstance(shifts, (str, bytes, Mapping)) or not isinstance(shifts, Sequence):
        raise UsageError(f"{field}.shifts must be a list of {{name, start: 'HH:MM'}}, got {shifts!r}")
    parsed = [_shift(item, i, f"{field}.shifts") for i, item in enumerate(shifts)]
    for kind, key in (("name", lambda s: s.name), ("start time", lambda s: s.start)):
        seen: dict[Any, Shift] = {}
        for shift in parsed:
            if key(shift) in seen:
                raise UsageError(f"{field}.shifts: {seen[key(shift)].name!r} and {shift.name!r} have the same {kind} "
                                 f"({key(shift) if kind == 'name' else f'{shift.start:%H:%M}'}); each shift needs its own")  # fmt: skip
            seen[key(shift)] = shift
    if bucket not in BUCKETS:
        raise UsageError(f"{field}.bucket {bucket!r}: use day or shift")
    if bucket == "shift" and not parsed:
        example = "[{name: A, start: '06:00'}, {name: B, start: '14:00'}, {name: C, start: '22:00'}]"
        raise UsageError(f"{field}.bucket is shift but {field}.shifts is empty: list the shifts, e.g. {example}, or use bucket day")
    return PlantClock(zone, tuple(sorted(parsed, key=lambda s: s.start)), bucket)


def clock_from_settings(report: ReportSection, bucket: str | None = None) -> PlantClock:
    """The clock of a recipe's ``report:`` section (``inspect_core.config.ReportSection``); ``bucket`` replaces its bucket."""
    return plant_clock(report.timezone, list(report.shifts), bucket or report.bucket)


UTC_DAYS = PlantClock(ZoneInfo("UTC"))
