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
