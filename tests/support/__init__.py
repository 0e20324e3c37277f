"""Helpers for tests that need real PostgreSQL databases and real server processes."""
