"""The official `openai` package against the gateway (demo mode, fake Kiro upstream)."""
import base64
import json
import struct
import zlib

import openai
import pytest


@pytest.fixture()
def client(gateway_url, api_key):
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=api_key, max_retries=0, timeout=30)


def _png_1x1() -> str:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    raw += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_lists_models(client):
    ids = [m.id for m in client.models.list()]
    assert "claude-sonnet-4.5" in ids
    assert "auto-kiro" in ids


def test_non_streamed_text(client):
    reply = client.chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to Ada"}],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert "Say hello to Ada" in choice.message.content
    assert reply.model == "claude-sonnet-4.5"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_streamed_text_arrives_in_pieces(client):
    stream = client.chat.completions.create(
        model="claude-haiku-4-5-20251001",
        messages=[{"role": "user", "content": "[fake:multibyte] stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    text = "".join(pieces)
    assert len(pieces) > 1
    assert "\ufffd" not in text
    assert any(ord(c) > 0x3000 for c in text), text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_streamed_tool_call_assembles_valid_json(client):
    stream = client.chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[{"role": "user", "content": "[fake:tool_call] What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                if call.id:
                    entry["id"] = call.id
                if call.function and call.function.name:
                    entry["name"] = call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    assert finish == "tool_calls"
    assert len(calls) == 1
    call = calls[0]
    assert call["id"] and call["name"] == "get_weather"
    args = json.loads(call["arguments"])
    assert isinstance(args.get("city"), str) and args["city"]


def test_tool_result_round_trip(client):
    first = client.chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[{"role": "user", "content": "[fake:tool_call] weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]
    follow_up = client.chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": message.content, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow_up.choices[0].finish_reason == "stop"
    assert follow_up.choices[0].message.content


def test_image_input(client):
    reply = client.chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "[fake:image_count] how many images?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png_1x1()}},
                ],
            }
        ],
    )
    assert "1" in reply.choices[0].message.content


def test_bad_key_is_authentication_error(gateway_url):
    bad = openai.OpenAI(base_url=gateway_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="claude-sonnet-4.5", messages=[{"role": "user", "content": "hi"}])


def test_unknown_model_is_a_clear_error(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}])
    assert "gpt-nonexistent" in str(info.value)


def test_bad_request_names_the_field(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-sonnet-4.5", messages=[])
    assert "messages" in str(info.value)
