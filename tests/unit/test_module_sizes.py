"""The structure rule of #12: no module of the server package grows past 400 lines, so a
module keeps one job a newcomer can read at once (generated code lives outside it)."""

from pathlib import Path

import fleetq_server

MAX_LINES = 400


def test_no_server_module_is_longer_than_400_lines() -> None:
    package = Path(fleetq_server.__file__).parent
    sizes = {
        str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
        for path in package.rglob("*.py")
    }
    assert sizes, "no modules found"
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}
