"""Fields with presence (`oneof optional_x { T x = N; }` in the proto) given as keywords."""

from typing import Any


def present(**fields: Any) -> dict[str, Any]:
    """The keywords whose value is not None: unset fields stay unset (null in JSON). Protobuf
    treats a None keyword the same way; the generated stubs only type the set value."""
    return {name: value for name, value in fields.items() if value is not None}
