"""Vectorised 64-bit hashes of Arrow arrays, for unique-key and duplicate-row checks in bounded memory.

Arrow's compute library has no row hash. Text of up to 64 bytes (almost every value of a
table) is hashed by :func:`text_hash` in 8-byte words: each value is padded with zero bytes
to the batch's longest value (a multiple of 8, ``ascii_rpad``, byte-wise), cast to one
fixed-size binary, and its buffer viewed as uint64 words; each word is xored with a
constant of its position and mixed (the splitmix64 finaliser), the words of a value are
summed (wrapping cumulative sum, read at each value's end) and the zero words' known
contribution subtracted, so a value's hash does not depend on the width of its batch.
Longer text falls back to :func:`string_hash`, a position-weighted polynomial over every
byte (also whole-array kernels: the data buffer viewed as bytes, each byte weighted by W**i,
a wrapping cumulative sum, each row's slice shifted back to its own start by the inverse
power). Numbers hash by their 64-bit pattern. Rows combine column hashes by multiply-and-add,
all modulo 2**64. Collisions are ~2**-64 per pair.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

_MOD = 1 << 64
_W = 0x100000001B3  # odd, so invertible modulo 2**64
_W_INV = pow(_W, -1, _MOD)
_K = 0x9E3779B97F4A7C15
_NULL = 0x5BD1E9955BD1E995
_CHUNK = 1 << 18  # bytes hashed per pass: keeps the power tables at 2 MiB each

_U64 = pa.uint64()
_powers: dict[int, tuple[pa.Array, pa.Array]] = {}


def _power_tables(n: int) -> tuple[pa.Array, pa.Array]:
    """W**i and W**-i for i in [0, n], built once per process with cumulative products."""
    size = max(n, _CHUNK) + 1
    cached = _powers.get(size)
    if cached is None:
        ones = pa.array([1], _U64)
        fwd = pa.concat_arrays([ones, pc.cumulative_prod(pa.repeat(pa.scalar(_W, _U64), size - 1))])
        inv = pa.concat_arrays([ones, pc.cumulative_prod(pa.repeat(pa.scalar(_W_INV, _U64), size - 1))])
        _powers.clear()
        _powers[size] = cached = (fwd, inv)
    return cached


def _u64(value: int) -> pa.Scalar:
    return pa.scalar(value % _MOD, _U64)


def string_hash(arr: pa.Array) -> pa.Array:
    """uint64 hash per string (nulls hash to a constant)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_binary(arr.type)):
        arr = pc.cast(arr, pa.string())
    if pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    n = len(arr)
    if n == 0:
        return pa.array([], _U64)
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, arr.buffers()[1]], offset=arr.offset).cast(pa.int64())
    first, last = offsets[0].as_py(), offsets[n].as_py()
    if last - first > _CHUNK and n > 1:  # hash in row slices of at most ~_CHUNK bytes each
        parts, start = [], 0
        step = max(1, n * _CHUNK // (last - first))
        while start < n:
            take = min(step, n - start)
            while take > 1 and offsets[start + take].as_py() - offsets[start].as_py() > _CHUNK:
                take //= 2
            parts.append(string_hash(arr.slice(start, take)))
            start += take
        return pa.concat_arrays(parts)
    lengths = pc.subtract(offsets.slice(1), offsets.slice(0, n))
    m = last - first
    if m > _CHUNK:  # one string longer than a slice: hash it in Python (rare)
        return pa.array([hash_bytes(v) for v in arr.to_pylist()], _U64)
    if m == 0:
        out = pc.cast(lengths, _U64)
    else:
        fwd, inv = _power_tables(m)
        data = pa.Array.from_buffers(pa.uint8(), m, [None, arr.buffers()[2]], offset=first)
        terms = pc.multiply(pc.add(pc.cast(data, _U64), _u64(1)), fwd.slice(1, m))
        sums = pa.concat_arrays([pa.array([0], _U64), pc.cumulative_sum(terms)])
        rel_start = pc.subtract(offsets.slice(0, n), first)
        rel_end = pc.subtract(offsets.slice(1), first)
        span = pc.subtract(pc.take(sums, rel_end), pc.take(sums, rel_start))
        out = pc.add(pc.multiply(pc.multiply(span, pc.take(inv, rel_start)), _u64(_K)), pc.cast(lengths, _U64))
    if arr.null_count:
        out = pc.if_else(pc.is_valid(arr), out, _u64(_NULL))
    return out


#: Text longer than this (in bytes) is hashed by :func:`string_hash`; shorter text by its 8-byte words.
TEXT_WORDS_MAX = 64
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64's finaliser
_POS = [(_K * (k + 1) + 0x632BE59BD9B4E019) % _MOD for k in range(TEXT_WORDS_MAX // 8)]


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * _M1) % _MOD
    x = ((x ^ (x >> 27)) * _M2) % _MOD
    return x ^ (x >> 31)


_ZERO_WORDS = [sum(_mix(p) for p in _POS[:k]) % _MOD for k in range(len(_POS) + 1)]  # k zero words' sum
_layouts: dict[int, tuple[pa.Array, pa.Array]] = {}


def _layout(n: int, words: int) -> tuple[pa.Array, pa.Array]:
    """The position constants repeated for n values of ``words`` words, and each value's last word's index.

    Built once per width for the largest batch seen, rounded up to 8,192 values (doubling, no Python
    per value), and sliced: about 2.5 MiB for 65,536 values of 32 bytes.
    """
    cached = _layouts.get(words)
    if cached is None or len(cached[1]) < n:
        capacity = -(-n // 8192) * 8192
        pattern = pa.array(_POS[:words], _U64)
        while len(pattern) < capacity * words:
            pattern = pa.concat_arrays([pattern, pattern])
        pattern = pa.concat_arrays([pattern.slice(0, capacity * words)])  # its own buffer, exactly this size
        ends = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(words, pa.int64()), capacity)), 1)
        _layouts[words] = cached = (pattern, ends)
    return cached[0].slice(0, n * words), cached[1].slice(0, n)


def text_hash(arr: pa.Array) -> pa.Array:
    """uint64 hash per string or binary value (nulls hash to a constant); equal values hash alike in any batch.

    Values of up to ``TEXT_WORDS_MAX`` bytes: the sum of their mixed, position-keyed 8-byte words
    (zero padded), then the byte length. Longer values: :func:`string_hash`. Same as :func:`hash_text_py`.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        arr = pc.cast(arr, pa.string() if pa.types.is_large_string(t) else pa.binary())
    elif not (pa.types.is_string(t) or pa.types.is_binary(t)):
        arr = pc.cast(arr, pa.string())
    n = len(arr)
    if n == 0:
        return pa.array([], _U64)
    lengths = pc.binary_length(arr)
    longest = pc.max(lengths).as_py() or 0
    width = max(8, (min(longest, TEXT_WORDS_MAX) + 7) // 8 * 8)
    words = width // 8
    text = arr if pa.types.is_string(arr.type) else arr.view(pa.string())  # ascii_rpad pads bytes, whatever they are
    padded = pc.ascii_rpad(text, width=width, padding="\x00").view(pa.binary())
    if longest > TEXT_WORDS_MAX:
        padded = pc.binary_slice(padded, 0, width)
    fixed = padded.cast(pa.binary(width))
    # a null's slot may hold anything: its hash is replaced at the end
    flat = pa.Array.from_buffers(_U64, n * words, [None, fixed.buffers()[1]], offset=fixed.offset * words)
    pattern, ends = _layout(n, words)
    x = pc.bit_wise_xor(flat, pattern)
    x = pc.multiply(pc.bit_wise_xor(x, pc.shift_right(x, _u64(30))), _u64(_M1))
    x = pc.multiply(pc.bit_wise_xor(x, pc.shift_right(x, _u64(27))), _u64(_M2))
    x = pc.bit_wise_xor(x, pc.shift_right(x, _u64(31)))
    if words > 1:
        totals = pc.take(pc.cumulative_sum(x), ends)
        x = pc.subtract(totals, pa.concat_arrays([pa.array([0], _U64), totals.slice(0, n - 1)]))
    out = pc.add(pc.multiply(pc.subtract(x, _u64(_ZERO_WORDS[words])), _u64(_K)), pc.cast(lengths, _U64))
    if longest > TEXT_WORDS_MAX:
        long = pc.greater(lengths, TEXT_WORDS_MAX).fill_null(False)
        out = pc.replace_with_mask(out, long, string_hash(pc.filter(arr, long)))
    if arr.null_count:
        out = pc.if_else(pc.is_valid(arr), out, _u64(_NULL))
    return out


def hash_text_py(value: str | bytes | None) -> int:
    """The same hash as :func:`text_hash`, for one value in Python (tests)."""
    if value is None:
        return _NULL
    data = value.encode() if isinstance(value, str) else value
    if len(data) > TEXT_WORDS_MAX:
        return hash_bytes(data)
    padded = data + b"\x00" * (-len(data) % 8)
    total = 0
    for k in range(0, max(len(padded), 8) // 8):
        word = int.from_bytes((padded[k * 8:k * 8 + 8] or b"\x00" * 8), "little")
        total = (total + _mix(word ^ _POS[k]) - _mix(_POS[k])) % _MOD
    return (total * _K + len(data)) % _MOD


def hash_bytes(value: str | bytes | None) -> int:
    """The same hash as :func:`string_hash`, for one value in Python (long strings, tests)."""
    if value is None:
        return _NULL
    data = value.encode() if isinstance(value, str) else value
    total, w = 0, 1
    for b in data:
        w = (w * _W) % _MOD
        total = (total + (b + 1) * w) % _MOD
    return (total * _K + len(data)) % _MOD


def value_hash(arr: pa.Array) -> pa.Array:
    """uint64 hash of a column: numbers and times by their bits, text by :func:`text_hash`."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_floating(t):
        arr = pc.cast(arr, pa.float64())
        arr = pc.if_else(pc.equal(arr, 0.0), pa.scalar(0.0), arr)  # -0.0 == 0.0
        bits = pc.cast(arr.fill_null(0.0).view(pa.int64()), _U64, safe=False)
    elif pa.types.is_integer(t) or pa.types.is_boolean(t):
        bits = pc.cast(pc.cast(arr, pa.int64(), safe=False).fill_null(0), _U64, safe=False)
    elif pa.types.is_temporal(t):
        # dates, times, timestamps (with or without a zone) and durations by their stored integer: Arrow has
        # no cast from date32 to int64, so view the bits at their own width first (a zone does not change them)
        width = pa.int32() if t.bit_width == 32 else pa.int64()
        bits = pc.cast(pc.cast(arr.view(width), pa.int64()).fill_null(0), _U64, safe=False)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return text_hash(arr)
    else:  # nested, decimal, dictionary, ...: hash a canonical text form (rare; row by row)
        try:
            return text_hash(pc.cast(arr, pa.string()))
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            import json

            text = [None if v is None else json.dumps(v, sort_keys=True, default=str) for v in arr.to_pylist()]
            return text_hash(pa.array(text, pa.string()))
    bits = pc.multiply(pc.add(bits, _u64(0x632BE59BD9B4E019)), _u64(_K))
    if arr.null_count:
        bits = pc.if_else(pc.is_valid(arr), bits, _u64(_NULL))
    return bits


def combine(hashes: list[pa.Array]) -> pa.Array:
    """One uint64 per row from per-column hashes (order matters)."""
    out = hashes[0]
    for h in hashes[1:]:
        out = pc.add(pc.multiply(out, _u64(_W)), h)
    return out


def repeats(hashes: pa.Array, partitions: int | None = None) -> pa.Array:
    """Positions (ascending) of the rows whose hash equals an earlier row's.

    Works one hash partition at a time (duplicates share a partition), so the extra
    memory (Arrow's hash table of the partition's values) is bounded by one partition, not
    the whole file.
    """
    return _repeats(hashes, partitions, None)[0]


def repeats_and_groups(hashes: pa.Array, limit: int) -> tuple[pa.Array, pa.Array | None]:
    """(:func:`repeats`, positions (ascending) of every row whose hash is not unique); the second
    is None when there are more than ``limit`` such rows (bounded memory)."""
    return _repeats(hashes, None, limit)


def _repeats(hashes: pa.Array, partitions: int | None, limit: int | None) -> tuple[pa.Array, pa.Array | None]:
    empty = pa.array([], pa.uint64())
    if len(hashes) < 2:
        return empty, (empty if limit is not None else None)
    if isinstance(hashes, pa.ChunkedArray):
        hashes = hashes.combine_chunks() if hashes.num_chunks == 1 else hashes
    if partitions is None:  # ~256 k hashes a partition: a few MiB of extra memory whatever the file size
        partitions = 1 << max(0, (len(hashes) - 1) // (1 << 18)).bit_length()
    width = _MOD // partitions
    found: list[pa.Array] = []
    groups: list[pa.Array] | None = [] if limit is not None else None
    grouped = 0
    for p in range(partitions):
        # a range test gives a bit mask; no per-row partition array is materialised
        lo, hi = p * width, (p + 1) * width
        if partitions == 1:
            pos, vals = None, hashes.combine_chunks() if isinstance(hashes, pa.ChunkedArray) else hashes
        else:
            mask = pc.greater_equal(hashes, _u64(lo)) if p == partitions - 1 else \
                pc.and_(pc.greater_equal(hashes, _u64(lo)), pc.less(hashes, _u64(hi)))
            pos = pc.indices_nonzero(mask)
            if len(pos) < 2:
                continue
            vals = pc.filter(hashes, mask)  # chunk by chunk: `take` on a chunked array would copy it whole first
            if isinstance(vals, pa.ChunkedArray):
                vals = vals.combine_chunks()
        # Arrow's hash table numbers distinct values in order of first appearance: a row whose
        # number is not above every earlier row's repeats an earlier row (no sort needed)
        ids = pc.dictionary_encode(vals).indices
        before = pa.concat_arrays([pa.array([-1], ids.type), pc.cumulative_max(ids).slice(0, len(ids) - 1)])
        again = pc.less_equal(ids, before)
        if not pc.any(again).as_py():
            continue
        later = pc.indices_nonzero(again)
        found.append(_chunk(later if pos is None else pc.take(pos, later)))
        if groups is not None:
            members = pc.indices_nonzero(pc.is_in(ids, value_set=pc.unique(pc.take(ids, later))))
            grouped += len(members)
            if limit is not None and grouped > limit:
                groups = None
            else:
                groups.append(_chunk(members if pos is None else pc.take(pos, members)))
    return _ascending(found), (None if groups is None else _ascending(groups))


def _chunk(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _ascending(parts: list[pa.Array]) -> pa.Array:
    if not parts:
        return pa.array([], pa.uint64())
    every = pa.concat_arrays([p.cast(pa.uint64()) for p in parts])
    return every if len(parts) == 1 else pc.take(every, pc.sort_indices(every))
