"""Synthetic event data for the schema gate's demo, tests and benchmark (fixed seeds).

Columns: id (unique from 1), user_id (1-100000), amount (log-normal, 0-9999.99), score
(0-1, 0.5 % empty), name (4 syllables, capitalised), email (name.user_id@example.com),
event_ts (ISO seconds, 2021-01-01 to 2024-12-31), category (A-E, skewed).
``dirty`` plants a known number of each defect at distinct rows and appends duplicates.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

HEADER = "id,user_id,amount,score,name,email,event_ts,category"
_SYLLABLES = ["ka", "lo", "mi", "ra", "ne", "to", "su", "vi", "da", "pe", "zo", "ju", "ba", "ri", "co", "fe"]
_START = int(datetime(2021, 1, 1, tzinfo=timezone.utc).timestamp())
_END = int(datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp())
_CATEGORIES = ["A", "B", "C", "D", "E"]
_WEIGHTS = [0.45, 0.25, 0.15, 0.1, 0.05]


def rows(n: int, seed: int, amount_mu: float = 4.0) -> Iterator[list[str]]:
    rng = random.Random(seed)
    cum = [sum(_WEIGHTS[: i + 1]) for i in range(len(_WEIGHTS))]
    for i in range(1, n + 1):
        user = rng.randint(1, 100000)
        name = "".join(rng.choice(_SYLLABLES) for _ in range(4)).capitalize()
        amount = min(9999.99, round(math.exp(rng.gauss(amount_mu, 1.2)), 2))
        score = "" if rng.random() < 0.005 else f"{rng.random():.4f}"
        ts = datetime.fromtimestamp(rng.randint(_START, _END), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        r = rng.random()
        category = next(c for c, w in zip(_CATEGORIES, cum) if r <= w)
        yield [str(i), str(user), f"{amount:.2f}", score, name, f"{name.lower()}.{user}@example.com", ts, category]


@dataclass
class Planted:
    """How many of each defect ``write_csv(dirty=True)`` planted (the exact expected counts)."""

    counts: dict[str, int] = field(default_factory=dict)
    rows: dict[str, list[int]] = field(default_factory=dict)


def write_csv(path: Path, n: int, seed: int, dirty: bool = False, per_defect: int = 0, duplicates: int = 0,
              amount_mu: float = 4.0) -> Planted:
    """Write ``n`` rows (plus ``duplicates`` appended copies when dirty); returns what was planted."""
    planted = Planted()
    rng = random.Random(seed + 1)
    defects = ["bad_email", "negative_amount", "unknown_category", "empty_name", "non_numeric_user_id"]
    targets: dict[int, str] = {}
    if dirty:
        picks = rng.sample(range(1, n + 1), per_defect * len(defects))
        for k, defect in enumerate(defects):
            rows_for = sorted(picks[k * per_defect:(k + 1) * per_defect])
            planted.rows[defect] = rows_for
            planted.counts[defect] = per_defect
            targets.update({r: defect for r in rows_for})
    copies: list[str] = []
    dup_sources = set(rng.sample([r for r in range(1, n + 1) if r not in targets], duplicates)) if dirty and duplicates else set()
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER + "\n")
        for row in rows(n, seed, amount_mu):
            rid = int(row[0])
            defect = targets.get(rid)
            if defect == "bad_email":
                row[5] = row[5].replace("@", "_at_")
            elif defect == "negative_amount":
                row[2] = f"-{row[2]}"
            elif defect == "unknown_category":
                row[7] = "Z"
            elif defect == "empty_name":
                row[4] = ""
            elif defect == "non_numeric_user_id":
                row[1] = "user" + row[1]
            line = ",".join(row)
            fh.write(line + "\n")
            if rid in dup_sources:
                copies.append(line)
        for line in copies:
            fh.write(line + "\n")
    if dirty:
        planted.counts["duplicate_rows"] = len(copies)
        planted.rows["duplicate_rows"] = list(range(n + 1, n + len(copies) + 1))
    return planted
