"""Probe definitions and how recipes add to or replace the defaults."""

from __future__ import annotations

import pytest

from ladder.errors import ConfigError
from ladder.probes import DEFAULT_PROBES, Probe, resolve_probes

DEFAULT_IDS = [p.id for p in DEFAULT_PROBES]


def test_defaults_cover_the_promised_behaviours() -> None:
    assert DEFAULT_IDS == [
        "recipe",
        "explain_to_child",
        "who_made_you",
        "identity_few_shot",
        "arithmetic_tags",
        "word_problem",
        "decline",
    ]
    by_id = {p.id: p for p in DEFAULT_PROBES}
    assert "<answer></answer>" in (by_id["arithmetic_tags"].prompt or "")
    few_shot = by_id["identity_few_shot"].conversation
    assert [m["role"] for m in few_shot] == ["user", "assistant", "user", "assistant", "user"]


def test_prompt_probe_is_one_user_message() -> None:
    probe = Probe(id="p", prompt="Hi?")
    assert probe.conversation == [{"role": "user", "content": "Hi?"}]
    assert probe.display_prompt == "Hi?"


def test_messages_probe_displays_its_turns() -> None:
    probe = Probe(
        id="m", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert probe.display_prompt == "system: Be brief.\nuser: Hi"
    assert probe.conversation[-1] == {"role": "user", "content": "Hi"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"id": "x"}, "exactly one"),
        ({"id": "x", "prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "exactly one"),
        ({"id": " ", "prompt": "a"}, "non-empty id"),
        ({"id": "x", "messages": [{"role": "user"}]}, "'role' and 'content'"),
        (
            {
                "id": "x",
                "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            },
            "end with a user",
        ),
        ({"id": "x", "messages": "hello"}, "list of"),
    ],
)
def test_malformed_probes_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Probe(**kwargs)


def test_max_new_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Probe(id="x", prompt="a", max_new_tokens=0)


def test_none_gives_the_defaults() -> None:
    assert resolve_probes(None) == list(DEFAULT_PROBES)


def test_a_list_is_added_to_the_defaults() -> None:
    probes = resolve_probes([{"id": "haiku", "prompt": "Write a haiku.", "max_new_tokens": 32}, "Say hi."])
    assert [p.id for p in probes] == [*DEFAULT_IDS, "haiku", "probe_1"]
    assert probes[-2] == Probe(id="haiku", prompt="Write a haiku.", max_new_tokens=32)
    assert probes[-1].prompt == "Say hi."


def test_mapping_without_replace_adds() -> None:
    probes = resolve_probes({"items": [{"id": "haiku", "prompt": "Write a haiku."}]})
    assert [p.id for p in probes] == [*DEFAULT_IDS, "haiku"]


def test_replace_drops_the_defaults() -> None:
    probes = resolve_probes(
        {"replace": True, "items": [{"id": "chat", "messages": [{"role": "user", "content": "Hi"}]}]}
    )
    assert [p.id for p in probes] == ["chat"]


def test_an_item_with_a_default_id_replaces_that_default_in_place() -> None:
    probes = resolve_probes([{"id": "who_made_you", "prompt": "Who built you?"}])
    assert [p.id for p in probes] == DEFAULT_IDS
    assert probes[DEFAULT_IDS.index("who_made_you")].prompt == "Who built you?"


def test_probe_instances_pass_through() -> None:
    probe = Probe(id="own", prompt="Hi")
    assert resolve_probes({"replace": True, "items": [probe]}) == [probe]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("just a string", "list or a mapping"),
        ({"replace": True, "item": []}, "unknown keys"),
        ([{"id": "a", "prompt": "x", "temperature": 1}], r"probes item 0: unknown keys \['temperature'\]"),
        ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], "used twice"),
        ([42], "probes item 0: expected a mapping"),
        ([{"id": "a"}], "probes item 0: .*exactly one"),
        ({"items": "nope"}, "must be a list"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_probes(spec)
