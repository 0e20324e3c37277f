"""Tests of the test harness itself (database fixtures, ServerProcess), kept apart from the
product's tests."""
