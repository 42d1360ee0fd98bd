"""The issue's baseline: the JSON Lines reader the gate had before issue #9 (orjson, line by line, every value to text).

Kept only so bench/schema_gate.py can measure it in the same run as the current reader.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pyarrow as pa

BLOCK = 1 << 20


def jsonl(stream: Any, contract: Any, on_invalid_rows: Callable[[list[int]], None]) -> Iterator[pa.RecordBatch]:
    import orjson

    names = [c.name for c in contract.columns]
    pending = b""
    line_no = 0
    while True:
        chunk = stream.read(BLOCK)
        data = pending + chunk if chunk else pending
        if not data:
            return
        lines = data.split(b"\n")
        pending = lines.pop() if chunk else b""
        cols: dict[str, list[Any]] = {n: [] for n in names}
        extra: set[str] = set()
        invalid: list[int] = []
        for line in lines:
            if not line.strip():
                continue
            line_no += 1
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                invalid.append(line_no)
                continue
            extra.update(k for k in obj if k not in cols)
            for n in names:
                cols[n].append(_text(obj.get(n)))
        if line_no and any(cols[n] for n in names):
            arrays = [pa.array(cols[n], pa.string()) for n in names]
            schema_names = names + sorted(extra)
            arrays += [pa.nulls(len(arrays[0]), pa.string()) for _ in sorted(extra)]
            yield pa.RecordBatch.from_arrays(arrays, names=schema_names)
        if invalid:
            on_invalid_rows(invalid)
        if not chunk:
            return


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    import orjson

    return orjson.dumps(value).decode()
