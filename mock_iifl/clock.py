"""The mock's wall clock, in IST, which tests may move forward to cross midnight.

Sessions die at midnight IST by this clock, and order ids and timestamps carry its date. Timers
(order fills, latency, rate windows) run on the event loop's monotonic clock and do not move with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")
# Fixed English month names: strftime's %b follows the process locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Midnight IST: whole days since it are IST dates. Subtracting it from an IST moment skips the
# UTC conversion that makes a UTC epoch twice as slow.
_IST_EPOCH = datetime(1970, 1, 1, tzinfo=IST)
# Formatting a timestamp (strftime, astimezone) costs more than the rest of an order row; a busy
# second renders the same text thousands of times. The memos are keyed by the instant itself (not
# by the clock), so moving the clock cannot make them stale; they are cleared when full.
_MEMO_LIMIT = 4096
_iifl_memo: dict[int, str] = {}
_xts_memo: dict[int, str] = {}
_date_memo: dict[int, str] = {}


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        # The clock is almost never moved: skip building a second datetime for a zero offset.
        offset = self.offset
        return datetime.now(IST) + offset if offset else datetime.now(IST)

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
    return _by_second(_iifl_memo, moment, _iifl_time)


def xts_time(moment: datetime) -> str:
    """`24-11-2026 10:15:30`, as XTS order and trade rows carry it (IST)."""
    return _by_second(_xts_memo, moment, _xts_time)


def _by_second(memo: dict[int, str], moment: datetime, render: Callable[[datetime], str]) -> str:
    if moment.tzinfo is None:  # local time, as astimezone reads it: rare, not worth a memo
        return render(moment)
    second = _second(moment)
    stamp = memo.get(second)
    if stamp is None:
        stamp = _remember(memo, second, render(moment))
    return stamp


def ist_date_code(moment: datetime) -> str:
    """`261124`: the IST date as YYMMDD, which starts every v1 order id."""
    if moment.tzinfo is None:
        return _date_code(moment)
    day = (moment - _IST_EPOCH).days
    code = _date_memo.get(day)
    if code is None:
        code = _remember(_date_memo, day, _date_code(moment))
    return code


def _second(moment: datetime) -> int:
    # A timedelta's days and seconds are normalized (0 <= seconds < 86400): this is a floor.
    since = moment - _IST_EPOCH
    return since.days * 86_400 + since.seconds


def _iifl_time(moment: datetime) -> str:
    local = moment.astimezone(IST)
    return f"{local.day:02d}-{_MONTHS[local.month - 1]}-{local.year} {local:%H:%M:%S}"


def _xts_time(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%d-%m-%Y %H:%M:%S")


def _date_code(moment: datetime) -> str:
    return f"{moment.astimezone(IST):%y%m%d}"


def _remember(memo: dict[int, str], key: int, text: str) -> str:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = text
    return text
