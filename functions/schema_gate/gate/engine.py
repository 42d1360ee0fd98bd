"""The schema gate engine: a dataset contract checked over streamed Arrow record batches.

Every check is a whole-array pyarrow.compute kernel per batch; nothing runs per row in
Python. What must span the file (unique keys, duplicate rows) is kept as one 64-bit hash
per row (8 bytes) and resolved at the end partition by partition; drift keeps bin counts.
A value of the wrong type is a row-level ``type`` failure, never an exception.
"""

from __future__ import annotations

import math
import time
from array import array
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from bisect import bisect_right, insort
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from gate.hashing import combine, repeats, repeats_and_groups, value_hash
from stage_policy.model import Column, Contract

SAMPLES = 20
#: Every check the report can list. Only those a contract configures (and the ones that always
#: apply: min_rows, columns, type) appear in its report.
CHECKS = ("min_rows", "columns", "type", "required", "range", "regex", "enum", "length", "unique", "duplicate_rows",
          "null_fraction", "drift")
_INT = r"^\s*[+-]?\d{1,18}\s*$"
_FLOAT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_TRUE = ["true", "t", "1", "yes", "y"]
_BOOL = _TRUE + ["false", "f", "0", "no", "n"]
_TS_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d")
_TS = pa.timestamp("ms")  # one unit for every source: CSV seconds, Parquet ms/us/ns


class TooLarge(Exception):
    def __init__(self, rows: int, limit: int):
        super().__init__(f"more than {limit} rows (max_rows)")
        self.rows, self.limit = rows, limit


@dataclass
class CheckResult:
    check: str
    column: str | None
    failed_rows: int = 0
    samples: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    #: why the check fails when the failure is not (only) row-level: a missing column, too few rows, drift
    note: str | None = None

    @property
    def passed(self) -> bool:
        return self.failed_rows == 0 and self.note is None

    def add(self, mask: pa.Array, locate: Callable[[int], int], raw: pa.Array | None = None) -> None:
        """Count the True rows of ``mask``; keep the first samples as file row numbers (``locate``: batch index -> row)."""
        if mask.null_count:
            mask = mask.fill_null(False)
        n = pc.sum(mask).as_py() or 0
        if not n:
            return
        self.failed_rows += n
        room = SAMPLES - len(self.samples)
        if room > 0:
            idx = pc.indices_nonzero(mask).slice(0, room)
            self.samples += [locate(i) for i in idx.to_pylist()]
            if raw is not None:
                self.values += [redact(v) for v in pc.take(raw, idx).to_pylist()]

    def as_dict(self) -> dict[str, Any]:
        out = {"check": self.check, "column": self.column, "passed": self.passed, "failed_rows": self.failed_rows,
               "sample_row_numbers": self.samples}
        if self.note is not None:
            out["note"] = self.note
        return out


#: Values shorter than this are masked whole: their first and last characters would be most of them.
REDACT_BELOW = 8


def redact(value: Any) -> str:
    """Enough to recognise a failing value, not enough to leak it (short values: only their length)."""
    if value is None:
        return "<null>"
    text = str(value)
    if len(text) < REDACT_BELOW:
        return "*" * len(text) + f" ({len(text)} chars)"
    return f"{text[0]}{'*' * min(len(text) - 2, 8)}{text[-1]} ({len(text)} chars)"


def _only(good: pa.Array | None, mask: pa.Array) -> pa.Array:
    """``mask`` on the rows of ``good`` only (None: every row); null rows of ``mask`` are False."""
    if mask.null_count:
        mask = mask.fill_null(False)
    return mask if good is None else pc.and_(good, mask)


def _ts_bound(value: Any) -> pa.Scalar | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return pa.scalar(int(value * 1000), _TS)
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return pa.scalar(dt, _TS)


def _date_bound(value: Any) -> pa.Scalar | None:
    return None if value is None else pa.scalar(date.fromisoformat(str(value)), pa.date32())


class ColumnState:
    """Everything accumulated for one contract column."""

    def __init__(self, col: Column):
        self.col = col
        self.nulls = CheckResult("null_fraction", col.name)
        configured = {"type": True, "required": col.required, "range": col.min is not None or col.max is not None,
                      "regex": col.regex is not None, "enum": col.enum is not None,
                      "length": col.min_length is not None or col.max_length is not None}
        self.results = {name: CheckResult(name, col.name) for name, on in configured.items() if on}
        if col.type == "timestamp":
            self.lo, self.hi = _ts_bound(col.min), _ts_bound(col.max)
        elif col.type == "date":
            self.lo, self.hi = _date_bound(col.min), _date_bound(col.max)
        else:
            self.lo = None if col.min is None else pa.scalar(float(col.min))
            self.hi = None if col.max is None else pa.scalar(float(col.max))
        self.enum = pa.array(list(col.enum), pa.string()) if col.enum is not None else None


def _iso_times(text: pa.Array) -> pa.Array | None:
    """Arrow's own ISO-8601 cast for a batch whose every value parses (fractions of seconds included), else None.

    Tried naive first, then zoned (``Z``, ``+02:00``: converted to UTC); a batch with any other
    value goes through the formats one by one, which find the failing rows.
    """
    for target in (_TS, pa.timestamp("ms", tz="UTC")):
        try:
            values = pc.cast(text, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return values if target is _TS else values.cast(_TS)
    return None


def parse(raw: pa.Array, kind: str) -> tuple[pa.Array, pa.Array | None]:
    """(typed values, ok mask): ok is False where a non-null value is not a valid ``kind``; None when every value is."""
    t = raw.type
    if kind == "string":
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return raw, None
        return pc.cast(raw, pa.string()), None
    if kind == "int" and pa.types.is_integer(t):
        return (raw if t == pa.int64() else pc.cast(raw, pa.int64())), None
    if kind == "float" and (pa.types.is_floating(t) or pa.types.is_integer(t)):
        return (raw if t == pa.float64() else pc.cast(raw, pa.float64())), None
    if kind == "bool" and pa.types.is_boolean(t):
        return raw, None
    if kind == "timestamp" and pa.types.is_timestamp(t):
        # a zone-aware timestamp holds UTC instants: dropping the zone keeps the instant; the unit is normalised
        return pc.cast(raw.cast(pa.timestamp(t.unit)), _TS), None
    if kind == "timestamp" and pa.types.is_date(t):
        return pc.cast(pc.cast(raw, pa.date64()), _TS), None
    if kind == "date" and pa.types.is_date(t):
        return pc.cast(raw, pa.date32()), None
    if kind == "date" and pa.types.is_timestamp(t):
        return pc.cast(raw.cast(pa.timestamp(t.unit)), pa.date32()), None
    if pa.types.is_dictionary(t):  # Parquet's dictionary-encoded columns: type their values
        return parse(pc.cast(raw, t.value_type), kind)
    text = raw if pa.types.is_string(t) else pc.cast(raw, pa.string())
    if kind in ("int", "float"):
        # fast path: Arrow's own parser takes the whole batch when every value is clean
        try:
            return pc.cast(text, pa.int64() if kind == "int" else pa.float64()), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some value is not a number: find which ones below
    if kind == "int":
        ok = pc.match_substring_regex(text, _INT)
        values = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, text, pa.scalar(None, pa.string()))), pa.int64())
    elif kind == "float":
        ok = pc.match_substring_regex(text, _FLOAT)
        values = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, text, pa.scalar(None, pa.string()))), pa.float64())
    elif kind == "bool":
        lower = pc.utf8_lower(pc.utf8_trim_whitespace(text))
        ok = pc.is_in(lower, value_set=pa.array(_BOOL))
        values = pc.is_in(lower, value_set=pa.array(_TRUE))
    elif kind in ("timestamp", "date"):
        values = _iso_times(text)
        if values is not None:
            if kind == "date":
                values = pc.cast(values, pa.date32())
            return values, None
        for fmt in _TS_FORMATS:
            attempt = pc.strptime(text, format=fmt, unit="ms", error_is_null=True)
            values = attempt if values is None else pc.coalesce(values, attempt)
            if values.null_count == text.null_count:
                break
        if kind == "date":
            values = pc.cast(values, pa.date32())
        ok = pc.or_(pc.is_valid(values), pc.is_null(text))
    else:  # pragma: no cover - the model allows nothing else
        raise ValueError(kind)
    return values, ok.fill_null(True)


class Validator:
    """Feed record batches in file order; ``report()`` gives the contract's JSON report."""

    def __init__(self, contract: Contract, baseline: dict[str, Any] | None = None):
        self.contract = contract
        self.columns = {c.name: ColumnState(c) for c in contract.columns}
        self.rows = 0  # data rows, read or skipped
        self.kept = 0  # rows that reached the checks
        self.skipped: list[int] = []  # row numbers the reader could not split (sorted)
        self.started = time.perf_counter()
        self.column_check = CheckResult("columns", None)
        self.column_problems: list[str] = []
        self.header: list[str] | None = None
        self.unexpected: list[str] = []  # columns outside the contract, in the order first seen (any batch)
        self.unique = CheckResult("unique", ",".join(contract.unique_key) or None)
        self.dups = CheckResult("duplicate_rows", None)
        # one uint64 per row, in fixed-size Python buffers outside Arrow's pool: small arrays
        # kept alive across batches would pin the allocator's segments and inflate RSS, and
        # one growing buffer would be copied whole on every reallocation
        self._key_hashes: list[array] = []
        self._row_hashes: list[array] = []
        self._key_rows = 0  # rows with a key hash (every row unless a batch lacked a key column)
        self.baseline = baseline
        self.empty_is_null = contract.format != "csv"  # the CSV reader already maps "" to null
        self.bins: dict[str, dict[Any, int]] = {}
        self.drift_scores: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ per batch
    def invalid_rows(self, numbers: list[int]) -> None:
        """Rows the reader could not split into the header's columns (wrong field count)."""
        self.column_check.failed_rows += len(numbers)
        self.rows += len(numbers)
        for n in numbers:
            insort(self.skipped, n)
        self.column_check.samples = sorted(self.column_check.samples + numbers)[:SAMPLES]

    def file_row(self, kept: int) -> int:
        """The file's row number of the ``kept``-th checked row (1-based), skipped rows accounted for."""
        row = kept
        while True:
            moved = kept + bisect_right(self.skipped, row)
            if moved == row:
                return row
            row = moved

    def feed(self, batch: pa.RecordBatch) -> None:
        names = batch.schema.names
        if self.header is None:
            self.header = list(names)
        if self.contract.exact_columns:  # JSON Lines can bring a new key in any line, so every batch is looked at
            self.unexpected += [n for n in names if n not in self.columns and n not in self.unexpected]
        base = self.kept
        n = batch.num_rows
        self.kept += n
        self.rows += n
        if self.rows > self.contract.max_rows:
            raise TooLarge(self.rows, self.contract.max_rows)
        if n == 0:
            return
        cols = {name: batch.column(name) for name in names}  # one Python object per column
        typed: dict[str, pa.Array] = {}
        suspect: set[str] = set()  # columns whose typed value may be null where the text is not
        for name, state in self.columns.items():
            if name not in names:
                continue
            typed[name], maybe = self._check_column(state, cols[name], base)
            if maybe:
                suspect.add(name)
        hashed: dict[int, pa.Array] = {}  # the same array (a text column, a key column) is hashed once

        def hash_of(arr: pa.Array) -> pa.Array:
            h = hashed.get(id(arr))
            if h is None:
                hashed[id(arr)] = h = value_hash(arr)
            return h

        if self.contract.unique_key and all(k in names for k in self.contract.unique_key):
            _keep(self._key_hashes, combine([hash_of(typed.get(k, cols[k])) for k in self.contract.unique_key]))
            self._key_rows += n
        if self.contract.duplicate_rows == "forbid":
            # typed values where they parsed (cheap bit hashes), the text itself where they did not
            hashes: list[pa.Array] = []
            for name in names:
                raw = cols[name]
                value = typed.get(name)
                if value is None or pa.types.is_string(value.type):
                    hashes.append(hash_of(raw))
                elif name in suspect:
                    h = hash_of(value)
                    bad = pc.and_(pc.is_null(value), pc.is_valid(raw))
                    if pc.any(bad).as_py():
                        h = pc.if_else(bad, value_hash(raw), h)
                    hashes.append(h)
                else:  # typed value null exactly where the text is
                    hashes.append(hash_of(value))
            _keep(self._row_hashes, combine(hashes))
        if self.contract.drift is not None and self.baseline:
            for name in self.contract.drift.columns:
                if name in typed:
                    self._bin(name, typed[name])

    def _column_problems(self) -> list[str]:
        if self.header is None:  # no row at all (min_rows says so); only a CSV file also lacks its header
            return ["no columns: the file is empty (no header row)"] if self.contract.format == "csv" else []
        problems = []
        missing = [c for c in self.columns if c not in self.header]
        if missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        if self.unexpected:
            problems.append(f"unexpected columns: {', '.join(self.unexpected)}")
        return problems

    def _check_column(self, state: ColumnState, raw: pa.Array, base: int) -> tuple[pa.Array, bool]:
        """Check one column of a batch: (its typed values, null where a value is not of its type;
        whether a typed value may be null where the batch's own value is not)."""
        if isinstance(raw, pa.ChunkedArray):
            raw = raw.combine_chunks()
        col, res = state.col, state.results
        base = (lambda i, _b=base: self.file_row(_b + i + 1)) if self.skipped else (lambda i, _b=base: _b + i + 1)
        suspect = False
        if self.empty_is_null and pa.types.is_string(raw.type) and raw.null_count < len(raw):
            empty = pc.equal(pc.binary_length(raw), 0)
            if pc.any(empty).as_py():
                raw = pc.if_else(empty, pa.scalar(None, pa.string()), raw)  # "" is a null
                suspect = True
        if raw.null_count:
            null = pc.is_null(raw)
            state.nulls.add(null, base)
            if "required" in res:
                res["required"].add(null, base)
        values, ok = parse(raw, col.type)
        if ok is None:  # every value is of the column's type (the usual case): no type failure to look for
            good = pc.is_valid(values) if values.null_count else None
        else:
            bad_type = pc.and_(pc.invert(ok), pc.is_valid(raw))
            res["type"].add(bad_type, base, raw)
            good = pc.and_(ok, pc.is_valid(values))
            suspect = True
        if "regex" in res or "enum" in res or "length" in res:
            # text checks see a value as written (CSV, JSON text) or, for typed sources, its canonical text
            text = values if pa.types.is_string(values.type) else (
                raw if pa.types.is_string(raw.type) else pc.cast(values, pa.string()))
        if "range" in res:
            out = None
            if state.lo is not None:
                out = pc.less(values, state.lo)
            if state.hi is not None:
                above = pc.greater(values, state.hi)
                out = above if out is None else pc.or_(out, above)
            res["range"].add(_only(good, out), base, raw)
        if "regex" in res:
            res["regex"].add(_only(good, pc.invert(pc.match_substring_regex(text, col.regex))), base, raw)
        if "enum" in res:
            res["enum"].add(_only(good, pc.invert(pc.is_in(text, value_set=state.enum))), base, raw)
        if "length" in res:
            length = pc.utf8_length(text)
            out = None
            if col.min_length is not None:
                out = pc.less(length, col.min_length)
            if col.max_length is not None:
                above = pc.greater(length, col.max_length)
                out = above if out is None else pc.or_(out, above)
            if out is not None:
                res["length"].add(_only(good, out), base, raw)
        if ok is None:
            return values, suspect
        return pc.if_else(good, values, pa.scalar(None, values.type)), suspect

    def _bin(self, name: str, values: pa.Array) -> None:
        spec = (self.baseline or {}).get("columns", {}).get(name)
        counts = self.bins.setdefault(name, {})
        valid = pc.drop_null(values)
        if spec and spec.get("kind") == "numeric" and spec["edges"] and all(
                a <= b for a, b in zip(spec["edges"], spec["edges"][1:])):
            # ascending edges: a value's bin is the number of edges at or below it, so bin j holds
            # (values >= edge j-1) - (values >= edge j): one comparison and one count per edge
            floats = pc.cast(valid, pa.float64())
            at_or_above = [len(floats)] + [pc.sum(pc.greater_equal(floats, edge)).as_py() or 0 for edge in spec["edges"]] + [0]
            for j in range(len(at_or_above) - 1):
                n = at_or_above[j] - at_or_above[j + 1]
                if n:
                    counts[j] = counts.get(j, 0) + n
            return
        if spec and spec.get("kind") == "numeric":
            edges = spec["edges"]
            idx = None
            floats = pc.cast(valid, pa.float64())
            for edge in edges:
                step = pc.cast(pc.greater_equal(floats, edge), pa.int8())
                idx = step if idx is None else pc.add(idx, step)
            if idx is None:
                return
            vc = pc.value_counts(idx)
        else:
            vc = pc.value_counts(pc.cast(valid, pa.string()))
        for item in vc.to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]

    # ------------------------------------------------------------------ the report
    def report(self) -> dict[str, Any]:
        """The checks the contract configures, plus those that always apply (min_rows, columns, type).

        A row-level failure has its row count and first row numbers; a file-level one (too few
        rows, a missing column, drift) says why in ``note`` and lists no rows.
        """
        rows = self.rows
        minimum = CheckResult("min_rows", None)
        if rows < self.contract.min_rows:
            minimum.note = f"{rows} rows; the contract needs at least {self.contract.min_rows}"
        checks: list[CheckResult] = [minimum, self.column_check]
        self.column_problems = self._column_problems()
        if self.column_problems:
            self.column_check.note = "; ".join(self.column_problems)
        for state in self.columns.values():
            checks += list(state.results.values())
        # Two equal rows have equal keys: when every row has a key hash, only the rows whose key is
        # not unique can repeat a row (few, in a file that meets its unique key), and only those
        # rows' hashes are looked at for duplicate rows.
        candidates = None
        if self.contract.unique_key:
            keys = _stored(self._key_hashes)
            self._key_hashes = []
            if self.contract.duplicate_rows == "forbid" and self._key_rows == self.kept:
                later, candidates = repeats_and_groups(keys, limit=self.kept // 8)
            else:
                later = repeats(keys)
            self._found(self.unique, later)
            checks.append(self.unique)
        if self.contract.duplicate_rows == "forbid":
            row_hashes = _stored(self._row_hashes)
            self._row_hashes = []
            if candidates is None:
                later = repeats(row_hashes)
            elif len(candidates) < 2:
                later = pa.array([], pa.uint64())
            else:  # positions among the candidates, back to rows
                later = pc.take(candidates, repeats(_take_sorted(row_hashes, candidates)))
            self._found(self.dups, later)
            checks.append(self.dups)
        for state in self.columns.values():
            if state.col.required:
                continue  # a null in a required column already fails `required`, row by row
            frac = state.nulls.failed_rows / rows if rows else 0.0
            result = CheckResult("null_fraction", state.col.name)
            if frac > self.contract.max_null_fraction:
                result.failed_rows, result.samples = state.nulls.failed_rows, state.nulls.samples
            checks.append(result)
        drift = self._drift()
        for name, d in drift.items():
            result = CheckResult("drift", name)
            if d["score"] > d["threshold"]:
                result.note = f"not row-level: PSI {d['score']:.4f} against the baseline is above {d['threshold']}"
            checks.append(result)
        passed = all(c.passed for c in checks)
        return {
            "contract": self.contract.name,
            "passed": passed,
            "rows": rows,
            "checks": [c.as_dict() for c in checks],
            "null_counts": {name: state.nulls.failed_rows for name, state in self.columns.items()},
            "duplicate_rows": self.dups.failed_rows,
            "drift": drift,
            "column_problems": self.column_problems,
            "duration_seconds": round(time.perf_counter() - self.started, 3),
        }

    def samples_with_values(self) -> dict[str, list[dict[str, Any]]]:
        """Failing rows with redacted values, per check and column (for the S3 report)."""
        out = {}
        for state in self.columns.values():
            for r in state.results.values():
                if r.failed_rows:
                    out[f"{r.check}:{r.column}"] = [{"row": n, "value": v} for n, v in zip(r.samples, r.values)]
        return out

    def _found(self, result: CheckResult, later: pa.Array) -> None:
        result.failed_rows = len(later)
        result.samples = [self.file_row(i + 1) for i in later.slice(0, SAMPLES).to_pylist()]

    def _drift(self) -> dict[str, dict[str, Any]]:
        drift = self.contract.drift
        if drift is None or not self.baseline:
            return {}
        out = {}
        for name in drift.columns:
            spec = self.baseline.get("columns", {}).get(name)
            counts = self.bins.get(name, {})
            total = sum(counts.values())
            if not spec or not total:
                continue
            if spec["kind"] == "numeric":
                expected = spec["fractions"]
                actual = [counts.get(i, 0) / total for i in range(len(expected))]
            else:
                cats = sorted(set(spec["fractions"]) | set(counts))
                expected = [spec["fractions"].get(c, 0.0) for c in cats]
                actual = [counts.get(c, 0) / total for c in cats]
            out[name] = {"metric": "psi", "score": round(psi(expected, actual), 6), "threshold": drift.threshold}
        return out


_STORE_CHUNK = 1 << 20  # values per store buffer (8 MiB)


def _stored(store: list[array]) -> pa.ChunkedArray:
    """Zero-copy views of a hash store's buffers."""
    return pa.chunked_array([pa.Array.from_buffers(pa.uint64(), len(c), [None, pa.py_buffer(c)]) for c in store if c],
                            pa.uint64())


def _take_sorted(values: pa.ChunkedArray, positions: pa.Array) -> pa.Array:
    """``values`` at ascending ``positions``, chunk by chunk (a chunked ``take`` may copy every chunk first)."""
    parts, offset = [], 0
    for chunk in values.chunks:
        end = offset + len(chunk)
        inside = pc.and_(pc.greater_equal(positions, offset), pc.less(positions, end))
        local = pc.subtract(pc.filter(positions, inside), offset)
        if len(local):
            parts.append(pc.take(chunk, local))
        offset = end
    return pa.concat_arrays(parts) if parts else pa.array([], values.type)


def _keep(store: list[array], hashes: pa.Array) -> None:
    """Append a uint64 array's values to the store, filling fixed-size buffers (never reallocated whole)."""
    if isinstance(hashes, pa.ChunkedArray):
        hashes = hashes.combine_chunks()
    if hashes.null_count:
        hashes = hashes.fill_null(0)
    view = memoryview(hashes.buffers()[1])[hashes.offset * 8:(hashes.offset + len(hashes)) * 8]
    while view:
        if not store or len(store[-1]) >= _STORE_CHUNK:
            store.append(array("Q"))
        room = (_STORE_CHUNK - len(store[-1])) * 8
        store[-1].frombytes(view[:room])
        view = view[room:]


def psi(expected: list[float], actual: list[float], eps: float = 1e-4) -> float:
    """Population stability index: sum((a - e) * ln(a / e)), empty bins floored at ``eps``."""
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, eps), max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def profile(contract: Contract, batches: Iterable[pa.RecordBatch]) -> dict[str, Any]:
    """The drift baseline: decile edges and bin fractions (numeric), category frequencies (other)."""
    if contract.drift is None:
        raise ValueError(f"contract {contract.name!r} declares no drift columns")
    cols = {c.name: c for c in contract.columns}
    values: dict[str, list[pa.Array]] = {name: [] for name in contract.drift.columns}
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for name in contract.drift.columns:
            if name in batch.schema.names:
                typed, ok = parse(batch.column(name).combine_chunks() if isinstance(batch.column(name), pa.ChunkedArray)
                                  else batch.column(name), cols[name].type)
                values[name].append(pc.drop_null(typed if ok is None else pc.if_else(ok, typed, pa.scalar(None, typed.type))))
    out: dict[str, Any] = {"contract": contract.name, "contract_version": contract.version, "rows": rows, "columns": {}}
    for name, parts in values.items():
        arr = pa.concat_arrays(parts) if parts else pa.array([])
        if cols[name].type in ("int", "float") and len(arr):
            floats = pc.cast(arr, pa.float64())
            qs = pc.quantile(floats, q=[i / contract.drift.bins for i in range(1, contract.drift.bins)]).to_pylist()
            edges = sorted(set(qs))
            idx = None
            for edge in edges:
                step = pc.cast(pc.greater_equal(floats, edge), pa.int8())
                idx = step if idx is None else pc.add(idx, step)
            counts = {i["values"]: i["counts"] for i in pc.value_counts(idx).to_pylist()} if idx is not None else {0: len(arr)}
            out["columns"][name] = {"kind": "numeric", "edges": edges,
                                    "fractions": [counts.get(i, 0) / len(arr) for i in range(len(edges) + 1)]}
        else:
            vc = pc.value_counts(pc.cast(arr, pa.string())).to_pylist() if len(arr) else []
            total = sum(i["counts"] for i in vc) or 1
            out["columns"][name] = {"kind": "categorical", "fractions": {i["values"]: i["counts"] / total for i in vc}}
    return out
