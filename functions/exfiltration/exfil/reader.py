"""Stream CloudTrail records out of a log file without loading it whole.

Accepts gzip or plain; ``{"Records": [...]}`` (CloudTrail's own files), bare JSON arrays,
and JSON lines (one record, or one ``{"Records": [...]}`` document, per line).

CloudTrail writes ``{"Records":[{"eventVersion":...},{"eventVersion":...}]}`` on one line.
For that shape the reader cuts the decompressed stream at record boundaries
(``,{"<first key>"`` cannot occur inside a JSON string, whose quotes are escaped; it can inside a record, in an
array of objects, and such a record cut at a batch edge is carried whole into the next batch) and hands
each ~64 KiB batch (:data:`BATCH`) to orjson in one call: near the cost of decompression plus parsing.
Anything else (pretty-printed, arrays) goes through ijson's C backend, JSON lines line by
line. Malformed or truncated input becomes :class:`ReadIssue` entries; every record that
can be read is still yielded.
"""

from __future__ import annotations

import gc
import io
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

import orjson

CHUNK = 1 << 20
#: Decompressed bytes per batch of records (~30 CloudTrail records). Small on purpose: a batch's parsed records
#: (about 3 x its JSON in Python objects) then stay in the CPU's L2 cache while the detector reads them and
#: while they are freed. With 1 MiB batches (~4 MB of objects) the scanner ran at 0.55 x the gzip + orjson floor
#: on high-cardinality files, with 64 KiB ones at about 0.9 x (bench/exfil.py, same run, README "Performance").
BATCH = 64 << 10
#: Default bound of decompressed bytes per file (CloudTrail's own files stay far below it).
MAX_INFLATED = 2 << 30
#: A single record larger than this is skipped (CloudTrail's records are kilobytes).
MAX_RECORD = 32 << 20
_PREFIX = b'{"Records":['


@dataclass
class ReadIssue:
    kind: str  # malformed-record | truncated | not-json | not-cloudtrail | inflate-limit | unreadable
    detail: str
    position: int | None = None


@dataclass
class ReadStats:
    records: int = 0
    batches: int = 0
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    issues: list[ReadIssue] = field(default_factory=list)

    def issue(self, kind: str, detail: str, position: int | None = None) -> None:
        if len(self.issues) < 50:  # a broken file must not turn into a memory problem
            self.issues.append(ReadIssue(kind, detail, position))


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a file's records are processed.

    Parsed records are acyclic dicts, freed by reference counting; but each batch
    survives a few young collections and is promoted, which then triggers full collections
    that scan every live object, about once per batch (measured: ~15 % of scanner time).
    Reference counting still frees everything at once; cycles, if any, are collected after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _raw_chunks(fileobj: BinaryIO, stats: ReadStats) -> Iterator[bytes]:
    while True:
        chunk = fileobj.read(CHUNK)
        if not chunk:
            return
        stats.compressed_bytes += len(chunk)
        yield chunk


def _decompressed(fileobj: BinaryIO, stats: ReadStats, limit: int) -> Iterator[bytes]:
    """Plain or gzip (multi-member too) to plain chunks of at most :data:`BATCH` bytes, at most ``limit`` bytes in all.

    A truncated gzip is an issue, not an error; so is the limit.
    """
    for chunk in _inflate(fileobj, stats):
        room = limit - stats.uncompressed_bytes
        if len(chunk) > room:
            if room > 0:
                stats.uncompressed_bytes += room
                yield chunk[:room]
            stats.issue("inflate-limit", f"the file inflates beyond {limit} bytes; the rest was not read")
            return
        stats.uncompressed_bytes += len(chunk)
        yield chunk


def _inflate(fileobj: BinaryIO, stats: ReadStats) -> Iterator[bytes]:
    raw = _raw_chunks(fileobj, stats)
    first = next(raw, b"")
    if first[:2] != b"\x1f\x8b":
        for chunk in _prepend(first, raw):  # plain: read in CHUNKs, passed on in BATCHes like inflated output
            for at in range(0, len(chunk), BATCH):
                yield chunk[at:at + BATCH]
        return
    decomp = zlib.decompressobj(wbits=31)
    pending: bytes | None = first
    while pending is not None:
        try:
            out = decomp.decompress(pending, BATCH)  # bounded output per call: a bomb cannot inflate at once
            while out:
                yield out
                out = decomp.decompress(decomp.unconsumed_tail, BATCH) if decomp.unconsumed_tail else b""
        except zlib.error as exc:
            stats.issue("truncated", f"gzip stream is corrupt ({exc})")
            return
        if decomp.eof:  # a member ended; CloudTrail files have one, concatenated files several
            rest = decomp.unused_data
            decomp = zlib.decompressobj(wbits=31)
            pending = rest if rest else next(raw, None)
            if pending is None:
                return
            continue
        pending = next(raw, None)
    stats.issue("truncated", "gzip stream ends early (file truncated)")


class _ChunkReader(io.RawIOBase):
    """A file-like view over an iterator of byte chunks (for ijson)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf = nxt
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def iter_batches(fileobj: BinaryIO, stats: ReadStats | None = None,
                 max_inflated: int = MAX_INFLATED) -> Iterator[list[Any]]:
    """Yield lists of records in file order; problems reading the file go to ``stats.issues``.

    Records are passed on as parsed, objects or not: the detector checks each one and
    counts the bad ones by index (so indexes are positions in the file's records).
    Only what is not JSON at all is reported here, by position.
    """
    stats = stats if stats is not None else ReadStats()
    chunks = _decompressed(fileobj, stats, max_inflated)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head.lstrip()) >= 64 or b"\n" in head:
            break
    start = head.lstrip()
    if not start:
        stats.issue("not-cloudtrail", "the file is empty")
        return
    rest = _prepend(head, chunks)
    if start.startswith(_PREFIX) and start[len(_PREFIX):len(_PREFIX) + 2] in (b'{"', b"]}"):
        yield from _canonical(rest, stats)
    elif start[:1] == b"{" and _first_line_is_document(head, chunks_peek=start):
        yield from _json_lines(rest, stats)
    elif start[:1] in (b"{", b"["):
        yield from _ijson(rest, stats, "Records.item" if start[:1] == b"{" else "item")
    else:
        stats.issue("not-json", "does not start like JSON (neither '{' nor '[')")  # no file bytes: findings carry no data


def _first_line(exc: BaseException) -> str:
    """The parser's words without the text it quotes (yajl's second line echoes the JSON around the error)."""
    message = exc.args[0] if exc.args else ""
    if isinstance(message, bytes):  # yajl's message is bytes: str() of it is one b'...' line, quoted file text included
        message = message.decode("utf-8", "replace")
    return (str(message).splitlines() or [type(exc).__name__])[0][:200]


def _prepend(first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from chunks


def _first_line_is_document(head: bytes, chunks_peek: bytes) -> bool:
    line = chunks_peek.split(b"\n", 1)[0].strip()
    if not line.endswith(b"}"):
        return False
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return b"\n" in chunks_peek.strip()  # one document spread over a single line is canonical, not JSON lines


def _canonical(chunks: Iterator[bytes], stats: ReadStats) -> Iterator[list[dict[str, Any]]]:
    buf = b""
    sep = b""
    skipping = False  # inside a record larger than MAX_RECORD: drop bytes up to the next separator
    for chunk in chunks:
        buf = buf + chunk if buf else chunk
        if not sep:
            body = buf.lstrip()[len(_PREFIX):]
            if body[:2] == b"]}":
                buf = body
                continue
            close = body.find(b'"', 2)
            if close < 0:
                continue
            sep = b"," + body[:close + 1]  # e.g. b',{"eventVersion"'
            buf = body
        if skipping:
            at = buf.find(sep)
            if at < 0:
                buf = buf[-len(sep):]
                continue
            buf, skipping = buf[at + 1:], False
        cut = buf.rfind(sep)
        if cut > 0:
            batch, carry = _parse_batch(buf[:cut], sep, stats, carry=True)
            if batch:
                yield batch
            # a record cut at a separator inside it (an array of objects whose first key is the records' first key)
            # goes on with the next batch, whole, instead of being reported as two broken halves
            buf = carry + buf[cut:] if carry else buf[cut + 1:]
        elif len(buf) > MAX_RECORD:
            stats.issue("malformed-record", f"record {stats.records + 1} is larger than {MAX_RECORD} bytes; skipped",
                        stats.records + 1)
            buf, skipping = buf[-len(sep):], True
    if skipping:
        return
    tail = buf.rstrip()
    if tail.endswith(b"]}"):
        tail = tail[:-2]
    elif tail:
        stats.issue("truncated", "the Records array is not closed (file truncated?)")
    if tail.strip():
        batch, _ = _parse_batch(tail, sep or b',{"eventVersion"', stats)
        if batch:
            yield batch


def _parse_batch(data: bytes, sep: bytes, stats: ReadStats, carry: bool = False) -> tuple[list[Any], bytes]:
    """The batch's records, and (``carry``) the bytes of a last record that ends beyond the batch, else b""."""
    rest = b""
    try:
        records = orjson.loads(b"[" + data + b"]")
    except orjson.JSONDecodeError:
        records, rest = _parse_pieces(data, sep, stats, carry)
    # items that are not objects are passed on: the detector counts them, by index, with every other bad record
    stats.records += len(records)
    stats.batches += 1
    return records, rest


def _parse_pieces(data: bytes, sep: bytes, stats: ReadStats, carry: bool = False) -> tuple[list[Any], bytes]:
    """Slow path for a batch that does not parse: record by record, merging pieces a nested match split. With
    ``carry``, an incomplete last record (up to 4 CHUNKs) is returned unparsed, to be completed by what follows."""
    pieces = data.split(sep)
    pieces = [pieces[0]] + [sep[1:] + p for p in pieces[1:]]
    out: list[Any] = []
    pending = b""
    for i, piece in enumerate(pieces):
        candidate = pending + (b"," if pending else b"") + piece
        try:
            out.append(orjson.loads(candidate))
            pending = b""
            continue
        except orjson.JSONDecodeError as exc:
            error = exc
        if pending and not _incomplete(error):
            # the pending record does not go on here: it was broken (reported); this piece may be a record of its own
            stats.issue("malformed-record", f"record {stats.records + len(out) + 1} is not valid JSON (ends early)",
                        stats.records + len(out) + 1)
            pending = candidate = b""
            try:
                out.append(orjson.loads(piece))
                continue
            except orjson.JSONDecodeError as exc:
                error, candidate = exc, piece
        incomplete = _incomplete(error)
        if carry and incomplete and i == len(pieces) - 1 and len(candidate) <= 4 * CHUNK:
            return out, candidate
        if not incomplete or len(candidate) > 4 * CHUNK or i == len(pieces) - 1:
            stats.issue("malformed-record", f"record {stats.records + len(out) + 1} is not valid JSON ({error})",
                        stats.records + len(out) + 1)
            pending = b""
        else:
            pending = candidate
    return out, b""


def _incomplete(exc: orjson.JSONDecodeError) -> bool:
    return "end of data" in str(exc) or "EOF" in str(exc)


def _json_lines(chunks: Iterator[bytes], stats: ReadStats) -> Iterator[list[dict[str, Any]]]:
    buf = b""
    line_no = 0
    for chunk in chunks:
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        if len(buf) > MAX_RECORD:  # one line larger than any record: skipped, not buffered
            stats.issue("malformed-record", f"line {line_no + len(lines) + 1} is larger than {MAX_RECORD} bytes; skipped",
                        line_no + len(lines) + 1)
            buf = b""
        batch = _parse_lines(lines, line_no, stats)
        line_no += len(lines)
        if batch:
            yield batch
    if buf.strip():
        batch = _parse_lines([buf], line_no, stats)
        if batch:
            yield batch


def _parse_lines(lines: list[bytes], first_line: int, stats: ReadStats) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            stats.issue("malformed-record", f"line {first_line + offset + 1} is not valid JSON ({exc})", first_line + offset + 1)
            continue
        if isinstance(doc, dict) and isinstance(doc.get("Records"), list):
            out.extend(doc["Records"])
        else:
            out.append(doc)  # not an object: counted by the detector, by index
    stats.records += len(out)
    stats.batches += 1
    return out


#: Nesting the ijson path accepts (orjson, which reads the other layouts, stops at 1,024 levels too).
MAX_DEPTH = 1024
#: Bytes of map keys along one path from the document's root (CloudTrail's own paths are a few hundred).
MAX_PATH = 64 << 10


class _TooDeep(Exception):
    pass


def _bounded(events: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """ijson's parse events, stopped at :data:`MAX_DEPTH` levels or :data:`MAX_PATH` bytes of keys on one path.

    ijson's prefixed events (what ``items`` needs) keep the prefix of every open level, so
    their memory grows as depth x path length: a 60-byte gzip of 33,000 ``[`` took 2.8 GB,
    of 169,000 all of the 8 GB a test allowed. Basic events carry no prefix; counting them
    here bounds what the prefixed stage above can hold (about MAX_DEPTH x MAX_PATH).
    """
    depth = path = 0
    keys: list[int] = []  # length of the current key of each open object
    for event in events:
        kind = event[0]
        if kind == "map_key":
            path += len(event[1]) - keys[-1]
            keys[-1] = len(event[1])
            if path > MAX_PATH:
                raise _TooDeep(f"keys longer than {MAX_PATH} bytes along one path")
        elif kind == "start_map" or kind == "start_array":
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep(f"nested deeper than {MAX_DEPTH} levels")
            if kind == "start_map":
                keys.append(0)
        elif kind == "end_map":
            depth -= 1
            path -= keys.pop()
        elif kind == "end_array":
            depth -= 1
        yield event


def _ijson(chunks: Iterator[bytes], stats: ReadStats, prefix: str) -> Iterator[list[dict[str, Any]]]:
    import ijson  # deferred: only unusual layouts need it

    batch: list[dict[str, Any]] = []
    try:
        events = ijson.parse(_bounded(ijson.basic_parse(_ChunkReader(chunks), use_float=True)))
        for item in ijson.items(events, prefix):
            batch.append(item)  # not an object: counted by the detector, by index
            if len(batch) >= 1000:
                stats.records += len(batch)
                stats.batches += 1
                yield batch
                batch = []
    except ijson.common.IncompleteJSONError as exc:
        stats.issue("truncated", f"the JSON ends early or breaks off ({_first_line(exc)}); records after this point were not read")
    except ijson.common.JSONError as exc:
        stats.issue("malformed-record", f"invalid JSON ({_first_line(exc)}); records after this point were not read")
    except _TooDeep as exc:
        stats.issue("malformed-record", f"{exc}; records after this point were not read")
    except UnicodeDecodeError as exc:  # ijson decodes as it goes: bytes that are not UTF-8 end the file, not the batch
        stats.issue("malformed-record", f"not UTF-8 text at byte {exc.start} of a chunk; records after this point were not read")
    if batch:
        stats.records += len(batch)
        stats.batches += 1
        yield batch
