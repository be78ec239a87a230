from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots.interpolate import InterpolationError, interpolate, interpolate_string

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
# Text that contains no "$" cannot contain a placeholder, so it must pass through unchanged.
plain = st.text(alphabet=st.characters(blacklist_characters="$", blacklist_categories=["Cs"]))
values = st.text(alphabet=st.characters(blacklist_categories=["Cs"]))


@given(plain)
def test_text_without_placeholders_is_unchanged(text: str) -> None:
    assert interpolate_string(text, {}) == text


@given(prefix=plain, suffix=plain, name=names, value=values)
def test_set_variable_is_substituted_verbatim(
    prefix: str, suffix: str, name: str, value: str
) -> None:
    # The value itself may contain "${...}": substitution is not recursive.
    result = interpolate_string(prefix + "${" + name + "}" + suffix, {name: value})
    assert result == prefix + value + suffix


@given(
    name=names,
    default=st.text(alphabet=st.characters(blacklist_characters="}", blacklist_categories=["Cs"])),
)
def test_default_used_when_unset_or_empty(name: str, default: str) -> None:
    template = "${" + name + ":-" + default + "}"
    assert interpolate_string(template, {}) == default
    assert interpolate_string(template, {name: ""}) == default
    assert interpolate_string(template, {name: "set"}) == "set"


@given(name=names)
def test_missing_variable_names_the_key(name: str) -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate({"bots": [{"token": "${" + name + "}"}]}, {})
    assert info.value.key == "bots[0].token"
    assert name in str(info.value)


def test_dollar_dollar_escapes_a_literal_placeholder() -> None:
    assert interpolate_string("cost: $${HOME}", {"HOME": "/root"}) == "cost: ${HOME}"


def test_non_strings_pass_through() -> None:
    data = {"a": 1, "b": [True, None, 2.5], "c": {"d": "${X}"}}
    assert interpolate(data, {"X": "y"}) == {"a": 1, "b": [True, None, 2.5], "c": {"d": "y"}}
