"""The fault suite: real pods killed, frozen and cut off from a real PostgreSQL."""
