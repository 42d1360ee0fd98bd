"""Record batches from CSV (optionally gzip), JSON Lines (optionally gzip) and Parquet, read in blocks.

CSV and JSON Lines are read sequentially (an S3 body streams straight in); Parquet needs
random access to its footer, so it takes a seekable file (S3 ranged reads in the function).
CSV columns of the contract are read as text and typed by the engine, so a bad value is a
row-level failure; rows with the wrong number of fields are reported, not fatal.
"""

from __future__ import annotations

import re
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
        if pending and batch.schema != pending[0].schema:  # JSON Lines: a block read line by line is typed as text
            if invalid:
                on_invalid_rows(invalid[:])
                invalid.clear()
            yield _merge(pending)
            pending, rows = [], 0
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
        gzip = is_gzip(name, contract)
        if contract.format != "csv" and not gzip:
            yield from _jsonl(source, contract, on_invalid_rows)  # plain reads of whole blocks: no wrapper needed
            return
        stream: Any = pa.PythonFile(source, mode="r") if not isinstance(source, pa.NativeFile) else source
        if gzip:
            stream = pa.CompressedInputStream(stream, "gzip")
        if contract.format == "csv":
            yield from _csv(stream, contract, on_invalid_rows)
        else:
            yield from _jsonl(stream, contract, on_invalid_rows)
    except ReadError as exc:
        raise ReadError(f"{name}: cannot be read as {contract.format} ({exc})") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError) as exc:
        raise ReadError(f"{name}: cannot be read as {contract.format} ({safe_reason(exc)})") from None


#: Parts of reader messages that quote the file's content: cut before they reach a report or a finding.
_DATA_TAILS = (
    (re.compile(r"(Expected \d+ columns, got \d+)\s*:.*", re.S), r"\1"),
    (re.compile(r"(couldn't parse|Failed to parse string|Invalid value|invalid value)\s*:.*", re.S), r"\1"),
    (re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`"), "<…>"),
)


def safe_reason(exc: BaseException) -> str:
    """The reader's reason without the file's bytes: messages that quote a row or a value are cut there.

    Findings go to SNS and the report is readable by more people than the data: neither may
    carry data (DESIGN.md section 5). What is left is the reader's own words, bounded.
    """
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    for pattern, repl in _DATA_TAILS:
        text = pattern.sub(repl, text)
    return text[:200] or type(exc).__name__


def _csv(stream: Any, contract: Contract, on_invalid_rows: Callable[[list[int]], None]) -> Iterator[pa.RecordBatch]:
    from pyarrow import csv

    opts = contract.csv
    bad: list[int] = []

    def invalid(row: Any) -> str:
        bad.append((row.number - 1) if (row.number and opts.header) else (row.number or 0))
        return "skip"

    try:
        reader = _open_csv(csv, stream, contract, opts, invalid)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return  # no header, no rows: the report says so (columns, min_rows)
        raise
    seen = False
    for batch in reader:
        seen = True
        yield batch  # rows of the block first, then the block's unreadable rows (row numbers stay in file order)
        if bad:
            on_invalid_rows(bad[:])
            bad.clear()
    if bad:
        on_invalid_rows(bad[:])
    if not seen:  # header only: no batch, but the header's columns are still checked
        yield _empty(reader.schema)


def _open_csv(csv: Any, stream: Any, contract: Contract, opts: Any, invalid: Callable[[Any], str]) -> Any:
    return csv.open_csv(
        stream,
        read_options=csv.ReadOptions(block_size=BLOCK, use_threads=False,
                                     column_names=None if opts.header else [c.name for c in contract.columns]),
        parse_options=csv.ParseOptions(delimiter=opts.delimiter, quote_char=opts.quote_char, invalid_row_handler=invalid),
        convert_options=csv.ConvertOptions(column_types={c.name: pa.string() for c in contract.columns},
                                           strings_can_be_null=True, quoted_strings_can_be_null=False,
                                           null_values=list(opts.null_values)),
    )


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


#: Arrow type a JSON value must have to be read natively; the engine types the rest from text.
_JSON_TYPES = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "string": pa.string(),
               "timestamp": pa.string(), "date": pa.string()}
#: A line longer than this is not a record (memory stays bounded).
MAX_LINE = 32 << 20
#: A failing piece of at most this many lines is read line by line; a larger one is halved and retried.
_LINE_BY_LINE = 32


def _jsonl(stream: Any, contract: Contract, on_invalid_rows: Callable[[list[int]], None]) -> Iterator[pa.RecordBatch]:
    """JSON Lines through Arrow's JSON reader (``pyarrow.json.open_json``), one 1 MiB block of whole lines at a time.

    The reader is strict: one value of another JSON type than the contract's (``"5"`` in an int
    column, a number in a string column), a line that is not a JSON object, a key given twice,
    fails its whole block. Such a block is halved and each half read again, down to pieces of
    ``_LINE_BY_LINE`` lines, which are read line by line (orjson; every value as text, typed by
    the engine), so only the lines Arrow cannot take leave its fast path. Rows are numbered by
    non-blank line, exactly, whichever path read them; a line that is not a JSON object is a
    ``columns`` failure with its number.
    """
    from pyarrow import json as pajson

    schema = pa.schema([(c.name, _JSON_TYPES[c.type]) for c in contract.columns])
    options = pajson.ParseOptions(explicit_schema=schema,
                                  unexpected_field_behavior="infer" if contract.exact_columns else "ignore")
    names = [c.name for c in contract.columns]
    row = 0  # records (non-blank lines) before the current block
    for block in _whole_lines(stream, lambda: row):
        if _NOT_SPACE.search(block):
            for batch, invalid, count in _json_piece(pajson, block, row, options, names, contract.exact_columns):
                if invalid:
                    on_invalid_rows(invalid)
                if batch is not None and batch.num_rows:
                    yield batch
                row += count


def _whole_lines(stream: Any, row: Callable[[], int]) -> Iterator[memoryview]:
    """Blocks of about ``BLOCK`` bytes ending at a line's end (the file's last line may lack its newline).

    A stream with ``readinto`` (a file, an S3 body) is read straight into one buffer that is
    reused: each block is a view of it, valid until the next one (Arrow's JSON reader copies
    what it keeps), and only a block's unfinished last line is moved. Others are read in bytes.
    """
    readinto = getattr(stream, "readinto", None)
    buf, have = bytearray(2 * BLOCK), 0
    while True:
        if len(buf) - have < BLOCK:  # a line longer than the buffer's free room: a larger buffer (never resized in place)
            if have > MAX_LINE:
                raise ReadError(f"line {row() + 1} is longer than {MAX_LINE >> 20} MiB; not a JSON Lines record")
            bigger = bytearray(2 * len(buf))
            bigger[:have] = buf[:have]
            buf = bigger
        if readinto is not None:
            target = memoryview(buf)[have:have + BLOCK]
            n = readinto(target) or 0
            target.release()
        else:
            chunk = stream.read(BLOCK)
            n = len(chunk)
            buf[have:have + n] = chunk
        have += n
        if n == 0:  # the end: what is left is the last line
            if have:
                yield memoryview(buf)[:have]
            return
        end = buf.rfind(b"\n", 0, have) + 1
        if end == 0:
            continue
        yield memoryview(buf)[:end]
        buf[:have - end] = buf[end:have]  # same size: allowed while Arrow or the caller still holds a view
        have -= end


_NOT_SPACE = re.compile(rb"\S")


def _json_piece(pajson: Any, block: bytes | memoryview, first: int, options: Any, names: list[str],
                keep_extra: bool) -> Iterator[tuple[pa.RecordBatch | None, list[int], int]]:
    """(batch, invalid row numbers, records) for a block of whole lines whose first record is number ``first + 1``."""
    try:
        reader = pajson.open_json(pa.BufferReader(pa.py_buffer(block)), read_options=pajson.ReadOptions(
            use_threads=False, block_size=len(block) + 1), parse_options=options)
        table = reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        lines = [line for line in bytes(block).split(b"\n") if line.strip()]
        if len(lines) <= _LINE_BY_LINE:
            yield _line_by_line(lines, first, names, keep_extra)
            return
        half = len(lines) // 2
        yield from _json_piece(pajson, b"\n".join(lines[:half]) + b"\n", first, options, names, keep_extra)
        yield from _json_piece(pajson, b"\n".join(lines[half:]) + b"\n", first + half, options, names, keep_extra)
        return
    batch = table.combine_chunks().to_batches()
    yield (batch[0] if batch else None), [], table.num_rows


def _line_by_line(lines: list[bytes], first: int, names: list[str], keep_extra: bool) -> tuple[pa.RecordBatch | None, list[int], int]:
    """A few lines Arrow refused, one by one: every value as text (the engine types it), bad lines reported."""
    import orjson

    cols: dict[str, list[Any]] = {n: [] for n in names}
    extra: dict[str, None] = {}
    invalid: list[int] = []
    for offset, line in enumerate(lines):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            invalid.append(first + offset + 1)
            continue
        if keep_extra:
            extra.update((k, None) for k in obj if k not in cols)
        for n in names:
            cols[n].append(_text(obj.get(n)))
    kept = len(lines) - len(invalid)
    if not kept:
        return None, invalid, len(lines)
    arrays = [pa.array(cols[n], pa.string()) for n in names] + [pa.nulls(kept, pa.string()) for _ in extra]
    return pa.RecordBatch.from_arrays(arrays, names=names + list(extra)), invalid, len(lines)


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
    seen = False
    for batch in pf.iter_batches(batch_size=65536):
        seen = True
        yield batch
    if not seen:  # no rows: the schema's columns are still checked
        yield _empty(pf.schema_arrow)
