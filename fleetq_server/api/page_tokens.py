"""Opaque keyset page tokens: a position (a time and an id) as URL-safe text, and back.

Every list RPC that pages newest first by (time, id) uses these, so a token is parsed, and
refused, the same way everywhere."""

import base64
import binascii
from datetime import UTC, datetime, timedelta

import orjson

from fleetq_server import errors

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_position(ts: datetime, key: str) -> str:
    """A token for the position (`ts`, `key`): microseconds since the epoch and the id, as
    JSON in URL-safe base64 without padding."""
    micros = (ts - _EPOCH) // timedelta(microseconds=1)
    raw = orjson.dumps([micros, key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(token: str) -> tuple[datetime, str]:
    """The position a token names; ValidationError naming `page_token` for anything this
    service did not issue (a token is only ever parsed, never trusted for more)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        micros, key = orjson.loads(raw)
        if not (isinstance(micros, int) and isinstance(key, str) and key):
            raise ValueError
        ts = _EPOCH + timedelta(microseconds=micros)
    except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError):
        raise errors.ValidationError("page_token: is not a token this service issued") from None
    if "\x00" in key:
        raise errors.ValidationError("page_token: is not a token this service issued")
    return ts, key
