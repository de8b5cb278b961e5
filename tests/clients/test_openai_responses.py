"""The official `openai` package's Responses API (`client.responses.*`) against the gateway
(demo mode, fake Kiro upstream): plain and streamed text, a tool round trip, the stream helper's
final response, the output limit, an error before the stream, structured output and stored
responses with `previous_response_id`."""
import openai
import pydantic
import pytest

MODEL = "claude-sonnet-4.5"

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture()
def client(gateway_url, api_key):
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=api_key, max_retries=0, timeout=30)


def test_create_text(client):
    response = client.responses.create(model=MODEL, input="[fake:text:PONG]", instructions="Reply tersely.")
    assert response.status == "completed"
    assert response.output_text == "PONG"
    assert response.id.startswith("resp_")
    assert response.instructions == "Reply tersely."
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.usage.output_tokens > 0
    assert response.usage.input_tokens_details.cached_tokens == 0


def test_tools_with_a_function_call_output_round_trip(client):
    question = "[fake:tool_call] Weather in Paris? Use the tool."
    first = client.responses.create(model=MODEL, input=question, tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather"
    assert call.call_id
    second = client.responses.create(
        model=MODEL,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": question},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 degrees"},
        ],
    )
    assert second.status == "completed"
    assert "sunny, 21 degrees" in second.output_text


def test_stream_helper_builds_the_final_response(client):
    with client.responses.stream(model=MODEL, input="[fake:text:Hello from the stream helper]") as stream:
        kinds = []
        deltas = []
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "".join(deltas) == final.output_text == "Hello from the stream helper"
    assert final.status == "completed"
    assert final.usage.total_tokens > 0


def test_stream_helper_with_a_tool_call(client):
    with client.responses.stream(model=MODEL, input="[fake:tool_call] weather please", tools=[WEATHER]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "get_weather"
    assert "city" in call.arguments


def test_max_output_tokens_reached_is_incomplete(client):
    response = client.responses.create(model=MODEL, input="[fake:long:300]", max_output_tokens=5)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    events = list(client.responses.create(model=MODEL, input="[fake:long:300]", max_output_tokens=5, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert all(event.type != "response.completed" for event in events)


def test_an_error_before_the_stream_is_an_api_error(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="[fake:status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD]", stream=True)
    assert raised.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model="no-such-model", input="hi")
    assert raised.value.code == "model_not_found"


def test_a_failure_mid_stream_is_response_failed(client):
    events = list(
        client.responses.create(
            model=MODEL, input="[fake:exception_mid_stream:InternalServerException]", stream=True
        )
    )
    assert events[0].type == "response.created"
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code


class City(pydantic.BaseModel):
    city: str
    country: str


def test_structured_output_parses(client):
    parsed = client.responses.parse(
        model=MODEL,
        input='[fake:text:```json\n{"city": "Paris", "country": "France"}\n```]',
        text_format=City,
    )
    assert parsed.output_parsed == City(city="Paris", country="France")


def test_previous_response_id_retrieve_and_delete(client):
    first = client.responses.create(model=MODEL, input="The secret word is PAPAYA.")
    assert first.store is True
    kept = None
    for _ in range(100):
        try:
            kept = client.responses.retrieve(first.id)
            break
        except openai.NotFoundError:
            import time

            time.sleep(0.02)
    assert kept is not None and kept.id == first.id
    assert kept.output_text == first.output_text
    second = client.responses.create(model=MODEL, input="Say it again.", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.status == "completed"
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="again", previous_response_id=first.id)
