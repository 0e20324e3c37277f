"""Path templates: what they match, what they bind, and what start-up refuses."""

import pytest

from fleetq_server.gateway.path_templates import (
    PathValueError,
    TemplateError,
    compile_template,
    split_path,
)


def test_literal_template_matches_only_the_exact_path() -> None:
    template = compile_template("/admin/leader")

    assert template.match("/admin/leader") == {}
    assert template.match("/admin/leader/") is None
    assert template.match("/admin") is None
    assert template.match("/admin/queue") is None
    assert template.match("/Admin/leader") is None


def test_variable_binds_the_percent_decoded_segment() -> None:
    template = compile_template("/status/{step_id}")

    assert template.match("/status/step_1") == {"step_id": "step_1"}
    assert template.match("/status/a%20b") == {"step_id": "a b"}
    assert template.match("/status/caf%C3%A9") == {"step_id": "café"}


def test_encoded_slash_stays_inside_one_variable() -> None:
    template = compile_template("/status/{step_id}")

    assert template.match(b"/status/a%2Fb") == {"step_id": "a/b"}
    assert template.match(b"/status/a/b") is None


def test_variable_does_not_match_an_empty_segment() -> None:
    assert compile_template("/status/{step_id}").match("/status/") is None


def test_explicit_single_segment_variable_is_the_same_as_the_short_form() -> None:
    long_form = compile_template("/status/{step_id=*}")

    assert long_form.match("/status/x") == {"step_id": "x"}
    assert long_form.variables == compile_template("/status/{step_id}").variables


def test_wildcard_matches_one_segment_without_binding_it() -> None:
    template = compile_template("/v1/*/items/{item.id}")

    assert template.match("/v1/anything/items/7") == {"item.id": "7"}
    assert template.match("/v1/a/b/items/7") is None
    assert template.variables == ("item.id",)


def test_literal_segments_compare_after_percent_decoding() -> None:
    assert compile_template("/a%20b").match("/a b") == {}
    assert compile_template("/ab").match("/%61b") == {}


def test_invalid_utf8_in_a_path_raises_path_value_error() -> None:
    with pytest.raises(PathValueError, match="UTF-8"):
        compile_template("/status/{step_id}").match(b"/status/%FF")


def test_split_path_requires_a_leading_slash() -> None:
    assert split_path("/a/b") == ("a", "b")
    with pytest.raises(PathValueError):
        split_path("a/b")


def test_specificity_ranks_literals_before_variables() -> None:
    literal = compile_template("/status/latest")
    variable = compile_template("/status/{step_id}")

    assert literal.specificity < variable.specificity
    assert literal.shape != variable.shape
    assert variable.shape == compile_template("/status/{other}").shape


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("/files/{name=**}", "single-segment"),
        ("/files/**", r"'\*\*'"),
        ("/files/{name=shelves/*}", "single-segment"),
        ("/steps:x/{step_id}", "verb"),  # a verb only after the last segment
        ("/steps/{step_id}:", "bad custom verb"),
        ("/steps/{step_id}:a:b", "verb"),
        ("status/{step_id}", "must start with '/'"),
        ("/", "must start with '/'"),
        ("/status//x", "empty segment"),
        ("/status/", "empty segment"),
        ("/a/{x}/{x}", "more than once"),
        ("/a/{x", "unmatched"),
        ("/a/x}", "unmatched"),
        ("/a/{1x}", "bad variable name"),
        ("/a/b{x}", "bad literal"),
    ],
)
def test_unsupported_templates_are_rejected_at_startup(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        compile_template(template)


def test_a_custom_verb_follows_the_last_segment() -> None:
    template = compile_template("/steps/{step_id}:cancel")

    assert template.verb == "cancel"
    assert template.variables == ("step_id",)
    assert template.match("/steps/step_1:cancel") == {"step_id": "step_1"}
    assert template.match("/steps/a:b:cancel") == {"step_id": "a:b"}
    assert template.match("/steps/step_1%3Acancel") == {"step_id": "step_1"}
    assert template.match("/steps/step_1") is None
    assert template.match("/steps/step_1:retry") is None
    assert template.match("/steps/:cancel") is None  # a variable is never empty


def test_a_literal_segment_can_carry_a_verb() -> None:
    template = compile_template("/steps:batchCancel")

    assert template.match("/steps:batchCancel") == {}
    assert template.match("/steps") is None


def test_a_template_with_a_verb_ranks_before_the_same_one_without() -> None:
    with_verb = compile_template("/steps/{step_id}:cancel")
    without = compile_template("/steps/{step_id}")

    assert with_verb.specificity < without.specificity
    assert with_verb.shape != without.shape
