"""Step handler modules loaded by test pods through FLEETQ_HANDLERS."""
