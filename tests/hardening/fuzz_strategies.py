"""Hypothesis strategies for malformed events: the real samples in events/ mutated, and junk from scratch.

Every strategy here builds what an attacker or a broken producer can put where a function reads:
an SQS record's body (text), a direct invocation's event (the JSON value Lambda parsed), a
CloudTrail log file's bytes (gzip or plain). Mutations: keys dropped, values of the wrong type,
huge strings, unicode (lone surrogates, NUL, right-to-left marks), nested junk, deep nesting,
truncated JSON, non-UTF-8 bytes, bad gzip.

How many examples: the ``stagewarden-fuzz`` settings profile, ``STAGEWARDEN_FUZZ_EXAMPLES`` per
property (150 by default); ``make fuzz`` runs 10,000.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

#: examples per malformed-event property: 150 by default (300-460 per function), 10,000 in the dedicated run (make fuzz)
EXAMPLES = int(os.environ.get("STAGEWARDEN_FUZZ_EXAMPLES", "150"))
settings.register_profile(
    "stagewarden-fuzz", max_examples=EXAMPLES, deadline=None, database=None,
    derandomize=os.environ.get("STAGEWARDEN_EXPLORE") != "1",  # the default suite draws the same examples (conftest)
    # the harness is class-scoped (one deployed function per class); the per-test autouse env fixture is harmless
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.filter_too_much],
)
FUZZ = settings.get_profile("stagewarden-fuzz")
#: the batch-isolation properties run valid records too (each does real work): a tenth as many examples
BATCH = settings(FUZZ, max_examples=max(20, EXAMPLES // 10))


def sample(path: str) -> Any:
    """A sample event file from events/ (the ones users invoke with)."""
    return json.loads((EVENTS / path).read_text())


def sqs_body(path: str) -> Any:
    """The EventBridge event or finding inside a sample SQS event's first record, parsed."""
    return json.loads(sample(path)["Records"][0]["body"])


# ---------------------------------------------------------------- junk values
#: text with what breaks naive code: lone surrogates, NUL, control and bidi characters, astral planes
UNICODE = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\ud800", "\udfff", "a\x00b", "\u202egnp.exe", "\ufeff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "../../etc/passwd", "%s%n", "' OR 1=1 --", ""])
HUGE = st.builds(lambda n, c: c * n, st.integers(10_000, 400_000), st.sampled_from(["A", "é", "\u4e00", "{", "\\", "\""]))
NUMBERS = st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0, -1, 10**30])
SCALARS = st.none() | st.booleans() | NUMBERS | UNICODE
NESTED = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(UNICODE, inner, max_size=4),
                      max_leaves=20)


def nest(depth: int, kind: str) -> Any:
    """A value nested ``depth`` levels (lists or objects): what a recursive reader chokes on."""
    value: Any = "x"
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


#: deep nesting a Lambda runtime can still deliver as a parsed event (Python's json stops near 1,000 levels)
DEEP = st.builds(nest, st.integers(50, 900), st.sampled_from(["list", "dict"]))
JUNK = SCALARS | NESTED | HUGE | DEEP


# ---------------------------------------------------------------- structural mutations of a JSON value
def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def _set(root: Any, path: tuple, value: Any, drop: bool = False) -> Any:
    if not path:
        return value
    parent = root
    for p in path[:-1]:
        parent = parent[p]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return root


def _retyped(value: Any) -> list[Any]:
    """The same content in the wrong type: "1" for 1, [x] for x, {"x": ...} for a list, text for an object."""
    out: list[Any] = [None, [value] if not isinstance(value, list) else {"0": value}]
    if isinstance(value, str):
        out += [len(value), value.encode("utf-8", "surrogatepass").hex(), {"S": value}]
    elif isinstance(value, (dict, list)):
        out += [json.dumps(value), len(value)]
    elif isinstance(value, (int, float)):
        out += [str(value)]
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any, max_mutations: int = 3) -> Any:
    """``base`` with 1..max_mutations structural changes, each at a drawn place in it."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(_paths(value)))
        op = draw(st.sampled_from(["drop", "junk", "retype", "extra"] if path else ["junk", "retype"]))
        if op == "drop":
            value = _set(value, path, None, drop=True)
        elif op == "junk":
            value = _set(value, path, draw(JUNK))
        elif op == "retype":
            current = value
            for p in path:
                current = current[p]
            value = _set(value, path, draw(st.sampled_from(_retyped(current))))
        else:  # an unexpected key or element beside the expected ones
            parent = value
            for p in path[:-1]:
                parent = parent[p]
            if isinstance(parent, dict):
                parent[draw(UNICODE)] = draw(JUNK)
            elif isinstance(parent, list):
                parent.append(draw(JUNK))
    return value


def dumps(value: Any) -> str:
    """JSON text as a producer would send it (lone surrogates escaped, NaN as the JS tokens)."""
    return json.dumps(value)


@st.composite
def broken_text(draw: st.DrawFn, base: Any) -> str:
    """The sample's JSON text broken below the structure: truncated, bytes spliced in, deep brackets, not JSON."""
    text = dumps(base)
    kind = draw(st.sampled_from(["truncated", "spliced", "deep", "garbage", "empty", "scalar", "latin1"]))
    if kind == "truncated":
        return text[:draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "spliced":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(UNICODE | st.binary(min_size=1, max_size=20).map(lambda b: b.decode("latin-1"))) + text[at:]
    if kind == "deep":  # far deeper than any parser's recursion limit
        n = draw(st.integers(1_000, 200_000))
        return draw(st.sampled_from(["[", '{"a":'])) * n
    if kind == "garbage":
        return draw(st.text(max_size=200))
    if kind == "empty":
        return draw(st.sampled_from(["", " ", "\n", "null", "{}", "[]"]))
    if kind == "scalar":
        return dumps(draw(SCALARS))
    # the UTF-8 bytes read as Latin-1: mojibake that is still text
    return text.encode("utf-8").decode("latin-1")


def malformed_body(base: Any) -> st.SearchStrategy[str]:
    """An SQS record body: the sample mutated (then serialised), broken as text, or junk from scratch."""
    return st.one_of(mutated(base).map(dumps), broken_text(base), JUNK.map(dumps))


def scratch_eventbridge(detail_types: list[str]) -> st.SearchStrategy[dict]:
    """EventBridge-shaped junk from scratch: an accepted detail-type (or not) over a junk detail."""
    return st.fixed_dictionaries(
        {"detail-type": st.sampled_from(detail_types) | UNICODE},
        optional={"version": SCALARS, "id": SCALARS, "source": SCALARS, "account": SCALARS, "time": SCALARS,
                  "region": SCALARS, "resources": NESTED, "detail": NESTED | st.dictionaries(UNICODE, NESTED, max_size=6)})


def malformed_event(base: Any, detail_types: list[str]) -> st.SearchStrategy[Any]:
    """A direct invocation's event (already parsed by the Lambda runtime): mutated sample or junk from scratch."""
    return st.one_of(mutated(base), mutated(base), scratch_eventbridge(detail_types), JUNK)


# ---------------------------------------------------------------- CloudTrail log files (S3 objects)
def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@st.composite
def malformed_log_file(draw: st.DrawFn, records_of: st.SearchStrategy[list[dict]]) -> tuple[bytes, int, int]:
    """(bytes of a CloudTrail log file, index of the one broken record or -1, records): one record mutated among
    valid ones, or the whole file broken (bad gzip, truncated, not UTF-8, not JSON, not CloudTrail)."""
    records = draw(records_of)
    file, at = draw(_log_file(records))
    return file, at, len(records)


@st.composite
def _log_file(draw: st.DrawFn, records: list[dict]) -> tuple[bytes, int]:
    kind = draw(st.sampled_from(["record", "record", "bad-gzip", "truncated-gzip", "not-utf8", "text", "shape"]))
    if kind == "record":
        at = draw(st.integers(0, len(records) - 1))
        broken = draw(st.one_of(mutated(records[at]), JUNK.filter(lambda v: not isinstance(v, dict))))
        body = {"Records": records[:at] + [broken] + records[at + 1:]}
        return gzipped(dumps(body).encode("utf-8", "surrogatepass")), at
    good = gzipped(dumps({"Records": records}).encode())
    if kind == "bad-gzip":
        raw = bytearray(good)
        for _ in range(draw(st.integers(1, 8))):
            raw[draw(st.integers(2, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw), -1
    if kind == "truncated-gzip":
        return good[:draw(st.integers(0, len(good) - 1))], -1
    if kind == "not-utf8":
        text = dumps({"Records": records}).encode()
        at = draw(st.integers(0, len(text)))
        return gzipped(text[:at] + draw(st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x80\x80\x80"])) + text[at:]), -1
    if kind == "text":
        return gzipped(draw(broken_text({"Records": records})).encode("utf-8", "surrogatepass")), -1
    return gzipped(dumps(draw(mutated({"Records": records}))).encode("utf-8", "surrogatepass")), -1
