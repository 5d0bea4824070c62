"""`jupyter_flow.environ`: environment reads on hot paths see every change at once."""

from __future__ import annotations

import os

import pytest

from jupyter_flow import environ


def test_a_variable_is_read_as_it_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "JUPYTER_FLOW_TEST_ENDPOINT"
    monkeypatch.delenv(name, raising=False)
    assert environ.get(name) is None and not environ.any_set((name,))
    monkeypatch.setenv(name, "http://a:1")
    assert environ.get(name) == "http://a:1" and environ.any_set(("NOT_SET_ANYWHERE_X", name))
    monkeypatch.setenv(name, "http://b:2")  # changed: the new value, not the one seen before
    assert environ.get(name) == "http://b:2"
    monkeypatch.setenv(name, "http://dünn-ü:3/ö")  # non-ASCII survives the round trip
    assert environ.get(name) == "http://dünn-ü:3/ö" == os.environ[name]
    monkeypatch.setenv(name, "")
    assert environ.get(name) == ""
    monkeypatch.delenv(name)
    assert environ.get(name) is None


def test_an_unset_variable_in_an_endpoint_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_flow.errors import NodeError
    from jupyter_flow.nodes.http import expand_env

    monkeypatch.setenv("JF_HOST", "example.test")
    monkeypatch.delenv("JF_PORT", raising=False)
    assert expand_env("http://${JF_HOST}/x", node="n", field="config.endpoint").value == "http://example.test/x"
    with pytest.raises(NodeError, match="JF_PORT"):
        expand_env("http://${JF_HOST}:${JF_PORT}/x", node="n", field="config.endpoint")


def test_an_expansion_follows_the_environment_and_masks_every_value_it_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_flow.errors import NodeError
    from jupyter_flow.nodes.http import MASK, Secrets, expand_env

    monkeypatch.setenv("JF_KEY", "first-secret-value")
    monkeypatch.setenv("JF_HOST", "example.test")
    text = "https://${JF_HOST}/v1?key=${JF_KEY}&raw=${NOT_ALLOWED}"
    allowed = frozenset({"JF_HOST", "JF_KEY"})
    first = expand_env(text, node="n", field="config.endpoint", allowed=allowed)
    assert first.value == "https://example.test/v1?key=first-secret-value&raw=${NOT_ALLOWED}"
    assert first.secrets == ("example.test", "first-secret-value")
    assert expand_env(text, node="n", field="config.endpoint", allowed=allowed) == first  # the same again
    monkeypatch.setenv("JF_KEY", "second-secret-value")  # changed between calls: the new value goes out
    second = expand_env(text, node="n", field="config.endpoint", allowed=allowed)
    assert second.value == "https://example.test/v1?key=second-secret-value&raw=${NOT_ALLOWED}"
    assert "second-secret-value" not in second.shown and "first-secret-value" not in second.shown
    # a call's messages hide every value it expanded, whichever came first, and stay chained
    # to no error that could quote one
    secrets = Secrets("n", allowed=allowed)
    secrets.expand(text, "config.endpoint")
    monkeypatch.setenv("JF_KEY", "third-secret-value")
    secrets.expand("${JF_KEY}", "config.headers.x-key")
    said = secrets.mask("server said: bad key second-secret-value, then third-secret-value")
    assert "secret-value" not in said and said.count(MASK) == 2
    assert secrets.cause(ValueError("x")) is None
    assert Secrets("n", allowed=allowed).cause(err := ValueError("x")) is err  # nothing expanded: the error stands
    monkeypatch.delenv("JF_KEY")
    with pytest.raises(NodeError, match="JF_KEY"):
        expand_env(text, node="n", field="config.endpoint", allowed=allowed)
