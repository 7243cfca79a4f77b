"""The handler's request parsing and the model-server settings, without a server (fast)."""

from __future__ import annotations

import base64

import pytest
from handler import parse_request, request_body

from fashion_clip.errors import InvalidInput
from fashion_clip.settings import ModelServerSettings, SettingsError, load_model_server_settings

PNG_HEAD = b"\x89PNG\r\n\x1a\n rest"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (PNG_HEAD, ("image", PNG_HEAD)),
        (bytearray(PNG_HEAD), ("image", PNG_HEAD)),
        ({"b64": base64.b64encode(PNG_HEAD).decode()}, ("image", PNG_HEAD)),
        (b'{"b64": "' + base64.b64encode(PNG_HEAD) + b'"}', ("image", PNG_HEAD)),
        ({"text": "red dress"}, ("text", "red dress")),
        (b' {"text": "red dress"}', ("text", "red dress")),
        ('{"text": "red dress"}', ("text", "red dress")),
    ],
    ids=["bytes", "bytearray", "dict-b64", "json-bytes-b64", "dict-text", "json-bytes-text", "json-str-text"],
)
def test_every_form_torchserve_hands_over_parses(body, expected):
    assert parse_request(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": ""}, "'text' must be a non-empty string."),
        ({"text": 3}, "'text' must be a non-empty string."),
        ({"b64": 3}, "'b64' must be a base64 string."),
        ({}, "The JSON object needs a 'b64' (image) or a 'text' field."),
        ([1, 2], "Send raw image bytes, or a JSON object with 'b64' or 'text'."),
        ("red dress", 'Send a text query as JSON {"text": "..."} and an image as raw bytes.'),
    ],
)
def test_malformed_requests_are_invalid_input(body, message):
    with pytest.raises(InvalidInput) as caught:
        parse_request(body)
    assert caught.value.message == message
    assert (caught.value.code, caught.value.status) == ("invalid_input", 400)


def test_broken_json_is_invalid_input():
    with pytest.raises(InvalidInput) as caught:
        parse_request(b'{"text": ')
    assert caught.value.message.startswith("The body looks like JSON but does not parse: ")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"data": b"x"}, b"x"),
        ({"body": b"y"}, b"y"),
        ({"data": None, "body": b"z"}, b"z"),
        ({"file": b"w"}, b"w"),
    ],
)
def test_request_body_finds_the_payload(row, expected):
    assert request_body(row) == expected


def test_a_request_without_a_body_is_invalid_input():
    with pytest.raises(InvalidInput):
        request_body({"a": b"1", "b": b"2"})


def test_settings_defaults(monkeypatch):
    for name in ("MODEL_DIR", "MODEL_NAME", "PRECISION", "THREADS"):
        monkeypatch.delenv(f"MODEL_SERVER_{name}", raising=False)
    settings = load_model_server_settings()
    assert settings == ModelServerSettings(model_dir=None, model_name="clip", precision="auto", threads=0)


def test_settings_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_SERVER_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("MODEL_SERVER_PRECISION", "int8")
    monkeypatch.setenv("MODEL_SERVER_THREADS", "2")
    monkeypatch.setenv("MODEL_SERVER_MODEL_NAME", "clip-b32")
    settings = load_model_server_settings()
    assert (settings.model_dir, settings.precision, settings.threads, settings.model_name) == (
        tmp_path,
        "int8",
        2,
        "clip-b32",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("PRECISION", "fp16"), ("THREADS", "-1"), ("THREADS", "many"), ("MODEL_NAME", "a/b")],
)
def test_a_bad_setting_fails_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(f"MODEL_SERVER_{name}", value)
    with pytest.raises(SettingsError) as caught:
        load_model_server_settings()
    assert str(caught.value).startswith(f"Invalid model server settings: MODEL_SERVER_{name}: ")
    assert repr(value) in str(caught.value)
