"""The mock's wall clock, in IST, which tests may move forward to cross midnight.

Sessions die at midnight IST by this clock, and order ids and timestamps carry its date. Timers
(order fills, latency, rate windows) run on the event loop's monotonic clock and do not move with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")
# Fixed English month names: strftime's %b follows the process locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(IST) + self.offset

    def advance(self, seconds: float) -> datetime:
        self.offset += timedelta(seconds=seconds)
        return self.now()

    def set(self, when: datetime) -> datetime:
        self.offset = when - datetime.now(IST)
        return self.now()

    def reset(self) -> None:
        self.offset = timedelta()


def next_midnight(moment: datetime) -> datetime:
    """The first midnight IST after `moment`: when a daily session dies."""
    local = moment.astimezone(IST)
    return datetime(local.year, local.month, local.day, tzinfo=IST) + timedelta(days=1)


def iifl_time(moment: datetime) -> str:
    """`19-Sep-2024 18:48:46`, the IIFL Capital v1 timestamp format (IST)."""
    local = moment.astimezone(IST)
    return f"{local.day:02d}-{_MONTHS[local.month - 1]}-{local.year} {local:%H:%M:%S}"


def xts_time(moment: datetime) -> str:
    """`24-11-2026 10:15:30`, as XTS order and trade rows carry it (IST)."""
    return moment.astimezone(IST).strftime("%d-%m-%Y %H:%M:%S")
