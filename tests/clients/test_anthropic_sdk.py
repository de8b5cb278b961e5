"""The official `anthropic` package against the gateway (demo mode, fake Kiro upstream)."""
import anthropic
import pytest

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}


@pytest.fixture()
def client(gateway_url, api_key):
    return anthropic.Anthropic(base_url=gateway_url, api_key=api_key, max_retries=0, timeout=30)


def test_non_streamed_text(client):
    reply = client.messages.create(
        model="claude-sonnet-4-5-20250929",
        max_tokens=1024,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Say hello to Ada"}],
    )
    assert reply.type == "message" and reply.role == "assistant"
    assert reply.model == "claude-sonnet-4-5-20250929"
    assert reply.stop_reason == "end_turn"
    assert reply.content[0].type == "text"
    assert "Say hello to Ada" in reply.content[0].text
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.usage.cache_read_input_tokens == 0
    assert reply.usage.cache_creation_input_tokens == 0


def test_streamed_text(client):
    with client.messages.stream(
        model="claude-haiku-4-5-20251001",
        max_tokens=1024,
        messages=[{"role": "user", "content": "[fake:multibyte] stream please"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    text = "".join(pieces)
    assert len(pieces) > 1
    assert "\ufffd" not in text
    assert any(ord(c) > 0x3000 for c in text), text
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == text
    assert final.usage.output_tokens > 0


def test_streamed_thinking(client):
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "[fake:thinking] What is six times seven?"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds and "text" in kinds
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think about this carefully."
    assert final.content[0].signature
    assert final.content[1].text.strip() == "The answer is 42."


def test_tool_use_round_trip(client):
    question = {"role": "user", "content": "[fake:tool_call] What is the weather in Paris?"}
    first = client.messages.create(
        model="claude-sonnet-4.5", max_tokens=1024, tools=[WEATHER_TOOL], messages=[question]
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather"
    assert isinstance(call.input["city"], str) and call.input["city"]

    with client.messages.stream(
        model="claude-sonnet-4.5",
        max_tokens=1024,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"}],
            },
        ],
    ) as stream:
        answer = stream.get_final_message()
    assert answer.stop_reason == "end_turn"
    assert "18 degrees and sunny" in answer.content[0].text


def test_streamed_tool_use_input_is_parsed(client):
    with client.messages.stream(
        model="claude-sonnet-4.5",
        max_tokens=1024,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "[fake:tool_call] weather?"}],
    ) as stream:
        final = stream.get_final_message()
    call = next(block for block in final.content if block.type == "tool_use")
    assert final.stop_reason == "tool_use"
    assert isinstance(call.input["city"], str)


def test_stop_sequence_is_reported(client):
    reply = client.messages.create(
        model="claude-sonnet-4.5",
        max_tokens=1024,
        stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "[fake:text:alpha beta STOP gamma]"}],
    )
    assert reply.stop_reason == "stop_sequence"
    assert reply.stop_sequence == "STOP"
    assert reply.content[0].text == "alpha beta "


def test_count_tokens(client):
    base = dict(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "How long is this?"}])
    plain = client.messages.count_tokens(**base).input_tokens
    with_tools = client.messages.count_tokens(**base, system="Be careful. " * 30, tools=[WEATHER_TOOL])
    assert plain > 0
    assert with_tools.input_tokens > plain


def test_models_list(client):
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert "claude-sonnet-4.5" in ids and "auto-kiro" in ids
    assert all(m.type == "model" and m.display_name for m in models)


def test_bad_key_is_authentication_error(gateway_url):
    bad = anthropic.Anthropic(base_url=gateway_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-sonnet-4.5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="gpt-nonexistent", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert "gpt-nonexistent" in str(info.value)


def test_bad_request_names_the_problem(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="claude-sonnet-4.5", max_tokens=10, messages=[])
    assert "messages" in str(info.value)


def test_prompt_too_long_is_a_bad_request(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="claude-sonnet-4.5",
            max_tokens=10,
            messages=[{"role": "user", "content": "[fake:status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD]"}],
        )
    assert "prompt is too long" in str(info.value)
