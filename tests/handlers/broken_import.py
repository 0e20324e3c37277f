"""A handler module that cannot be imported: its dependency is missing."""

import fleetq_test_dependency_that_is_not_installed  # noqa: F401
