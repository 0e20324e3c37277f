"""Fuzzing: schemathesis against a live pod, hypothesis properties of the gateway."""
