"""Analyst access to the evidence store: DuckDB views over the JSON verdicts and detail tables."""

from qfs_assets.analytics.query import (
    QueryError,
    format_table,
    load_catalog,
    main_query,
    main_tables,
    register_views,
    run_query,
)

__all__ = ["QueryError", "format_table", "load_catalog", "main_query", "main_tables", "register_views", "run_query"]
