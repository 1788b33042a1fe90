"""Where runs are recorded and executed: the DuckDB store, background jobs, the Ray engine."""
