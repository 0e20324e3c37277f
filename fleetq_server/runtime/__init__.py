"""The pod runtime: background loops that heartbeat, claim, execute and recover steps."""
