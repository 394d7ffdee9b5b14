"""Results: metrics, cost, tables, per-run reports, plots, sweep tables."""
