"""Reading a submit NOTIFY's payload as new steps per type."""

from fleetq_server.store.notifications import submit_counts


def test_counted_items_add_up_per_type() -> None:
    assert submit_counts("a,a:99,b") == {"a": 100, "b": 1}


def test_a_bare_type_is_one_step_as_the_previous_version_sent_it() -> None:
    assert submit_counts("a,b") == {"a": 1, "b": 1}


def test_an_empty_payload_means_any_type() -> None:
    assert submit_counts("") is None
