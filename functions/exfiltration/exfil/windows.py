"""Read volume per (stage, identity): distinct objects and bytes per minute and per hour.

What one log file adds for one identity on one stage is a :class:`Delta`; the window
store merges it into the identity's :class:`WindowState` (in memory for the scanner, one
DynamoDB item in the function) and the detector asks the state for its heaviest sliding
window and its 24-hour total.

* **Distinct objects.** An object (bucket, key, version) counts once, at the minute it
  was first read, and not again while the identity read it within the previous 24 hours:
  1,200 ranged GETs of 12 files are 12 objects. ``seen`` remembers each object's last
  read for 24 hours plus lateness (at most :data:`SEEN_CAP` objects; past that the oldest
  are forgotten, so a re-read may count again: over-counting, never under).
* **Bytes** are what each read transferred (``bytesTransferredOut``), at its minute.
* **Windows** keep the minutes of one window plus an hour of lateness (files arrive out
  of order); the 24-hour budget keeps 25 hourly totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

LATENESS_MINUTES = 60
DAY_MINUTES = 1440
#: Objects remembered per identity and stage for distinct counting (12 bytes each in DynamoDB: ~196 KB).
SEEN_CAP = 16_384


@dataclass(slots=True)
class Delta:
    """What one log file adds for one identity on one stage."""

    objects: dict[Any, int]  # object id (bucket, key, version) -> first minute read in this file
    minutes: dict[int, list[int]]  # minute -> [read requests, bytes]
    families: dict[str, int]  # client family -> first minute used in this file


@dataclass(slots=True)
class WindowState:
    minutes: dict[int, list[int]] = field(default_factory=dict)  # minute -> [new distinct objects, bytes]
    hours: dict[int, list[int]] = field(default_factory=dict)  # epoch hour -> [new distinct objects, bytes]
    seen: dict[Any, int] = field(default_factory=dict)  # object id -> minute of its last read
    families: dict[str, int] = field(default_factory=dict)  # client family -> first minute used
    first_seen: int = 0
    #: objects / bytes over every kept minute and hour: when within the limits, no window can exceed them
    minute_total: list[int] = field(default_factory=lambda: [0, 0])
    hour_total: list[int] = field(default_factory=lambda: [0, 0])
    pruned_at: int = 0
    #: set by the last merge: the families the identity had not used on the stage before it
    new_families: tuple[str, ...] = ()

    def window_peak(self, touched: Iterable[int], width: int) -> tuple[int, int, int, int]:
        """The heaviest window of ``width`` minutes ending at a touched minute: (start, end, objects, bytes)."""
        return worst_window(self.minutes, touched, width)

    def day_peak(self, touched_hours: Iterable[int]) -> tuple[int, int, int, int]:
        """The heaviest 24 hours ending at a touched hour: (first hour, last hour, objects, bytes)."""
        return worst_window(self.hours, touched_hours, 24)


class WindowStore(Protocol):
    def merge(self, stage: str, identity: str, delta: Delta, keep_after: int) -> WindowState: ...


def worst_window(slots: dict[int, list[int]], touched: Iterable[int], width: int) -> tuple[int, int, int, int]:
    """The heaviest window of ``width`` slots ending at a touched slot: (start, end, objects, bytes)."""
    best = (0, 0, 0, 0)
    for end in touched:
        count = nbytes = 0
        for m in range(end - width + 1, end + 1):
            slot = slots.get(m)
            if slot:
                count += slot[0]
                nbytes += slot[1]
        if (count, nbytes) > (best[2], best[3]):
            best = (end - width + 1, end, count, nbytes)
    return best


def merge_state(state: WindowState | None, delta: Delta, keep_after: int, prune_every: int = 60) -> WindowState:
    """Add ``delta`` to ``state`` (in place; a new state if None) and return it.

    ``keep_after``: minutes at or before it may go (one window plus lateness before the
    newest read). Pruning runs when ``prune_every`` minutes of reads have passed since the
    last one (every merge with 0), so a warm scanner pays for it about once an hour per identity.
    """
    if state is None:
        firsts = list(delta.families.values()) + list(delta.minutes) + list(delta.objects.values())
        state = WindowState(first_seen=min(firsts) if firsts else 0)
    minutes, hours, seen = state.minutes, state.hours, state.seen
    mt, ht = state.minute_total, state.hour_total
    for obj, minute in delta.objects.items():
        last = seen.get(obj)
        if last is not None and last >= minute - DAY_MINUTES:
            if minute > last:
                seen[obj] = minute
            continue  # read in the previous 24 hours: not a new object
        seen[obj] = minute
        slot = minutes.get(minute)
        if slot is None:
            minutes[minute] = [1, 0]
        else:
            slot[0] += 1
        hour = minute // 60
        slot = hours.get(hour)
        if slot is None:
            hours[hour] = [1, 0]
        else:
            slot[0] += 1
        mt[0] += 1
        ht[0] += 1
    newest = 0
    for minute, (_reads, nbytes) in delta.minutes.items():
        if minute > newest:
            newest = minute
        slot = minutes.get(minute)
        if slot is None:
            minutes[minute] = [0, nbytes]
        else:
            slot[1] += nbytes
        hour = minute // 60
        slot = hours.get(hour)
        if slot is None:
            hours[hour] = [0, nbytes]
        else:
            slot[1] += nbytes
        mt[1] += nbytes
        ht[1] += nbytes
    known = state.families
    new = ()
    for fam, first in delta.families.items():
        old = known.get(fam)
        if old is None:
            new += (fam,)
            known[fam] = first
        elif first < old:
            known[fam] = first
    state.new_families = new
    if delta.families and min(delta.families.values()) < state.first_seen:
        state.first_seen = min(delta.families.values())
    if newest - state.pruned_at >= prune_every or len(seen) > SEEN_CAP:
        prune(state, keep_after, newest)
    return state


def prune(state: WindowState, keep_after: int, newest: int) -> None:
    """Forget minutes before ``keep_after``, hours older than a day plus lateness, objects not read for a day."""
    state.pruned_at = newest
    for minute in [m for m in state.minutes if m <= keep_after]:
        count, nbytes = state.minutes.pop(minute)
        state.minute_total[0] -= count
        state.minute_total[1] -= nbytes
    last_hour = (newest + LATENESS_MINUTES) // 60
    for hour in [h for h in state.hours if h < last_hour - 25]:
        count, nbytes = state.hours.pop(hour)
        state.hour_total[0] -= count
        state.hour_total[1] -= nbytes
    forget = newest - DAY_MINUTES - LATENESS_MINUTES
    seen = state.seen
    if len(seen) and min(seen.values()) < forget:
        for obj in [o for o, m in seen.items() if m < forget]:
            del seen[obj]
    if len(seen) > SEEN_CAP:
        for obj, _ in sorted(seen.items(), key=lambda kv: kv[1])[: len(seen) - SEEN_CAP]:
            del seen[obj]


class MemoryWindowStore:
    """Windows for the offline scanner (and tests): states in a dict, updated in place."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], WindowState] = {}
        self.writes = 0

    def merge(self, stage: str, identity: str, delta: Delta, keep_after: int) -> WindowState:
        self.writes += 1
        key = (stage, identity)
        state = merge_state(self.items.get(key), delta, keep_after)
        self.items[key] = state
        return state
