"""Cost data for reports: ad-platform spend imported from exports or the API, and exchange rates.

`perfmark.costs.domain` holds the pure parsing and matching; `services` the use cases (and
`daily_costs` / `rate_table` for the reports layer); `store` the tables; `api` the routes.
"""

from __future__ import annotations

__all__: list[str] = []
