"""What the dashboard and exports show: plots, reports (CSV, Parquet, HTML) and time estimates before launch."""
