"""google.api.http path templates compiled into matchers.

Supported: literal segments, `*` (one anonymous segment), single-segment variables
`{field}` / `{field=*}`, where `field` may be a dotted path into nested messages, and a
custom method's verb after the last segment (`/steps/{step_id}:cancel`, AIP-136).
Multi-segment forms (`**`, `{field=a/*}`) are rejected when the gateway starts, with an
error naming the template, rather than half-supported.

Matching works on the raw (still percent-encoded) path so that an encoded `/` (`%2F`)
stays inside one segment; every segment is percent-decoded as UTF-8 before comparison.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# RFC 3986 pchar without ":" (reserved for verbs) and without the template's own syntax.
_LITERAL = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()+,;=@]|%[0-9A-Fa-f]{2})+")


class TemplateError(ValueError):
    """A path template this gateway cannot route; raised at start-up."""


class PathValueError(ValueError):
    """A request path whose percent-encoding does not decode to UTF-8."""


@dataclass(frozen=True)
class Literal:
    """A segment that must equal `value` (already percent-decoded)."""

    value: str


@dataclass(frozen=True)
class Wildcard:
    """`*`: any one non-empty segment, bound to nothing."""


@dataclass(frozen=True)
class Variable:
    """`{field_path}`: any one non-empty segment, bound to a request field."""

    field_path: str


Segment = Literal | Wildcard | Variable


def split_path(raw_path: str | bytes) -> tuple[str, ...]:
    """Split a raw request path into percent-decoded segments.

    Raises PathValueError when a segment does not decode to UTF-8.
    """
    data = raw_path.encode("utf-8") if isinstance(raw_path, str) else raw_path
    if not data.startswith(b"/"):
        raise PathValueError("request path must start with '/'")
    segments: list[str] = []
    for raw_segment in data[1:].split(b"/"):
        try:
            segments.append(unquote_to_bytes(raw_segment).decode("utf-8"))
        except UnicodeDecodeError:
            raise PathValueError("request path is not valid UTF-8 after percent-decoding") from None
    return tuple(segments)


@dataclass(frozen=True)
class PathTemplate:
    """A compiled template: matches request paths and extracts variables."""

    template: str
    segments: tuple[Segment, ...]
    verb: str = ""  # a custom method's verb, without its ':'; "" for none

    @property
    def variables(self) -> tuple[str, ...]:
        """Field paths bound by this template, in order."""
        return tuple(s.field_path for s in self.segments if isinstance(s, Variable))

    @property
    def specificity(self) -> tuple[int, ...]:
        """Sort key: literal segments rank before variables, position by position, and a
        template with a verb before the same one without (whose last variable would
        otherwise take `x:verb` whole)."""
        ranks = tuple(0 if isinstance(s, Literal) else 1 for s in self.segments)
        return (*ranks, 0 if self.verb else 1)

    @property
    def shape(self) -> tuple[str | None, ...]:
        """What two templates share when they match exactly the same paths."""
        shape = tuple(s.value if isinstance(s, Literal) else None for s in self.segments)
        return (*shape, self.verb)

    def match(self, path: str | bytes) -> dict[str, str] | None:
        """Variables of a raw request path, or None when it does not match.

        Raises PathValueError when the path does not percent-decode to UTF-8.
        """
        return self.match_segments(split_path(path))

    def match_segments(self, segments: Sequence[str]) -> dict[str, str] | None:
        """Like `match`, for a path already split by `split_path`."""
        if len(segments) != len(self.segments):
            return None
        if self.verb:
            head, colon, verb = segments[-1].rpartition(":")
            if not colon or verb != self.verb:
                return None
            segments = (*segments[:-1], head)
        variables: dict[str, str] = {}
        for pattern, segment in zip(self.segments, segments, strict=True):
            if isinstance(pattern, Literal):
                if segment != pattern.value:
                    return None
            elif not segment:
                return None
            elif isinstance(pattern, Variable):
                variables[pattern.field_path] = segment
        return variables


def compile_template(template: str) -> PathTemplate:
    """Compile a google.api.http path template; raise TemplateError if unsupported."""
    if not template.startswith("/") or template == "/":
        raise TemplateError(f"path template {template!r} must start with '/' and name a path")
    segments: list[Segment] = []
    seen: set[str] = set()
    pieces = _split_template(template)
    pieces[-1], verb = _split_verb(template, pieces[-1])
    for raw in pieces:
        segment = _compile_segment(template, raw)
        if isinstance(segment, Variable):
            if segment.field_path in seen:
                raise TemplateError(
                    f"path template {template!r} binds {segment.field_path!r} more than once"
                )
            seen.add(segment.field_path)
        segments.append(segment)
    return PathTemplate(template=template, segments=tuple(segments), verb=verb)


def _split_verb(template: str, last: str) -> tuple[str, str]:
    """The last segment and its custom verb (`{id}:cancel` -> `{id}`, `cancel`)."""
    _, colon, verb = last[last.rfind("}") + 1 :].rpartition(":")
    if not colon:
        return last, ""
    if not _LITERAL.fullmatch(verb):
        raise TemplateError(f"path template {template!r}: bad custom verb {verb!r}")
    return last[: len(last) - len(verb) - 1], verb


def _split_template(template: str) -> list[str]:
    """Split on '/' outside braces, so `{a=x/*}` stays one piece to be rejected clearly."""
    pieces: list[str] = []
    depth = 0
    current: list[str] = []
    for char in template[1:]:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"path template {template!r} has an unmatched '}}'")
        if char == "/" and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise TemplateError(f"path template {template!r} has an unmatched '{{'")
    pieces.append("".join(current))
    return pieces


def _compile_segment(template: str, raw: str) -> Segment:
    if raw == "":
        raise TemplateError(f"path template {template!r} has an empty segment")
    if raw == "*":
        return Wildcard()
    if raw == "**":
        raise TemplateError(
            f"path template {template!r}: multi-segment wildcard '**' is not supported"
        )
    if raw.startswith("{") and raw.endswith("}"):
        name, _, pattern = raw[1:-1].partition("=")
        if not _FIELD_PATH.fullmatch(name):
            raise TemplateError(f"path template {template!r}: bad variable name {name!r}")
        if pattern not in ("", "*"):
            raise TemplateError(
                f"path template {template!r}: variable {name!r} binds {pattern!r}; "
                "only single-segment variables ({field} or {field=*}) are supported"
            )
        return Variable(field_path=name)
    if ":" in raw:
        raise TemplateError(
            f"path template {template!r}: ':' may only introduce a verb after the last segment"
        )
    if not _LITERAL.fullmatch(raw):
        raise TemplateError(f"path template {template!r}: bad literal segment {raw!r}")
    try:
        value = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateError(f"path template {template!r}: literal {raw!r} is not UTF-8") from None
    return Literal(value=value)
