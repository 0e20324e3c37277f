"""tune_for_serving: the interpreter settings a serving pod applies after start-up."""

import gc
import sys
from collections.abc import Iterator

import pytest

from fleetq_server.interpreter import SWITCH_INTERVAL_S, tune_for_serving


@pytest.fixture
def restored_interpreter() -> Iterator[None]:
    """Undo the settings, so other tests in this process see a default interpreter."""
    interval = sys.getswitchinterval()
    yield
    gc.unfreeze()
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("restored_interpreter")
def test_tuning_freezes_the_objects_alive_at_start_up() -> None:
    gc.unfreeze()
    long_lived = [object() for _ in range(1000)]
    tune_for_serving()
    assert gc.get_freeze_count() >= len(long_lived)


@pytest.mark.usefixtures("restored_interpreter")
def test_tuning_shortens_the_gil_switch_interval() -> None:
    tune_for_serving()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert SWITCH_INTERVAL_S < 0.005
