"""submit_depth's report of what ran during the timed window, from counters read around it."""

from collections import Counter

from benchmarks.submit_depth import Activity


def test_window_activity_is_what_the_counters_gained_per_database() -> None:
    before = Activity(
        checkpoints=7,
        autovacuums=(Counter({"pg_class": 1, "fleetq_steps": 0}), Counter({"pg_class": 2})),
        leader_vacuums=(1, 1),
    )
    after = Activity(
        checkpoints=8,
        autovacuums=(Counter({"pg_class": 1, "fleetq_steps": 1}), Counter({"pg_class": 3})),
        leader_vacuums=(1, 3),
    )

    ran = after.since(before)

    assert ran.checkpoints == 1
    assert ran.autovacuums == (Counter({"fleetq_steps": 1}), Counter({"pg_class": 1}))
    assert ran.leader_vacuums == (0, 2)
    assert ran.describe() == (
        "1 checkpoints; autovacuum: fleetq_steps x1 | pg_class x1; leader VACUUMs [0, 2]"
    )


def test_a_quiet_window_reports_nothing_ran() -> None:
    counters = Activity(1, (Counter({"pg_class": 4}),), (1,))

    assert counters.since(counters).describe() == (
        "0 checkpoints; autovacuum: none; leader VACUUMs [0]"
    )
