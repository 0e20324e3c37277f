"""What the server and the client share: both ends of the wire convert the same protobuf
values, and `fleetq_client` imports nothing from `fleetq_server` (see .importlinter)."""
