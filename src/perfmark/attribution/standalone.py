"""Read paths in ChannelAttribution's input format (CSV or Parquet) into a `PathTable`.

The format has one row per distinct path: `path` ("a > b > c"), `total_conversions`,
`total_conversion_value` and `total_null`; column names and the separator are configurable.
Paths are split by a numpy scan of the UTF-8 bytes (pyarrow's split kernel for separators of
more than one byte) and the tokens looked up by pyarrow among the distinct tokens of a sample,
so millions of rows never become Python strings one by one; large inputs are split in row
ranges on parallel threads.
As in ChannelAttribution, whitespace around the separator and around channel names is
ignored ("a>b" and "a > b" are the same path).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from numpy.typing import ArrayLike, NDArray

from perfmark.attribution.domain.paths import PathTable
from perfmark.errors import ValidationError

__all__ = [
    "DEFAULT_SEPARATOR",
    "PathColumns",
    "paths_from_arrow",
    "paths_from_strings",
    "read_paths",
]

DEFAULT_SEPARATOR = " > "
# Characters that separate channels in other tools' exports; seeing one while the configured
# separator never occurs means the separator is wrong, not that channels have odd names.
_OTHER_SEPARATORS = (">", "|", ";", ",", "→", "»", "\t", "/")
_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# Inputs are split on parallel threads in row ranges of at least this many bytes of paths,
# into at most this many ranges. A part of 1 MiB takes about 2.5 ms on one core; the calling
# thread encodes one part itself and the others go to a pool kept between calls, so a split
# costs no thread start-up. Measured on 2 quiet cores: 2.4 MB of paths in two parts took
# 6.4-6.7 ms against 7.7-8.7 ms in one; on a machine busy with other jobs the two were even
# (the slower thread is waited for). Smaller parts were not measured quiet.
_PART_MIN_BYTES = 1 << 20
_MAX_PARTS = 8
# Bytes of paths scanned per block when looking for separators (bounds the scan's memory;
# one block, the common case, needs no copy to join the blocks' marks).
_SCAN_BLOCK_BYTES = 32 << 20
# Share of marked bytes above which numpy's nonzero takes its branch-free loop (0.1 in numpy
# 1.x and 2.x), with a margin.
_DENSE_MARK_SHARE = 0.11
# Tokens are looked up among the distinct tokens of a sample: this many leading tokens of a
# part, and runs spread over the rest (below). A part whose leading tokens are more than one
# in this many distinct is dictionary-encoded whole instead.
_VOCAB_SAMPLE_TOKENS = 1 << 11
_VOCAB_SAMPLE_MAX_SHARE = 4
# The rest of a part is sampled in this many runs of this many consecutive tokens.
_VOCAB_SAMPLE_RUNS = 16
_VOCAB_RUN_TOKENS = 128


@dataclass(frozen=True)
class PathColumns:
    """Column names of the input; value and nulls may be None (absent: taken as zeros).

    A value or nulls column left at its default name is optional: when the file has no such
    column it counts as zeros. A name you set explicitly must exist.
    """

    path: str = "path"
    conversions: str = "total_conversions"
    value: str | None = "total_conversion_value"
    nulls: str | None = "total_null"


_DEFAULTS = PathColumns()


def _column_names(table: pa.Table) -> list[str]:
    names: list[str] = list(table.column_names)
    return names


def _missing(name: str, table: pa.Table) -> ValidationError:
    return ValidationError(
        f"column {name!r} is missing; the input has columns {_column_names(table)!r}. "
        "Rename the column or pass its name in PathColumns",
        field=name,
    )


def _numeric_column(table: pa.Table, name: str, what: str) -> NDArray[np.float64]:
    """A column as float64, every value present, finite and >= 0; errors name row and value."""
    column = table.column(name).combine_chunks()
    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise ValidationError(
            f"column {name!r} has no value at row {row + 1}; give {what} for every path "
            "(0 when there are none)",
            field=name,
        )
    try:
        values = column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for row, item in enumerate(column.to_pylist()):
            try:
                float(item)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"column {name!r} at row {row + 1} is {item!r}, not a number; give {what} "
                    "as a number >= 0",
                    field=name,
                ) from None
        raise ValidationError(
            f"column {name!r} of type {column.type} is not numeric", field=name
        ) from None
    array = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"column {name!r} at row {row + 1} is {float(array[row])!r}; {what} must be a finite "
            "number >= 0",
            field=name,
        )
    return array


def _optional_column(
    table: pa.Table, name: str | None, default: str | None, what: str
) -> NDArray[np.float64]:
    if name is None or (name not in _column_names(table) and name == default):
        return np.zeros(table.num_rows, dtype=np.float64)
    if name not in _column_names(table):
        raise _missing(name, table)
    return _numeric_column(table, name, what)


def _check_separator(sep: str) -> str:
    if not isinstance(sep, str) or not sep:
        raise ValidationError(
            f"sep is {sep!r}; give the non-empty string between channels, e.g. ' > '",
            field="sep",
        )
    core = sep.strip()
    return core if core else sep


def _string_buffers(paths: pa.Array) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Zero-copy views of a string array's offsets (int64) and UTF-8 bytes."""
    width = np.int64 if pa.types.is_large_string(paths.type) else np.int32
    _, offsets_buffer, data_buffer = paths.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=width)[
        paths.offset : paths.offset + len(paths) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return offsets.astype(np.int64), data


def _token_starts_any(
    offsets: NDArray[np.int64], data: NDArray[np.uint8], separator: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Token starts (with the end appended) and tokens per path, for any input.

    Handles blank paths and paths that end with the separator (their empty last token
    starts where the next path does), which `_token_starts` leaves to this function.
    """
    begin, end = int(offsets[0]), int(offsets[-1])
    n_paths = offsets.size - 1
    cuts = np.flatnonzero(data[begin:end] == separator)
    cuts += begin + 1
    # A cut c (just past a separator) belongs to the path p with offsets[p] < c <= offsets[p+1].
    cuts_through = np.searchsorted(cuts, offsets, side="right")
    counts = np.diff(cuts_through) + 1
    # Token starts in order: each path's own start, then its cuts. A path's first token sits
    # after the cuts of the paths before it; every other slot takes the next cut.
    first_token = np.arange(n_paths, dtype=np.int64) + cuts_through[:-1]
    n_tokens = n_paths + cuts.size
    token_offsets = np.empty(n_tokens + 1, dtype=np.int64)
    is_cut = np.ones(n_tokens + 1, dtype=bool)
    is_cut[first_token] = False
    is_cut[n_tokens] = False
    token_offsets[first_token] = offsets[:-1]
    token_offsets[is_cut] = cuts
    token_offsets[n_tokens] = end
    return token_offsets, counts


def _token_starts(
    offsets: NDArray[np.int64], data: NDArray[np.uint8], separator: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Token starts (with the end appended) and tokens per path, in one pass over the bytes.

    A byte starts a token when it starts a path or follows a separator. When no path is blank
    and none ends with the separator, the two never coincide (`_token_starts_any` handles the
    inputs where they do).
    """
    begin, end = int(offsets[0]), int(offsets[-1])
    path_starts = offsets[:-1]
    path_ends = offsets[1:]
    if (path_ends <= path_starts).any() or (data[path_ends - 1] == separator).any():
        return _token_starts_any(offsets, data, separator)
    # Scan the bytes in blocks (a bounded mask): mark the bytes that follow a separator and
    # the path starts, and collect the marked positions. numpy collects the marks of a mask
    # with a branch-free loop only when more than a tenth of it is marked; sparser masks
    # (channel names of ten bytes or more) take a memchr loop that costs about half as much
    # again here. A tail of marks past the block lifts the share, and is cut off.
    block_size = min(_SCAN_BLOCK_BYTES, end - begin)
    most_tail = math.ceil(_DENSE_MARK_SHARE * block_size / (1 - _DENSE_MARK_SHARE)) + 2
    block = np.empty(block_size + most_tail, dtype=bool)
    bounds = [*range(begin, end, _SCAN_BLOCK_BYTES), end]
    rows = np.searchsorted(path_starts, bounds).tolist()
    pieces: list[NDArray[np.int64]] = []
    for a, b, first_row, last_row in zip(bounds[:-1], bounds[1:], rows[:-1], rows[1:], strict=True):
        marked = block[: b - a]
        if a == 0:
            marked[0] = False
            np.equal(data[: b - 1], separator, out=marked[1:])
        else:
            np.equal(data[a - 1 : b - 1], separator, out=marked)
        marked[path_starts[first_row:last_row] - a] = True
        n_marks = int(np.count_nonzero(marked))
        tail = max(1, math.ceil((_DENSE_MARK_SHARE * (b - a) - n_marks) / (1 - _DENSE_MARK_SHARE)))
        block[b - a : b - a + tail] = True
        # The tail's first mark stands for the block's end: kept after the last block only.
        found = np.flatnonzero(block[: b - a + tail])[: n_marks + (b == end)]
        if a:
            found += a
        pieces.append(found)
    token_offsets = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    # A token that follows a separator byte is a cut inside its path; any other starts one.
    is_first = data[token_offsets[:-1] - 1] != separator
    is_first[0] = True  # the byte before the first path is not part of the input
    counts = np.diff(np.flatnonzero(is_first), append=token_offsets.size - 1)
    return token_offsets, counts


def _raw_tokens_by_bytes(paths: pa.Array, separator: int) -> tuple[pa.Array, NDArray[np.int64]]:
    """Cut paths at a one-byte separator without copying: each raw token keeps the separator
    that ends it, so the tokens tile the string buffer and share it.

    UTF-8 never uses an ASCII byte inside a multi-byte character, so a byte match is exact.
    """
    offsets, data = _string_buffers(paths)
    token_offsets, counts = _token_starts(offsets, data, separator)
    tokens = pa.LargeStringArray.from_buffers(
        token_offsets.size - 1, pa.py_buffer(token_offsets), paths.buffers()[2] or pa.py_buffer(b"")
    )
    return tokens, counts


def _raw_tokens_by_kernel(paths: pa.Array, core: str) -> tuple[pa.Array, NDArray[np.int64]]:
    """Split with pyarrow's kernel (separators of more than one byte)."""
    lists = pc.split_pattern(paths, pattern=core)
    counts = np.asarray(pc.list_value_length(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
    return pc.list_flatten(lists), counts


def _cpu_count() -> int:
    """CPUs this process may run on (the parallel parts of a large input)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _row_parts(paths: pa.Array) -> list[pa.Array]:
    """Consecutive slices of about `_PART_MIN_BYTES` or more, at most one per CPU."""
    offsets, _ = _string_buffers(paths)
    size = int(offsets[-1] - offsets[0])
    n_parts = max(1, min(_cpu_count(), _MAX_PARTS, size // _PART_MIN_BYTES, len(paths)))
    if n_parts == 1:
        return [paths]
    targets = offsets[0] + size * np.arange(1, n_parts) // n_parts
    bounds = [0, *np.searchsorted(offsets, targets).tolist(), len(paths)]
    return [paths.slice(a, b - a) for a, b in itertools.pairwise(bounds) if b > a]


@dataclass(frozen=True)
class _EncodedPart:
    """The raw tokens of a row range: the distinct ones, each token's index among them, and
    tokens per path.

    The first `n_ordered` distinct tokens are in first-seen order and all occur before any of
    the others, whose order is not kept. `codes` is undefined at the positions `missed`,
    whose codes are `missed_codes`.
    """

    raw_names: list[str]
    n_ordered: int
    codes: NDArray[np.int32]
    counts: NDArray[np.int64]
    missed: NDArray[np.int64]
    missed_codes: NDArray[np.int32]

    def code_array(self) -> NDArray[np.int32]:
        """Every token's code (a copy when some were missed)."""
        if not self.missed.size:
            return self.codes
        codes = self.codes.copy()
        codes[self.missed] = self.missed_codes
        return codes


def _encode_part(paths: pa.Array, core: str) -> _EncodedPart:
    """Cut some paths into raw tokens and number the distinct tokens."""
    encoded_core = core.encode("utf-8")
    if len(encoded_core) == 1:
        tokens, counts = _raw_tokens_by_bytes(paths, encoded_core[0])
    else:
        tokens, counts = _raw_tokens_by_kernel(paths, core)
    return _token_codes(tokens, counts)


class _PartPool:
    """Threads that encode the parts of a large input, started once and kept between calls.

    A forked child inherits the pool without its threads, so it starts its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._forget)

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=_MAX_PARTS - 1, thread_name_prefix="perfmark-paths"
                )
            return self._executor

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._executor = None


_PART_POOL = _PartPool()


def _encode_parts(parts: list[pa.Array], core: str) -> list[_EncodedPart]:
    """Encode the parts in parallel: the first in this thread, the rest on the pool."""
    if len(parts) == 1:
        return [_encode_part(parts[0], core)]
    pool = _PART_POOL.executor()
    others = [pool.submit(_encode_part, part, core) for part in parts[1:]]
    try:
        first = _encode_part(parts[0], core)
    finally:
        wait(others)  # every part has ended when the call returns, or raises
    return [first, *(future.result() for future in others)]


def _int32_values(array: pa.Array) -> NDArray[np.int32]:
    """The values of an int32 array as a zero-copy numpy view (entries under nulls undefined).

    `to_numpy` copies an array that has a validity bitmap even when no entry is null, as
    `index_in`'s result has.
    """
    values: NDArray[np.int32] = np.frombuffer(array.buffers()[1], dtype=np.int32)[
        array.offset : array.offset + len(array)
    ]
    return values


def _null_positions(array: pa.Array) -> NDArray[np.int64]:
    """Positions of the nulls in an array with few of them, from its validity bitmap."""
    start = array.offset
    bitmap = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    # Only bytes of the bitmap with a clear bit are unpacked (LSB first, as Arrow stores it).
    partial = np.flatnonzero(bitmap != 0xFF)
    bits = np.unpackbits(bitmap[partial], bitorder="little").reshape(-1, 8)
    rows, columns = np.nonzero(bits == 0)
    positions: NDArray[np.int64] = partial[rows].astype(np.int64) * 8 + columns - start
    inside: NDArray[np.int64] = positions[(positions >= 0) & (positions < len(array))]
    return inside


def _token_codes(tokens: pa.Array, counts: NDArray[np.int64]) -> _EncodedPart:
    """Number the distinct raw tokens (see `_EncodedPart`).

    A channel set is small, so the distinct tokens of a sample (the leading tokens and tokens
    spread over the rest) nearly always hold them all, and looking every token up in that set
    (`index_in`) costs about a third less than building the set while encoding
    (`dictionary_encode`). The leading sample's tokens come first, in first-seen order; the
    order of the others (those only in the spread sample, then any the sample missed, encoded
    on their own) is recovered only when it decides the order of channels (`_split_paths`).
    Inputs with many distinct tokens are dictionary-encoded directly.
    """
    no_positions = np.zeros(0, dtype=np.int64)
    leading = tokens.slice(0, _VOCAB_SAMPLE_TOKENS)
    ordered = pc.unique(leading)
    if len(ordered) * _VOCAB_SAMPLE_MAX_SHARE > len(leading):
        encoded = pc.dictionary_encode(tokens)
        names: list[str] = encoded.dictionary.to_pylist()
        codes = _int32_values(encoded.indices.cast(pa.int32()))
        return _EncodedPart(
            names, len(names), codes, counts, no_positions, np.zeros(0, dtype=np.int32)
        )
    vocabulary = ordered
    if len(tokens) > len(leading):
        # Runs of tokens spread over the rest (slices, so nothing is copied but the runs).
        starts = np.linspace(len(leading), len(tokens), _VOCAB_SAMPLE_RUNS, endpoint=False)
        runs = [tokens.slice(int(start), _VOCAB_RUN_TOKENS) for start in starts]
        # Unique keeps first-seen order, so the leading sample's tokens stay first.
        vocabulary = pc.unique(pa.concat_arrays([ordered, *runs]))
    raw_names: list[str] = vocabulary.to_pylist()
    found = pc.index_in(tokens, value_set=vocabulary)
    codes = _int32_values(found)
    if not found.null_count:
        return _EncodedPart(
            raw_names, len(ordered), codes, counts, no_positions, np.zeros(0, dtype=np.int32)
        )
    missed = _null_positions(found)
    extra = pc.dictionary_encode(tokens.take(pa.array(missed)))
    missed_codes = len(raw_names) + _int32_values(extra.indices.cast(pa.int32()))
    raw_names.extend(extra.dictionary.to_pylist())
    return _EncodedPart(raw_names, len(ordered), codes, counts, missed, missed_codes)


def _first_seen_order(
    part: _EncodedPart, channels: list[str], earlier: Collection[str]
) -> list[int]:
    """A part's raw token codes in an order that gives their `channels` first-seen order.

    Codes past `n_ordered` are put in first-seen order only when one of them brings a channel
    that neither the `earlier` parts nor the ordered codes have (the order then matters).
    """
    ordered = list(range(part.n_ordered))
    rest = range(part.n_ordered, len(part.raw_names))
    known = set(earlier).union(channels[: part.n_ordered])
    if all(channels[code] in known for code in rest):
        return [*ordered, *rest]
    codes = part.code_array()
    later = codes[codes >= part.n_ordered]
    seen: list[int] = pc.unique(pa.array(later)).to_pylist()
    return [*ordered, *seen, *sorted(set(rest) - set(seen))]


def _clean_channel(raw: str, core: str) -> str:
    """A raw token without the separator that ends it and surrounding whitespace."""
    return (raw[: -len(core)] if raw.endswith(core) else raw).strip()


def _split_paths(
    paths: pa.Array, name: str, sep: str
) -> tuple[tuple[str, ...], NDArray[np.int32], NDArray[np.int64]]:
    """Split path strings into channel indices (channels in first-seen order) and row offsets.

    Only the distinct raw tokens (a few per channel) are cleaned in Python: the separator
    that ends a token and surrounding whitespace are stripped after encoding.
    Inputs are cut into consecutive row ranges encoded on parallel threads (numpy and
    pyarrow release the GIL); channels keep their first-seen order across the ranges.
    """
    core = _check_separator(sep)
    if paths.null_count:
        row = int(pc.index(pc.is_null(paths), True).as_py())
        raise ValidationError(
            f"column {name!r} has no path at row {row + 1}; every row needs a path", field=name
        )
    encoded = _encode_parts(_row_parts(paths), core)
    counts = np.concatenate([part.counts for part in encoded])
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    channels = np.empty(int(offsets[-1]), dtype=np.int32)
    index: dict[str, int] = {}
    first_row = 0
    for part in encoded:
        first_touch = int(offsets[first_row])
        cleaned = [_clean_channel(raw, core) for raw in part.raw_names]
        if not all(cleaned):
            empty = [code for code, channel in enumerate(cleaned) if not channel]
            first = first_touch + int(np.flatnonzero(np.isin(part.code_array(), empty))[0])
            row = int(np.searchsorted(offsets, first, side="right")) - 1
            raise ValidationError(
                f"{name} at row {row + 1} is {paths[row].as_py()!r}: it has an empty "
                f"channel (a blank path, or a separator {sep!r} with nothing on one side)",
                field=name,
            )
        remap = np.zeros(len(cleaned), dtype=np.int32)
        for code in _first_seen_order(part, cleaned, index):
            remap[code] = index.setdefault(cleaned[code], len(index))
        part_channels = channels[first_touch : first_touch + part.codes.size]
        np.take(remap, part.codes, out=part_channels, mode="clip")
        part_channels[part.missed] = remap[part.missed_codes]
        first_row += part.counts.size
    if int(counts.max()) == 1:
        _reject_foreign_separator(paths, name, sep, core)
    return tuple(index), channels, offsets


def _reject_foreign_separator(paths: pa.Array, name: str, sep: str, core: str) -> None:
    """No row contains the separator: fail if the paths use some other separator instead."""
    trimmed = pc.utf8_trim_whitespace(paths)
    for candidate in _OTHER_SEPARATORS:
        if candidate in core:
            continue
        found = pc.match_substring(trimmed, candidate)
        if pc.any(found).as_py():
            row = int(pc.index(found, True).as_py())
            raise ValidationError(
                f"no {name} contains the separator {sep!r}, but row {row + 1} "
                f"{paths[row].as_py()!r} contains {candidate!r}; pass sep={candidate!r} "
                "(or the separator your paths use)",
                field="sep",
            )


def paths_from_arrow(
    table: pa.Table, *, columns: PathColumns = _DEFAULTS, sep: str = DEFAULT_SEPARATOR
) -> PathTable:
    """Build a `PathTable` from an Arrow table in ChannelAttribution's format."""
    if columns.path not in _column_names(table):
        raise _missing(columns.path, table)
    if columns.conversions not in _column_names(table):
        raise _missing(columns.conversions, table)
    if table.num_rows == 0:
        raise ValidationError(
            "the input has no rows; give at least one path with its conversions",
            field=columns.path,
        )
    column = table.column(columns.path)
    raw_paths = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if pa.types.is_dictionary(raw_paths.type):
        raw_paths = raw_paths.cast(pa.string())
    if not (pa.types.is_string(raw_paths.type) or pa.types.is_large_string(raw_paths.type)):
        raise ValidationError(
            f"column {columns.path!r} has type {raw_paths.type}; paths must be text like 'a{sep}b'",
            field=columns.path,
        )
    conversions = _numeric_column(table, columns.conversions, "conversions")
    value = _optional_column(table, columns.value, _DEFAULTS.value, "a conversion value")
    nulls = _optional_column(
        table, columns.nulls, _DEFAULTS.nulls, "a count of journeys that did not convert"
    )
    names, channels, offsets = _split_paths(raw_paths, columns.path, sep)
    return PathTable(
        channel_names=names,
        channels=channels,
        offsets=offsets,
        conversions=conversions,
        value=value,
        nulls=nulls,
    )


def paths_from_strings(
    paths: Sequence[str],
    conversions: ArrayLike,
    value: ArrayLike | None = None,
    nulls: ArrayLike | None = None,
    *,
    sep: str = DEFAULT_SEPARATOR,
) -> PathTable:
    """Build a `PathTable` from path strings and per-path numbers held in memory."""
    data = {
        "path": pa.array(list(paths), type=pa.string()),
        "total_conversions": pa.array(np.asarray(conversions, dtype=np.float64)),
    }
    if value is not None:
        data["total_conversion_value"] = pa.array(np.asarray(value, dtype=np.float64))
    if nulls is not None:
        data["total_null"] = pa.array(np.asarray(nulls, dtype=np.float64))
    return paths_from_arrow(pa.table(data), sep=sep)


def _read_table(
    source: Path, file_format: str | None, columns: PathColumns, delimiter: str
) -> pa.Table:
    kind = file_format
    if kind is None:
        suffix = source.suffix.lower()
        kind = (
            "csv" if suffix in _CSV_SUFFIXES else "parquet" if suffix in _PARQUET_SUFFIXES else None
        )
    if kind not in ("csv", "parquet"):
        raise ValidationError(
            f"cannot tell the format of {str(source)!r}; name it .csv or .parquet, or pass "
            "file_format='csv' or 'parquet'",
            field="file_format",
        )
    if not source.is_file():
        raise ValidationError(f"no such file: {str(source)!r}", field="source")
    try:
        if kind == "parquet":
            return pq.read_table(source)
        return pa_csv.read_csv(
            source,
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(column_types={columns.path: pa.string()}),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(
            f"cannot read {str(source)!r} as {kind}: {exc}", field="source"
        ) from None


def read_paths(
    source: str | Path,
    *,
    columns: PathColumns = _DEFAULTS,
    sep: str = DEFAULT_SEPARATOR,
    file_format: str | None = None,
    csv_delimiter: str = ",",
) -> PathTable:
    """Read a CSV or Parquet file of paths (format from the suffix unless `file_format`)."""
    table = _read_table(Path(source), file_format, columns, csv_delimiter)
    return paths_from_arrow(table, columns=columns, sep=sep)
