"""The step-handler registry: registration rules, how handlers will run, module loading."""

import functools
from typing import Any

import pytest

from fleetq_server.handlers import HandlerLoadError, HandlerRegistry, StepContext, load_registry


async def async_handler(args: dict[str, Any], context: StepContext) -> None:
    return None


def blocking_handler(args: dict[str, Any], context: StepContext) -> None:
    return None


async def configurable_handler(args: dict[str, Any], context: StepContext, *, level: int) -> int:
    return level


def test_async_handlers_run_on_the_loop_and_plain_functions_in_a_thread() -> None:
    registry = HandlerRegistry()
    registry.add("a", async_handler)
    registry.add("b", blocking_handler)
    registry.add("c", functools.partial(configurable_handler, level=3))
    assert [registry.get(t).is_async for t in "abc"] == [True, False, True]  # type: ignore[union-attr]


def test_a_type_registered_twice_is_refused() -> None:
    registry = HandlerRegistry()
    registry.add("a", async_handler)
    with pytest.raises(HandlerLoadError, match="'a' is registered twice"):
        registry.add("a", blocking_handler)


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_a_timeout_must_be_above_zero(timeout: float) -> None:
    with pytest.raises(HandlerLoadError, match="timeout for 'a' must be above zero"):
        HandlerRegistry().add("a", async_handler, timeout=timeout)


def test_types_are_listed_sorted_with_their_options() -> None:
    registry = HandlerRegistry()
    registry.add("zeta", async_handler, timeout=2.5)
    registry.add("alpha", blocking_handler)
    assert registry.step_types == ["alpha", "zeta"]
    assert registry.get("zeta").timeout_s == 2.5  # type: ignore[union-attr]
    assert registry.get("alpha").timeout_s is None  # type: ignore[union-attr]
    assert registry.get("unknown") is None


def test_loading_adds_modules_to_the_demo_handlers_only_when_asked() -> None:
    assert load_registry([]).step_types == []
    assert load_registry([], demo_handlers=True).step_types == ["hello_world", "sleep"]
    registry = load_registry(["tests.handlers.recording"], demo_handlers=True)
    assert {"hello_world", "sleep", "record", "too_slow"} <= set(registry.step_types)
    assert "hello_world" not in load_registry(["tests.handlers.recording"]).step_types


def test_naming_the_builtin_module_loads_the_demo_handlers_once() -> None:
    for demo in (False, True):
        registry = load_registry(["fleetq_server.handlers.builtin"], demo_handlers=demo)
        assert registry.step_types == ["hello_world", "sleep"]


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("tests.handlers.no_such_module", "cannot import handler module 'tests.handlers.no_such"),
        ("tests.handlers.broken_import", "No module named 'fleetq_test_dependency_that_is"),
        ("tests.handlers", "has no register(registry) function"),
        ("tests.handlers.duplicate_type", "step type 'hello_world' is registered twice"),
        ("tests.handlers.failing_register", "FLEETQ_TEST_MAIL_URL_NEVER_SET"),
    ],
)
def test_a_bad_module_is_a_load_error_naming_the_problem(module: str, message: str) -> None:
    with pytest.raises(HandlerLoadError) as info:
        load_registry([module], demo_handlers=True)
    assert message in str(info.value)
