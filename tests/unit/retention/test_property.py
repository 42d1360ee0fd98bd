"""Safety of the sweep planner over generated bucket states (hypothesis).

Each example is one bucket: a stage (perishable with random classes, permanent, or unmanaged),
a mode, a cap, Object Lock on or off, and keys with versions and delete markers of random
ages, legal holds, retentions and unread lock states. An independent oracle then checks that
nothing unexpired, held, locked, unverified, permanent, unmanaged, dry-run or beyond the cap is
deleted, that no kept version is left exposed as current, and that with budget to spare every
expired, unprotected entry is deleted.

The default run draws 300 states. The figure (10,000) is one command:

    STAGEWARDEN_SWEEP_EXAMPLES=10000 .venv/bin/pytest tests/unit/retention/test_property.py \
        -p no:cacheprovider --hypothesis-show-statistics

(`make property` runs exactly that).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keeper.plan import Entry, Sweep
from stage_policy.model import PrefixClass, Retention

EXAMPLES = int(os.environ.get("STAGEWARDEN_SWEEP_EXAMPLES", "300"))
NOW = datetime(2026, 11, 23, 3, 30, tzinfo=timezone.utc)
KEYS = ["raw/a.csv", "raw/b/c.csv", "aggregated/d.parquet", "aggregated/e", "landing/f.csv", "g", "rawish/h", "tmp/i"]
PREFIXES = ["raw/", "aggregated/", "landing/", "tmp/"]


@dataclass
class State:
    kind: str  # perishable | permanent | unmanaged
    retention: Retention | None
    mode: str
    cap: int
    lock_enabled: bool
    keys: dict[str, list[Entry]]  # newest first
    seed: int


@st.composite
def retentions(draw) -> Retention:
    default = draw(st.integers(min_value=7, max_value=120))
    chosen = draw(st.lists(st.sampled_from(PREFIXES), unique=True, max_size=3))
    classes = tuple(PrefixClass(prefix=p, days=draw(st.integers(min_value=7, max_value=default))) for p in chosen)
    shortest = min([default] + [c.days for c in classes])
    noncurrent = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=shortest)))
    return Retention(default_days=default, noncurrent_version_days=noncurrent, prefix_classes=classes)


@st.composite
def entries_of(draw, key: str) -> list[Entry]:
    n = draw(st.integers(min_value=1, max_value=6))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=24 * 80), min_size=n, max_size=n))  # hours between versions
    first = draw(st.integers(min_value=0, max_value=24 * 200))
    out, age = [], first
    for i, gap in enumerate(gaps):
        marker = draw(st.booleans()) if draw(st.integers(0, 3)) == 0 else False
        hold = not marker and draw(st.integers(0, 5)) == 0
        until = None
        if not marker and draw(st.integers(0, 4)) == 0:
            until = NOW + timedelta(hours=draw(st.integers(min_value=-24 * 60, max_value=24 * 60)))
        read = draw(st.integers(0, 6)) != 0
        out.append(Entry(key, f"{key}#{i}", NOW - timedelta(hours=age), i == 0, marker=marker, legal_hold=hold,
                         retain_until=until, lock_read=read))
        age += gap
    return out


@st.composite
def states(draw) -> State:
    kind = draw(st.sampled_from(["perishable", "perishable", "perishable", "permanent", "unmanaged"]))
    retention = draw(retentions()) if kind == "perishable" else (Retention(permanent=True, immutable=True) if kind == "permanent" else None)
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, min_size=0, max_size=len(KEYS)))
    return State(kind, retention, draw(st.sampled_from(["enforce", "dry_run"])), draw(st.integers(min_value=0, max_value=25)),
                 draw(st.booleans()), {k: draw(entries_of(k)) for k in keys}, draw(st.integers(0, 2**16)))


# ---------------------------------------------------------------- the oracle (written apart from keeper.plan)
def aged_out(entries: list[Entry], ret: Retention) -> list[bool]:
    days = ret.days_for(entries[0].key)
    noncurrent = ret.noncurrent_version_days or days
    noncurrent = min(noncurrent, days)
    if not entries[0].marker and (NOW - entries[0].last_modified).total_seconds() > days * 86400:
        return [True] * len(entries)
    return [False] + [(NOW - entries[i - 1].last_modified).total_seconds() > noncurrent * 86400 for i in range(1, len(entries))]


def protected(e: Entry, lock_enabled: bool) -> bool:
    return not e.marker and (e.legal_hold or (e.retain_until is not None and e.retain_until > NOW) or (lock_enabled and not e.lock_read))


def run(state: State) -> Sweep:
    sweep = Sweep(state.retention, NOW, state.cap, state.mode, state.lock_enabled)
    shuffle = random.Random(state.seed)
    for key in sorted(state.keys):
        if sweep.full:
            break
        given_order = list(state.keys[key])
        shuffle.shuffle(given_order)  # the planner must not rely on the listing's order within a key
        sweep.feed(given_order)
    return sweep


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(states())
def test_the_sweep_planner_never_deletes_what_the_policy_keeps(state: State) -> None:
    sweep = run(state)
    chosen = sweep.delete + sweep.report
    deleted = {(e.key, e.version_id) for e in sweep.delete}
    planned = {(e.key, e.version_id) for e in chosen}

    # nothing in a permanent or unmanaged bucket, nothing deleted in dry run, never beyond the cap
    if state.kind != "perishable":
        assert chosen == [] and sweep.hide == []
    if state.mode == "dry_run":
        assert sweep.delete == []
    assert len(chosen) == len(planned) <= state.cap

    for key, entries in state.keys.items():
        if state.kind != "perishable":
            continue
        aged = aged_out(entries, state.retention)
        gone = [(key, e.version_id) in planned for e in entries]
        for i, (e, is_gone) in enumerate(zip(entries, gone)):
            if not is_gone:
                continue
            if e.marker:
                # an aged noncurrent marker, or one with nothing left behind it
                assert (i > 0 and aged[i]) or all(gone[i + 1:]), (key, i)
            else:
                assert aged[i], ("unexpired version deleted", key, i)
                assert not protected(e, state.lock_enabled), ("held, locked or unverified version deleted", key, i)
        # no kept version becomes the current one without a delete marker placed over it
        if gone[0] and not all(gone):
            assert not entries[0].marker and key in sweep.hide, ("kept version exposed", key)
        if key in sweep.hide:
            assert gone[0] and not entries[0].marker

    # liveness: with budget to spare, everything expired and unprotected goes (the sweep is not a no-op)
    if state.kind == "perishable" and not sweep.tally.capped and not sweep.full:
        for key, entries in state.keys.items():
            aged = aged_out(entries, state.retention)
            for i, e in enumerate(entries):
                if not e.marker and aged[i] and not protected(e, state.lock_enabled):
                    assert (key, e.version_id) in planned, ("expired version missed", key, i)
    assert deleted <= planned
