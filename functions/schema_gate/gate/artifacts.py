"""Is this object a model artifact or a dataset? Judged by magic bytes and content, never only by name.

A model registry holds model binaries: pickle/joblib, ONNX, safetensors, SavedModel,
TorchScript (and PyTorch/Keras zip formats), NumPy weights up to a size, and archives of
those. A dataset is a table or an array: Parquet, Arrow/Feather, ORC, Avro, CSV and JSON
Lines text (also gzip-compressed), a pickled pandas DataFrame, a NumPy array above the
registry's ``max_array_bytes``, or an archive that holds any of these.

Pure functions over bytes the pipeline reads (the object's first bytes; for archives, the
members' names, sizes and first bytes). Nothing is unpickled or executed: a pickle is only
searched for the names of the classes it would build.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import zlib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Iterable, Literal

Kind = Literal["dataset", "model", "other"]
HEAD = 64 * 1024  # bytes of an object (or archive member) that are looked at

_DATASET_EXT = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq", ".feather", ".arrow", ".orc", ".avro", ".xlsx", ".xls")
_MODEL_EXT = (".onnx", ".safetensors", ".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".bin", ".h5", ".keras",
              ".pb", ".tflite", ".mar", ".gguf", ".msgpack")
_MODEL_NAMES = ("saved_model.pb", "saved_model.pbtxt", "variables.index", "data.pkl", "constants.pkl", "keras_metadata.pb")


@dataclass(frozen=True)
class Judgement:
    kind: Kind
    what: str  # e.g. "Parquet table", "safetensors weights", "zip archive of 3 model files"


@dataclass(frozen=True)
class Member:
    """One archive member: its name, size and first bytes (``head`` may be empty when it was not read)."""

    name: str
    size: int
    head: bytes = b""


def sniff(head: bytes, size: int, name: str, max_array_bytes: int) -> Judgement:
    """The judgement for one file from its first bytes (``head``), its size and its name (archives: see :func:`judge_archive`)."""
    if head.startswith(b"PAR1"):
        return Judgement("dataset", "Parquet table")
    if head.startswith(b"ARROW1"):
        return Judgement("dataset", "Arrow IPC / Feather table")
    if head.startswith(b"FEA1"):
        return Judgement("dataset", "Feather (v1) table")
    if head.startswith(b"\xff\xff\xff\xff") and len(head) > 8 and head[8:12] != b"\x00\x00\x00\x00":
        return Judgement("dataset", "Arrow IPC stream")
    if head.startswith(b"ORC"):
        return Judgement("dataset", "ORC table")
    if head.startswith(b"Obj\x01"):
        return Judgement("dataset", "Avro records")
    if head.startswith(b"\x93NUMPY"):
        nbytes = npy_bytes(head)
        if nbytes is None:
            return Judgement("other", "NumPy array (header unreadable)")
        if nbytes > max_array_bytes:
            return Judgement("dataset", f"NumPy array of {nbytes} bytes (above max_array_bytes {max_array_bytes})")
        return Judgement("model", f"NumPy array of {nbytes} bytes (weights)")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        if b"pandas_type" in head or b"table_type" in head:
            return Judgement("dataset", "HDF5 table (pandas)")
        if b"model_config" in head or b"keras_version" in head:
            return Judgement("model", "Keras HDF5 model")
        return Judgement("other", "HDF5 file")
    if len(head) >= 10 and head[8:10] == b'{"' and int.from_bytes(head[:8], "little") < 100 << 20:
        return Judgement("model", "safetensors weights")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return _pickle(head)
    if head[:1] == b"\x78" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):  # zlib: joblib's compressed pickles
        inner = _inflate(head, zlib.decompressobj())
        if inner[:1] == b"\x80":
            return _pickle(inner, "zlib-compressed ")
        return Judgement("other", "zlib-compressed data")
    if head[:2] == b"\x1f\x8b":
        inner = _inflate(head, zlib.decompressobj(16 + zlib.MAX_WBITS))
        if len(inner) > 262 and inner[257:262] == b"ustar":
            return Judgement("other", "gzip tar archive (members not listed)")
        text = _text_table(inner, truncated=True)
        if text:
            return Judgement("dataset", f"gzip-compressed {text}")
        if inner[:1] == b"\x80":
            return _pickle(inner, "gzip-compressed ")
        return Judgement("other", "gzip-compressed data")
    if _onnx(head, name):
        return Judgement("model", "ONNX model")
    lower = name.rsplit("/", 1)[-1].lower()
    if lower in _MODEL_NAMES or lower.startswith("variables.data-"):
        return Judgement("model", f"model file ({lower})")
    text = _text_table(head, truncated=len(head) < size)
    if text:
        return Judgement("dataset", text)
    return Judgement("other", "not a known model or dataset format")


def judge_archive(kind: str, members: list[Member], max_array_bytes: int, complete: bool = True) -> Judgement:
    """An archive is a dataset if any member is one; a model archive if its members are model files."""
    datasets, models = [], []
    for m in members:
        if m.name.endswith("/"):
            continue
        base = m.name.rsplit("/", 1)[-1].lower()
        judged = sniff(m.head, m.size, m.name, max_array_bytes) if m.head else None
        if judged is not None and judged.kind == "dataset":
            datasets.append(f"{m.name}: {judged.what}")
        elif base.endswith(_DATASET_EXT) and (judged is None or judged.kind != "model"):
            datasets.append(f"{m.name}: {base.rsplit('.', 1)[-1]} file")
        elif (judged is not None and judged.kind == "model") or base.endswith(_MODEL_EXT) or base in _MODEL_NAMES \
                or base.startswith("variables.data-") or "/data/" in f"/{m.name}" or base in ("version", "byteorder"):
            models.append(m.name)
    listed = "" if complete else " (first members only)"
    if datasets:
        return Judgement("dataset", f"{kind} archive holding data{listed}: " + "; ".join(datasets[:5])
                         + (f"; and {len(datasets) - 5} more" if len(datasets) > 5 else ""))
    if models:
        return Judgement("model", f"{kind} archive of {len(models)} model file(s){listed}")
    return Judgement("other", f"{kind} archive of {len(members)} member(s), none a known model or dataset format{listed}")


def allowed(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(key, p) for p in patterns)


def npy_bytes(head: bytes) -> int | None:
    """The data size of a ``.npy`` array from its header (shape x item size), or None if the header is unreadable."""
    try:
        major = head[6]
        if major == 1:
            length, start = int.from_bytes(head[8:10], "little"), 10
        else:
            length, start = int.from_bytes(head[8:12], "little"), 12
        header = ast.literal_eval(head[start:start + length].decode("latin-1"))
        count = 1
        for dim in header["shape"]:
            count *= int(dim)
        descr = header["descr"]
        itemsize = int("".join(ch for ch in str(descr) if ch.isdigit()) or 8) if isinstance(descr, str) else 8
        return count * itemsize
    except (ValueError, SyntaxError, KeyError, IndexError, TypeError):
        return None


def _pickle(head: bytes, how: str = "") -> Judgement:
    """A pickle builds what its GLOBAL opcodes name: a DataFrame or a table is data, anything else a model."""
    if b"pandas.core.frame" in head or b"pandas.core.series" in head or (b"pandas" in head and b"DataFrame" in head):
        return Judgement("dataset", f"{how}pickled pandas DataFrame")
    if b"pyarrow" in head and b"Table" in head:
        return Judgement("dataset", f"{how}pickled Arrow table")
    return Judgement("model", f"{how}pickle (joblib / pickle model)")


def _inflate(data: bytes, decoder: zlib._Decompress) -> bytes:
    try:
        return decoder.decompress(data, HEAD)
    except zlib.error:
        return b""


def _onnx(head: bytes, name: str) -> bool:
    """ONNX is protobuf: field 1 (ir_version, a varint) first, and the model names its producer or ``onnx`` opsets."""
    return head[:1] == b"\x08" and (name.lower().endswith(".onnx") or b"onnx" in head[:4096].lower() or b"pytorch" in head[:512])


def _text_table(head: bytes, truncated: bool) -> str | None:
    """``CSV table (N columns)`` or ``JSON Lines records`` for text that is one, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not truncated or exc.start < len(head) - 4:
            return None
        text = head[: exc.start].decode("utf-8")
    lines = text.splitlines()
    if truncated and lines:
        lines = lines[:-1]  # the last line may be cut
    lines = [line for line in lines[:200] if line.strip()]
    if len(lines) < 2:
        return None
    objects = 0
    for line in lines:
        try:
            objects += isinstance(json.loads(line), dict)
        except ValueError:
            break
    if objects == len(lines):
        return "JSON Lines records"
    for delimiter in (",", "\t", ";", "|"):
        try:
            counts = {len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)}
        except csv.Error:
            continue
        if len(counts) == 1 and counts.pop() >= 2:
            return f"{'CSV' if delimiter == ',' else 'delimited'} table"
    return None
