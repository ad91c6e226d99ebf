"""Attribution: which channels earned the conversions, by heuristic, Markov and Shapley models.

The math lives in `perfmark.attribution.domain` (re-exported here); `standalone` reads
ChannelAttribution-format CSV/Parquet files into it and is imported on its own, since it needs
pyarrow.
"""

from __future__ import annotations

from perfmark.attribution.domain import *  # noqa: F403 (the domain's __all__ is the API)
from perfmark.attribution.domain import __all__ as _domain_all

__all__ = list(_domain_all)
