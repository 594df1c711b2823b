"""Anthropic both ways, with the official SDKs and nothing changed in them:
the `anthropic` SDK through `POST /v1/messages` to an OpenAI-format upstream,
and the `openai` SDK to an Anthropic-format upstream (mock-upstream's
`/v1/messages`, which checks requests as strictly as Anthropic does)."""

import json
import urllib.request

import anthropic
import openai
import pytest

from conftest import upstream_and_node

KEY = "sk-chorus-anthropic-sdk-key"
WEATHER = {
    "name": "weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
OPENAI_WEATHER = {
    "type": "function",
    "function": {"name": "weather", "description": WEATHER["description"], "parameters": WEATHER["input_schema"]},
}


def config(upstream_addr):
    return f"""
[[providers]]
name = "up"
format = "openai"
base_url = "http://{upstream_addr}/v1"

[[providers]]
name = "claude"
format = "anthropic"
base_url = "http://{upstream_addr}/v1"
api_key = "sk-ant-upstream-secret"
max_tokens = 1024

[[providers]]
name = "claude-overloaded"
format = "anthropic"
base_url = "http://{upstream_addr}/v1"
headers = {{ "x-mock-fault" = "overloaded" }}

[[models]]
alias = "gpt"
deployments = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "claude"
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
alias = "overloaded"
max_retries = 0
deployments = [{{ provider = "claude-overloaded", model = "claude-sonnet-4-5" }}]

[[keys]]
name = "sdk"
key = "{KEY}"
"""


@pytest.fixture(scope="module")
def node():
    with upstream_and_node(config) as running:
        yield running


@pytest.fixture
def claude_client(node):
    """The anthropic SDK, pointed at the node (it adds /v1/messages)."""
    return anthropic.Anthropic(base_url=node[0].removesuffix("/v1"), api_key=KEY, max_retries=0)


@pytest.fixture
def openai_client(node):
    return openai.OpenAI(base_url=node[0], api_key=KEY, max_retries=0)


def last_upstream_request(node):
    with urllib.request.urlopen(f"http://{node[1]}/mock/last-request") as response:
        return json.load(response)


# The anthropic SDK through /v1/messages.


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_messages_create(claude_client, model):
    message = claude_client.messages.create(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello from the anthropic SDK"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert len(message.content[0].text.split()) == 16
    assert message.usage.output_tokens == 16
    assert message.usage.input_tokens > 0


def test_a_bearer_token_works_too(node):
    client = anthropic.Anthropic(base_url=node[0].removesuffix("/v1"), auth_token=KEY, max_retries=0)
    message = client.messages.create(model="gpt", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert len(message.content[0].text.split()) == 8


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_messages_stream(claude_client, model):
    request = dict(model=model, max_tokens=12, messages=[{"role": "user", "content": "Stream please"}])
    whole = claude_client.messages.create(**request)
    with claude_client.messages.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_message()
    text = "".join(event.text for event in events if event.type == "text")
    assert text == whole.content[0].text
    # The prompt's size is known from the first event, translated or not.
    assert events[0].type == "message_start" and events[0].message.usage.input_tokens > 0
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 12
    assert final.usage.input_tokens == whole.usage.input_tokens


# Extended thinking with tools and prompt caching, passed through to an
# Anthropic upstream: what the SDK sends arrives as it was sent but for the
# model, and the signed thinking block comes back, is sent back with the
# tool result, and the cached prefix is read on the second turn.


def sent_as_json(value):
    return json.loads(json.dumps(value))


def thinking_turn(claude_client, request, stream):
    if not stream:
        return claude_client.messages.create(**request), []
    with claude_client.messages.stream(**request) as events:
        kinds = [event.type for event in events]
        return events.get_final_message(), kinds


@pytest.mark.parametrize("stream", [False, True])
def test_a_thinking_and_tool_use_loop_passes_through(claude_client, node, stream):
    history = [{"role": "user", "content": "What is the weather in Paris?"}]
    request = dict(
        model="claude",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        system=[{"type": "text", "text": "You are a terse assistant. " * 60, "cache_control": {"type": "ephemeral"}}],
        tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": f"session-{stream}"},
        messages=history,
    )
    first, kinds = thinking_turn(claude_client, request, stream)
    received = last_upstream_request(node)["body"]
    received.pop("stream", None)
    assert received == {**sent_as_json(request), "model": "claude-sonnet-4-5"}
    assert first.model == "claude"
    assert first.stop_reason == "tool_use"
    thinking, tool = first.content[0], first.content[-1]
    assert thinking.type == "thinking" and thinking.signature and thinking.thinking
    assert tool.type == "tool_use" and tool.name == "weather"
    if stream:
        assert "thinking" in kinds and "signature" in kinds
    assert first.usage.cache_creation_input_tokens > 300 or first.usage.cache_read_input_tokens > 300

    history.append({"role": "assistant", "content": [block.model_dump(mode="json", exclude_none=True) for block in first.content]})
    history.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "Sunny, 21 °C"}]})
    second, _ = thinking_turn(claude_client, request, stream)
    received = last_upstream_request(node)["body"]
    received.pop("stream", None)
    assert received == {**sent_as_json(request), "model": "claude-sonnet-4-5"}
    assert received["messages"][1]["content"][0]["signature"] == thinking.signature
    assert second.stop_reason == "end_turn"
    assert second.content[-1].type == "text" and second.content[-1].text
    assert second.usage.cache_read_input_tokens > 300


def test_tool_use_and_its_result(claude_client):
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = claude_client.messages.create(model="gpt", max_tokens=64, tools=[WEATHER], messages=asked)
    assert message.stop_reason == "tool_use"
    (call,) = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "weather" and call.input == {"city": "chorus"}
    # The tool's result goes back, and the model answers in text.
    answered = asked + [
        {"role": "assistant", "content": message.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    reply = claude_client.messages.create(model="gpt", max_tokens=5, tools=[WEATHER], messages=answered)
    assert reply.stop_reason == "end_turn"
    assert len(reply.content[0].text.split()) == 5


def test_streamed_tool_use(claude_client):
    with claude_client.messages.stream(
        model="gpt",
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "weather"},
        messages=[{"role": "user", "content": "Weather?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(block.type, block.name, block.input) for block in final.content] == [("tool_use", "weather", {"city": "chorus"})]


def test_count_tokens(claude_client):
    short = claude_client.messages.count_tokens(model="gpt", messages=[{"role": "user", "content": "hi"}])
    longer = claude_client.messages.count_tokens(
        model="gpt", tools=[WEATHER], messages=[{"role": "user", "content": "hi " * 50}]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        claude_client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "x"}])


def test_anthropic_errors_for_anthropic_clients(claude_client, node):
    bad = anthropic.Anthropic(base_url=node[0].removesuffix("/v1"), api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        bad.messages.create(model="gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude_client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude_client.messages.create(
            model="gpt", max_tokens=5, messages=[{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]
        )
    assert "document" in raised.value.body["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as raised:
        claude_client.messages.create(model="overloaded", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 529
    assert raised.value.body["error"]["type"] == "overloaded_error"


# The openai SDK to an Anthropic-format upstream.


def test_chat_completion_from_anthropic(openai_client, node):
    completion = openai_client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello from the openai SDK"}],
        temperature=0,
        stop=["never"],
    )
    assert completion.model == "claude"
    assert completion.choices[0].finish_reason == "stop"
    assert len(completion.choices[0].message.content.split()) == 16
    assert completion.usage.completion_tokens == 16
    sent = last_upstream_request(node)
    assert sent["x-api-key"] == "sk-ant-upstream-secret"
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent["authorization"] is None
    assert sent["body"]["model"] == "claude-sonnet-4-5"
    assert sent["body"]["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["body"]["max_tokens"] == 1024, "the provider's default"
    assert sent["body"]["stop_sequences"] == ["never"]


def test_chat_stream_from_anthropic(openai_client):
    request = dict(model="claude", max_tokens=10, messages=[{"role": "user", "content": "Stream"}])
    whole = openai_client.chat.completions.create(**request)
    chunks = list(openai_client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 10
    hidden = list(openai_client.chat.completions.create(**request, stream=True))
    assert all(c.usage is None for c in hidden), "usage only for clients that ask"


def test_chat_tools_from_anthropic(openai_client, node):
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = openai_client.chat.completions.create(model="claude", tools=[OPENAI_WEATHER], tool_choice="required", messages=asked)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "chorus"}
    assert last_upstream_request(node)["body"]["tool_choice"] == {"type": "any"}
    answered = asked + [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    reply = openai_client.chat.completions.create(model="claude", tools=[OPENAI_WEATHER], messages=answered, max_tokens=4)
    assert reply.choices[0].finish_reason == "stop"
    assert len(reply.choices[0].message.content.split()) == 4
    turns = last_upstream_request(node)["body"]["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    chunks = list(openai_client.chat.completions.create(model="claude", tools=[OPENAI_WEATHER], messages=asked, stream=True))
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments or "" for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert json.loads(arguments) == {"city": "chorus"}


def test_overloaded_anthropic_is_a_503_for_openai_clients(openai_client):
    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="overloaded", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 503
