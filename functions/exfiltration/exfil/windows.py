"""Read volume per (stage, identity): distinct objects and bytes per minute, rolled up into hours.

What one log file adds for one identity on one stage is a :class:`Delta`; the window
store merges it into the identity's :class:`WindowState` (in memory for the scanner, one
DynamoDB item in the function) and the detector asks the state for its heaviest sliding
window and its heaviest 24 hours.

* **Distinct objects.** An object (bucket, key, version) counts once, at the minute it
  was first read, and not again while the identity read it within the previous 24 hours:
  1,200 ranged GETs of 12 files are 12 objects. ``seen`` remembers each object's last
  read for 24 hours plus lateness (at most :data:`SEEN_CAP` objects; past that the oldest
  are forgotten, so a re-read may count again: over-counting, never under).
* **Bytes** are what each read transferred (``bytesTransferredOut``), at its minute.
* **Minutes** are kept for one window plus an hour of lateness (files arrive out of
  order), then rolled up into **hours**, kept for a day plus lateness, both counted back
  from the first read of the newest file (a stray future timestamp prunes nothing).
* ``total`` is the sum over everything kept: while it is within a limit, no window and no
  day can exceed that limit, so most merges decide nothing without looking further. This
  is what keeps thousands of sessions per log file cheap.
* A minute's or an hour's counts are a tuple ``(objects, bytes)``, replaced on each update,
  not a list changed in place: tuples of numbers are untracked by Python's cyclic GC after
  its first young collection, so the scanner's hundreds of thousands of slots (thousands of
  sessions x a day of minutes and hours) are not traversed again by every older collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from exfil.records import client_family

LATENESS_MINUTES = 60
DAY_MINUTES = 1440
#: Objects remembered per identity and stage for distinct counting (12 bytes each in DynamoDB: ~196 KB).
SEEN_CAP = 16_384


#: (distinct objects, bytes) of one minute or hour
Slot = tuple[int, int]


@dataclass(slots=True)
class Delta:
    """What one log file adds for one identity on one stage."""

    objects: dict[Any, int]  # object id (bucket, key, version) -> first minute read in this file
    minutes: dict[int, Slot]  # minute -> (new distinct objects in the file, bytes); only the bytes are merged
    agents: Any  # the user agent of the reads, or a frozenset of them: client families are learned from these
    first: int  # the file's first read (when a new client family was first used)
    keep_after: int = 0  # minutes at or before it may be rolled up (one window plus lateness before the file's first read)
    source: str | None = None  # the log file: a store may refuse to merge the same file twice (a retried record)


@dataclass(slots=True)
class WindowState:
    minutes: dict[int, Slot] = field(default_factory=dict)  # minute -> (new distinct objects, bytes)
    hours: dict[int, Slot] = field(default_factory=dict)  # epoch hour -> (new distinct objects, bytes), older minutes
    seen: dict[Any, int] = field(default_factory=dict)  # object id -> minute of its last read
    families: dict[str, int] = field(default_factory=dict)  # client family -> first minute used
    first_seen: int = 0
    total: list[int] = field(default_factory=lambda: [0, 0])  # objects, bytes over every kept minute and hour
    pruned_at: int = 0
    #: set by the last merge: the families the identity had not used on the stage before it
    new_families: tuple[str, ...] = ()
    last_agents: Any = None  # not stored: saves the family lookup while an identity keeps its client

    def window_peak(self, touched: Iterable[int], width: int) -> tuple[int, int, int, int]:
        """The heaviest window of ``width`` minutes ending at a touched minute: (start, end, objects, bytes)."""
        return worst_window(self.minutes, touched, width)

    def day_peak(self, touched: Iterable[int]) -> tuple[int, int, int, int]:
        """The heaviest 24 hours ending at the hour of a touched minute: (first hour, last hour, objects, bytes)."""
        hours = dict(self.hours)
        for minute, (count, nbytes) in self.minutes.items():
            slot = hours.get(minute // 60)
            hours[minute // 60] = (count, nbytes) if slot is None else (slot[0] + count, slot[1] + nbytes)
        return worst_window(hours, {m // 60 for m in touched}, 24)


class WindowStore(Protocol):
    def merge(self, stage: str, identity: str, delta: Delta) -> WindowState: ...


def worst_window(slots: dict[int, Slot], touched: Iterable[int], width: int) -> tuple[int, int, int, int]:
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


def merge_state(state: WindowState | None, delta: Delta, prune_every: int = 60) -> WindowState:
    """Add ``delta`` to ``state`` (in place; a new state if None) and return it.

    Pruning (rolling minutes up into hours, forgetting what is older than a day) runs
    when ``prune_every`` minutes of reads have passed since the last one (every merge
    with 0): a warm scanner pays for it about once an hour per identity.
    """
    objects = delta.objects
    if state is None:
        first = min([delta.first] + list(delta.minutes) + list(objects.values()))
        state = WindowState(first_seen=first, pruned_at=first)
    minutes, seen, total = state.minutes, state.seen, state.total
    for obj, minute in objects.items():
        last = seen.get(obj)
        if last is not None and last >= minute - DAY_MINUTES:
            if minute > last:
                seen[obj] = minute
            continue  # read in the previous 24 hours: not a new object
        seen[obj] = minute
        slot = minutes.get(minute)
        minutes[minute] = (1, 0) if slot is None else (slot[0] + 1, slot[1])
        total[0] += 1
    for minute, rb in delta.minutes.items():
        slot = minutes.get(minute)
        minutes[minute] = (0, rb[1]) if slot is None else (slot[0], slot[1] + rb[1])
        total[1] += rb[1]
    learn(state, delta.agents, delta.first)
    if delta.first - state.pruned_at >= prune_every or len(seen) > SEEN_CAP:
        prune(state, delta.keep_after, delta.first)
    return state


def learn(state: WindowState, agents: Any, first: int) -> None:
    """Client families of this file's reads: ``state.new_families`` are the ones not used on the stage before
    (none on an identity's first reads: those are what it learns from)."""
    new: tuple[str, ...] = ()
    if agents != state.last_agents:
        state.last_agents = agents
        known = state.families
        had = bool(known)
        for fam in {client_family(a) for a in agents} if agents.__class__ is frozenset else (client_family(agents),):
            old = known.get(fam)
            if old is None:
                if had:
                    new += (fam,)
                known[fam] = first
                if first < state.first_seen:
                    state.first_seen = first
            elif first < old:
                known[fam] = first
    state.new_families = new


def prune(state: WindowState, keep_after: int, newest: int) -> None:
    """Roll minutes at or before ``keep_after`` up into hours; forget hours and objects older than a day plus lateness.

    ``newest`` is the *first* read of the file being merged, not its last: one record dated
    far in the future (a hostile or broken log) then cannot age the identity's window out.
    """
    state.pruned_at = newest
    minutes, hours, total = state.minutes, state.hours, state.total
    for minute in [m for m in minutes if m <= keep_after]:
        count, nbytes = minutes.pop(minute)
        slot = hours.get(minute // 60)
        hours[minute // 60] = (count, nbytes) if slot is None else (slot[0] + count, slot[1] + nbytes)
    last_hour = (newest + LATENESS_MINUTES) // 60
    for hour in [h for h in hours if h < last_hour - 25]:
        count, nbytes = hours.pop(hour)
        total[0] -= count
        total[1] -= nbytes
    forget = newest - DAY_MINUTES - LATENESS_MINUTES
    seen = state.seen
    if seen and min(seen.values()) < forget:
        for obj in [o for o, m in seen.items() if m < forget]:
            del seen[obj]
    if len(seen) > SEEN_CAP:  # forget the oldest, down to 3/4 of the cap, so this runs rarely
        for obj, _ in sorted(seen.items(), key=lambda kv: kv[1])[: len(seen) - SEEN_CAP * 3 // 4]:
            del seen[obj]


class MemoryWindowStore:
    """Windows for the offline scanner (and tests): states in a dict, updated in place.

    ``direct``: the detector counts a file's reads straight into these states (its hot
    loop writes ``seen`` and ``minutes``; ``finish`` adds the totals, learns and prunes)
    instead of building a :class:`Delta` to :meth:`merge`. Same counts, one pass less.
    """

    direct = True

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], WindowState] = {}
        self.writes = 0

    def state(self, stage: str, identity: str) -> WindowState:
        key = (stage, identity)
        state = self.items.get(key)
        if state is None:
            state = self.items[key] = WindowState(first_seen=-1)
        return state

    def merge(self, stage: str, identity: str, delta: Delta) -> WindowState:
        self.writes += 1
        key = (stage, identity)
        state = merge_state(self.items.get(key), delta)
        self.items[key] = state
        return state


class DeltaMemoryWindowStore(MemoryWindowStore):
    """In memory, but merged file by file like the DynamoDB store (tests hold both paths to the same results)."""

    direct = False
