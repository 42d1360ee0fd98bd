"""Record batches from CSV (optionally gzip), JSON Lines (optionally gzip) and Parquet, read in blocks.

CSV and JSON Lines are read sequentially (an S3 body streams straight in); Parquet needs
random access to its footer, so it takes a seekable file (S3 ranged reads in the function).
CSV columns of the contract are read as text and typed by the engine, so a bad value is a
row-level failure; rows with the wrong number of fields are reported, not fatal.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Callable, Iterator

import pyarrow as pa

from stage_policy.model import Contract

BLOCK = 1 << 20
ROWS_PER_BATCH = 65_536

if pa.default_memory_pool().backend_name == "jemalloc":
    # return freed pages at once: with jemalloc's default decay the CSV reader's peak RSS grew
    # ~20 bytes a row with the file's size; with 0 it stays flat (measured, bench/schema_gate.py)
    pa.jemalloc_set_decay_ms(0)  # 4 MiB blocks: bounded memory whatever the object size


class ReadError(ValueError):
    """The file cannot be read as the contract's format (named in the message)."""


def is_gzip(name: str, contract: Contract) -> bool:
    if contract.format == "csv" and contract.csv.compression != "auto":
        return contract.csv.compression == "gzip"
    return name.endswith(".gz")


def batches(source: BinaryIO, name: str, contract: Contract, on_invalid_rows: Callable[[list[int]], None]) -> Iterator[pa.RecordBatch]:
    """Batches of about ``ROWS_PER_BATCH`` rows: small read blocks keep memory flat, larger
    batches keep the per-call overhead of the compute kernels low."""
    pending: list[pa.RecordBatch] = []
    invalid: list[int] = []  # reported before the batch they sit in, so its rows get their file numbers
    rows = 0
    for batch in _blocks(source, name, contract, invalid.extend):
        pending.append(batch)
        rows += batch.num_rows
        if rows >= ROWS_PER_BATCH:
            if invalid:
                on_invalid_rows(invalid[:])
                invalid.clear()
            yield _merge(pending)
            pending, rows = [], 0
    if invalid:
        on_invalid_rows(invalid[:])
    if pending:
        yield _merge(pending)


def _merge(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _blocks(source: BinaryIO, name: str, contract: Contract, on_invalid_rows: Callable[[list[int]], None]) -> Iterator[pa.RecordBatch]:
    try:
        if contract.format == "parquet":
            yield from _parquet(source)
            return
        stream: Any = pa.PythonFile(source, mode="r") if not isinstance(source, pa.NativeFile) else source
        if is_gzip(name, contract):
            stream = pa.CompressedInputStream(stream, "gzip")
        if contract.format == "csv":
            yield from _csv(stream, contract, on_invalid_rows)
        else:
            yield from _jsonl(stream, contract, on_invalid_rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError) as exc:
        raise ReadError(f"{name}: cannot be read as {contract.format} ({str(exc).splitlines()[0]})") from None


def _csv(stream: Any, contract: Contract, on_invalid_rows: Callable[[list[int]], None]) -> Iterator[pa.RecordBatch]:
    from pyarrow import csv

    opts = contract.csv
    bad: list[int] = []

    def invalid(row: Any) -> str:
        bad.append((row.number - 1) if (row.number and opts.header) else (row.number or 0))
        return "skip"

    reader = csv.open_csv(
        stream,
        read_options=csv.ReadOptions(block_size=BLOCK, use_threads=False,
                                     column_names=None if opts.header else [c.name for c in contract.columns]),
        parse_options=csv.ParseOptions(delimiter=opts.delimiter, quote_char=opts.quote_char, invalid_row_handler=invalid),
        convert_options=csv.ConvertOptions(column_types={c.name: pa.string() for c in contract.columns},
                                           strings_can_be_null=True, quoted_strings_can_be_null=False, null_values=[""]),
    )
    for batch in reader:
        yield batch  # rows of the block first, then the block's unreadable rows (row numbers stay in file order)
        if bad:
            on_invalid_rows(bad[:])
            bad.clear()
    if bad:
        on_invalid_rows(bad[:])


def _jsonl(stream: Any, contract: Contract, on_invalid_rows: Callable[[list[int]], None]) -> Iterator[pa.RecordBatch]:
    """JSON Lines, one object a line; every value becomes text so the engine types it (a bad line fails its row)."""
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


def _parquet(source: BinaryIO) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source)
    yield from pf.iter_batches(batch_size=65536)
