"""FLEET-Q benchmarks: real PostgreSQL, real pods as processes, real clients (`make bench`)."""
