"""Journeys as flat numpy arrays: one row per path (or journey), its touches, its outcomes.

A `PathTable` holds either aggregated paths (ChannelAttribution's format: one row per distinct
path with its total conversions, value and nulls) or a touch table (one row per journey, with
the lag in days of each touch before the conversion, which time decay needs). Touches are a flat
int32 channel-index array cut into rows by an int64 offsets array, so ten million journeys never
become Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perfmark.errors import ValidationError

__all__ = [
    "CONVERSIONS_FIELD",
    "LAG_DAYS_FIELD",
    "NULLS_FIELD",
    "PATH_FIELD",
    "VALUE_FIELD",
    "PathTable",
    "path_table_from_lists",
    "sum_by_index",
]

# Field names follow ChannelAttribution's input columns so errors read the same everywhere.
PATH_FIELD = "path"
CONVERSIONS_FIELD = "total_conversions"
VALUE_FIELD = "total_conversion_value"
NULLS_FIELD = "total_null"
LAG_DAYS_FIELD = "lag_days"


def sum_by_index(
    index: NDArray[np.integer], weights: NDArray[np.float64], size: int
) -> NDArray[np.float64]:
    """Sum `weights` into `size` bins by `index` (a typed, float64 `np.bincount`)."""
    sums: NDArray[np.float64] = np.bincount(index, weights=weights, minlength=size).astype(
        np.float64, copy=False
    )
    return sums


def _readonly(array: NDArray[np.generic]) -> None:
    array.setflags(write=False)


def _check_row_amounts(field: str, values: NDArray[np.float64], what: str) -> None:
    """Every entry finite and >= 0; the error names the first bad row (1-based) and value."""
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"{field} at row {row + 1} is {float(values[row])!r}; {what} must be a finite "
            "number >= 0",
            field=field,
        )


@dataclass(frozen=True, eq=False)
class PathTable:
    """Paths (or journeys) with their outcomes, as read-only numpy arrays validated on creation.

    `channels[offsets[i]:offsets[i + 1]]` are the channel indices of row i, in touch order;
    `conversions`, `value` and `nulls` are per row (nulls = journeys on that path that did not
    convert); `lag_days`, when given, is per touch: days from the touch to the conversion (or to
    the end of a journey that did not convert).
    """

    channel_names: tuple[str, ...]
    channels: NDArray[np.int32]
    offsets: NDArray[np.int64]
    conversions: NDArray[np.float64]
    value: NDArray[np.float64]
    nulls: NDArray[np.float64]
    lag_days: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        """Coerce dtypes, freeze the arrays and check every invariant once."""
        names = tuple(self.channel_names)
        object.__setattr__(self, "channel_names", names)
        channels = np.ascontiguousarray(self.channels, dtype=np.int32)
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        conversions = np.ascontiguousarray(self.conversions, dtype=np.float64)
        value = np.ascontiguousarray(self.value, dtype=np.float64)
        nulls = np.ascontiguousarray(self.nulls, dtype=np.float64)
        lags = (
            None if self.lag_days is None else np.ascontiguousarray(self.lag_days, dtype=np.float64)
        )
        self._check(names, channels, offsets, conversions, value, nulls, lags)
        for name, array in (
            ("channels", channels),
            ("offsets", offsets),
            ("conversions", conversions),
            ("value", value),
            ("nulls", nulls),
        ):
            if array is getattr(self, name):
                array = array.copy()
            _readonly(array)
            object.__setattr__(self, name, array)
        if lags is not None:
            if lags is self.lag_days:
                lags = lags.copy()
            _readonly(lags)
            object.__setattr__(self, "lag_days", lags)

    @staticmethod
    def _check(
        names: tuple[str, ...],
        channels: NDArray[np.int32],
        offsets: NDArray[np.int64],
        conversions: NDArray[np.float64],
        value: NDArray[np.float64],
        nulls: NDArray[np.float64],
        lags: NDArray[np.float64] | None,
    ) -> None:
        if offsets.ndim != 1 or offsets.size < 2:
            raise ValidationError(
                "attribution input is empty: no paths; give at least one path", field=PATH_FIELD
            )
        n_rows = offsets.size - 1
        if offsets[0] != 0 or offsets[-1] != channels.size:
            raise ValidationError(
                f"offsets must start at 0 and end at the number of touches ({channels.size}); "
                f"got {int(offsets[0])}..{int(offsets[-1])}",
                field="offsets",
            )
        lengths = np.diff(offsets)
        if (lengths <= 0).any():
            row = int(np.flatnonzero(lengths <= 0)[0])
            raise ValidationError(
                f"{PATH_FIELD} at row {row + 1} has no channel; every path needs at least one "
                "touch",
                field=PATH_FIELD,
            )
        if len(set(names)) != len(names) or any(not name for name in names):
            raise ValidationError(
                f"channel names must be distinct and non-empty; got {list(names)[:20]!r}",
                field="channel_names",
            )
        if channels.size and (channels.min() < 0 or channels.max() >= len(names)):
            raise ValidationError(
                f"channel index out of range 0..{len(names) - 1}: "
                f"{int(channels.min())}..{int(channels.max())}",
                field="channels",
            )
        for field, array in (
            (CONVERSIONS_FIELD, conversions),
            (VALUE_FIELD, value),
            (NULLS_FIELD, nulls),
        ):
            if array.shape != (n_rows,):
                raise ValidationError(
                    f"{field} has {array.size} entries for {n_rows} paths; give one per path",
                    field=field,
                )
        _check_row_amounts(CONVERSIONS_FIELD, conversions, "conversions")
        _check_row_amounts(VALUE_FIELD, value, "a conversion value")
        _check_row_amounts(NULLS_FIELD, nulls, "a count of non-converting journeys")
        if conversions.sum() + nulls.sum() <= 0:
            raise ValidationError(
                f"every path has 0 {CONVERSIONS_FIELD} and 0 {NULLS_FIELD}: there are no "
                "journeys to attribute",
                field=CONVERSIONS_FIELD,
            )
        if lags is not None:
            if lags.shape != channels.shape:
                raise ValidationError(
                    f"{LAG_DAYS_FIELD} has {lags.size} entries for {channels.size} touches; "
                    "give one per touch",
                    field=LAG_DAYS_FIELD,
                )
            bad = ~np.isfinite(lags) | (lags < 0)
            if bad.any():
                touch = int(np.flatnonzero(bad)[0])
                row = int(np.searchsorted(offsets, touch, side="right"))
                raise ValidationError(
                    f"{LAG_DAYS_FIELD} of touch {touch - int(offsets[row - 1]) + 1} at row {row} "
                    f"is {float(lags[touch])!r}; a lag must be a finite number of days >= 0",
                    field=LAG_DAYS_FIELD,
                )

    @property
    def n_paths(self) -> int:
        """Number of rows (distinct paths, or journeys in a touch table)."""
        return int(self.offsets.size - 1)

    @property
    def n_channels(self) -> int:
        """Number of channel names."""
        return len(self.channel_names)

    @property
    def n_touches(self) -> int:
        """Number of touches over all rows."""
        return int(self.channels.size)

    @cached_property
    def lengths(self) -> NDArray[np.int64]:
        """Touches per row (computed once, read-only)."""
        lengths = np.diff(self.offsets)
        _readonly(lengths)
        return lengths

    @cached_property
    def row_of_touch(self) -> NDArray[np.int64]:
        """For each touch, the index of its row (computed once, read-only)."""
        rows = np.repeat(np.arange(self.n_paths, dtype=np.int64), self.lengths)
        _readonly(rows)
        return rows

    @property
    def total_conversions(self) -> float:
        """Sum of conversions over all rows."""
        return float(self.conversions.sum())

    @property
    def total_value(self) -> float:
        """Sum of conversion value over all rows."""
        return float(self.value.sum())

    @property
    def total_nulls(self) -> float:
        """Sum of non-converting journeys over all rows."""
        return float(self.nulls.sum())


def path_table_from_lists(
    paths: Sequence[Sequence[str]],
    conversions: ArrayLike,
    value: ArrayLike | None = None,
    nulls: ArrayLike | None = None,
    lag_days: Sequence[Sequence[float]] | None = None,
) -> PathTable:
    """Build a `PathTable` from Python lists (small inputs, tests); channels in first-seen order.

    Large inputs go through `PathTable` directly with arrays, or through
    `perfmark.attribution.standalone` which encodes path strings without Python loops.
    """
    index: dict[str, int] = {}
    flat: list[int] = []
    offsets = [0]
    for row, path in enumerate(paths):
        for channel in path:
            if not isinstance(channel, str) or not channel:
                raise ValidationError(
                    f"{PATH_FIELD} at row {row + 1} has a blank channel name {channel!r}",
                    field=PATH_FIELD,
                )
            flat.append(index.setdefault(channel, len(index)))
        offsets.append(len(flat))
    n_rows = len(paths)
    conv = np.asarray(conversions, dtype=np.float64)
    val = np.zeros(n_rows) if value is None else np.asarray(value, dtype=np.float64)
    nul = np.zeros(n_rows) if nulls is None else np.asarray(nulls, dtype=np.float64)
    lags = None
    if lag_days is not None:
        if len(lag_days) != n_rows or any(
            len(row) != len(path) for row, path in zip(lag_days, paths, strict=False)
        ):
            raise ValidationError(
                f"{LAG_DAYS_FIELD} must give one lag per touch of every path", field=LAG_DAYS_FIELD
            )
        lags = np.asarray([lag for row in lag_days for lag in row], dtype=np.float64)
    return PathTable(
        channel_names=tuple(index),
        channels=np.asarray(flat, dtype=np.int32),
        offsets=np.asarray(offsets, dtype=np.int64),
        conversions=conv,
        value=val,
        nulls=nul,
        lag_days=lags,
    )
