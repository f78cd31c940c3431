"""Report time bounds as people type them: ISO dates and times, or spans back from now (24h, 7d)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A --since/--until value: ISO date or datetime (naive = UTC) or a span back from now such as 30m, 24h, 7d, 2w."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = relative.group(1), _UNITS[relative.group(2)]
        try:
            return (now or datetime.now(timezone.utc)) - timedelta(**{unit: int(amount)})
        except (OverflowError, ValueError):  # 99999999d reaches before year 1; a 5000-digit number is no int
            raise ValueError(f"not a time: {text!r} reaches back before year 1; give a shorter span or an ISO date") from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        hint = "use an ISO date or time (2026-11-01, 2026-11-01T08:00, 2026-11-01T08:00+01:00) or a span back from now (30m, 24h, 7d, 2w)"
        raise ValueError(f"not a time: {text!r}; {hint}") from None
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=timezone.utc)
