"""Path splitting against a plain Python parser, forced through every internal route.

The reader scans bytes in blocks (with or without a tail of marks that steers numpy's nonzero),
splits rows into parts on threads, and numbers tokens either by dictionary-encoding them or by
looking them up among a sample's distinct tokens (then encoding the ones the sample missed and
recovering first-seen order). Tiny inputs take one route by default; the module constants are
patched here so that every route, and every mix of them, meets random paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.attribution import standalone
from perfmark.attribution.domain import PathTable
from perfmark.attribution.standalone import paths_from_arrow
from perfmark.errors import ValidationError

# No character that any separator below uses, nor one the reader takes for another tool's
# separator; spaces inside names are allowed (only the ends are stripped).
_NAME_ALPHABET = "abcxyz_-09éÜß日本 "
_PADDING = st.sampled_from(["", " ", "  ", "\t", "\u00a0"])
_SEPARATORS = st.sampled_from([" > ", ">", "|", " -> ", " → "])
_NAMES = st.text(alphabet=_NAME_ALPHABET, min_size=1, max_size=14).filter(str.strip)


@dataclass(frozen=True)
class _Case:
    paths: list[str | None]
    sep: str


@st.composite
def _cases(draw: st.DrawFn) -> _Case:
    """Rows of channels from a small pool, with ragged padding and some malformed rows."""
    sep = draw(_SEPARATORS)
    core = sep.strip() or sep
    pool = draw(st.lists(_NAMES, min_size=1, max_size=6, unique_by=str.strip))
    paths: list[str | None] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["path"] * 12 + ["blank", "dangling", "gap", "null"]))
        if kind == "null":
            paths.append(None)
            continue
        if kind == "blank":
            paths.append(draw(_PADDING))
            continue
        indices = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=8))
        names = [pool[i] for i in indices]
        if kind == "dangling":
            names = [*names, ""] if draw(st.booleans()) else ["", *names]
        elif kind == "gap":
            names.insert(draw(st.integers(1, len(names))), "")
        paths.append(core.join(draw(_PADDING) + name + draw(_PADDING) for name in names))
    return _Case(paths=paths, sep=sep)


def _reference(case: _Case) -> tuple[str, int] | tuple[list[str], list[int], list[int]]:
    """Split on the separator without its spaces, strip each channel; first-seen channel order.

    Returns ("null", row) or ("empty", row) for the first row the reader must reject.
    """
    for row, path in enumerate(case.paths):
        if path is None:
            return ("null", row)
    core = case.sep.strip() or case.sep
    index: dict[str, int] = {}
    channels: list[int] = []
    offsets = [0]
    for row, path in enumerate(case.paths):
        assert path is not None
        tokens = [token.strip() for token in path.split(core)]
        if not all(tokens):
            return ("empty", row)
        channels.extend(index.setdefault(token, len(index)) for token in tokens)
        offsets.append(len(channels))
    return list(index), channels, offsets


@dataclass(frozen=True)
class _Route:
    """Values for the reader's tuning constants (tiny, so tiny inputs take every route)."""

    block_bytes: int
    dense_share: float
    parts: int
    sample_tokens: int
    sample_runs: int
    run_tokens: int
    max_share: int


_ROUTES = st.builds(
    _Route,
    block_bytes=st.sampled_from([1, 2, 3, 7, 64, 8 << 20]),
    dense_share=st.sampled_from([0.0, 0.11, 0.5]),
    parts=st.integers(1, 3),
    sample_tokens=st.integers(1, 8),
    sample_runs=st.integers(1, 3),
    run_tokens=st.integers(1, 3),
    # 0 never falls back to dictionary-encoding the whole part; 4 is the reader's default.
    max_share=st.sampled_from([0, 4]),
)


def _read(case: _Case, route: _Route) -> PathTable:
    table = pa.table(
        {
            "path": pa.array(case.paths, type=pa.string()),
            "total_conversions": [1.0] * len(case.paths),
        }
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(standalone, "_SCAN_BLOCK_BYTES", route.block_bytes)
        patch.setattr(standalone, "_DENSE_MARK_SHARE", route.dense_share)
        patch.setattr(standalone, "_PART_MIN_BYTES", 1)
        patch.setattr(standalone, "_cpu_count", lambda: route.parts)
        patch.setattr(standalone, "_VOCAB_SAMPLE_TOKENS", route.sample_tokens)
        patch.setattr(standalone, "_VOCAB_SAMPLE_RUNS", route.sample_runs)
        patch.setattr(standalone, "_VOCAB_RUN_TOKENS", route.run_tokens)
        patch.setattr(standalone, "_VOCAB_SAMPLE_MAX_SHARE", route.max_share)
        return paths_from_arrow(table, sep=case.sep)


@settings(max_examples=400, deadline=None)
@given(case=_cases(), route=_ROUTES)
def test_every_route_splits_like_a_plain_python_split(case: _Case, route: _Route) -> None:
    expected = _reference(case)
    if isinstance(expected[0], str):
        kind, row = expected
        with pytest.raises(ValidationError) as caught:
            _read(case, route)
        assert caught.value.field == "path"
        if kind == "null":
            assert f"has no path at row {row + 1};" in caught.value.message
        else:
            assert f"at row {row + 1} is" in caught.value.message
            assert "empty channel" in caught.value.message
        return
    names, channels, offsets = expected
    table = _read(case, route)
    assert list(table.channel_names) == names
    assert table.channels.tolist() == channels
    assert table.offsets.tolist() == offsets


def _bench_like_paths(n_rows: int, seed: int) -> list[str]:
    """Sorted rows of long channel names: a leading sample misses most first-token variants,
    and a rare channel that only ever starts a path is first seen in the last rows."""
    rng = np.random.default_rng(seed)
    names = ["paid_search", "organic_search", "email", "display", "affiliate", "retargeting"]
    rows = [
        " > ".join(names[c] for c in rng.integers(0, len(names), rng.integers(1, 9)))
        for _ in range(n_rows)
    ]
    rows += [f"zz_rare > {rows[i]}" for i in range(3)]
    return sorted(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampled_lookup_matches_dictionary_encoding_on_sorted_paths(seed: int) -> None:
    """At the default sample sizes, on sorted paths (channels first seen late, variants the
    sample misses), the sampled lookup gives the table the dictionary route gives."""
    paths = _bench_like_paths(3000, seed)
    table = pa.table({"path": paths, "total_conversions": [1.0] * len(paths)})
    sampled = paths_from_arrow(table)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(standalone, "_VOCAB_SAMPLE_MAX_SHARE", 1 << 30)  # always dictionary
        encoded = paths_from_arrow(table)
    assert sampled.channel_names == encoded.channel_names
    assert np.array_equal(sampled.channels, encoded.channels)
    assert np.array_equal(sampled.offsets, encoded.offsets)
    tokens = [token.strip() for path in paths for token in path.split(">")]
    assert list(sampled.channel_names) == list(dict.fromkeys(tokens))


@pytest.mark.parametrize("sep", [" > ", " -> "])
def test_a_channel_the_sample_missed_keeps_its_first_seen_place(sep: str) -> None:
    """Samples of one token: the leading one ("a") and runs at tokens 1 and 3 ("a", "y").
    "x" (token 2) is missed and encoded apart, after "y" in the vocabulary; the channel order
    must still be a, x, y, as first seen."""
    paths = ["a", f"a{sep}x", f"y{sep}a"]
    table = pa.table({"path": paths, "total_conversions": [1.0] * len(paths)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(standalone, "_VOCAB_SAMPLE_TOKENS", 1)
        patch.setattr(standalone, "_VOCAB_SAMPLE_RUNS", 2)
        patch.setattr(standalone, "_VOCAB_RUN_TOKENS", 1)
        patch.setattr(standalone, "_VOCAB_SAMPLE_MAX_SHARE", 0)
        read = paths_from_arrow(table, sep=sep)
    assert read.channel_names == ("a", "x", "y")
    assert read.channels.tolist() == [0, 0, 1, 2, 0]
