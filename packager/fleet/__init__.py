"""The fleet: what devices report, read back. ``aggregate`` turns the telemetry segments in a
registry's store into numbers per version, variant and cohort over a time window, with DuckDB."""
