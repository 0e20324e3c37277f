"""`make bench-peers`: FLEET-Q side by side with other PostgreSQL queues."""
