"""The official `openai` Python SDK's Responses API against a real Chorus node.

Three aliases, one per path a Responses request can take: `native` passes
through to an upstream that speaks the Responses API (`responses = true`),
`chat` is translated to chat completions, `claude` to chat completions and
on to Anthropic's Messages API. Each test asserts what the recording
upstream received and what the SDK got back.
"""

import json
import urllib.request

import openai
import pytest

from conftest import upstream_and_node

KEY = "sk-chorus-responses-test-key"
ALIASES = ["native", "chat", "claude"]


def config(upstream_addr):
    return f"""
[[providers]]
name = "native"
format = "openai"
responses = true
base_url = "http://{upstream_addr}/v1"

[[providers]]
name = "chat"
format = "openai"
base_url = "http://{upstream_addr}/v1"

[[providers]]
name = "claude"
format = "anthropic"
base_url = "http://{upstream_addr}/v1"
api_key = "sk-ant-test"

[[providers]]
name = "native-cut"
format = "openai"
responses = true
base_url = "http://{upstream_addr}/v1"
headers = {{ "x-mock-fault" = "cut", "x-mock-cut-after" = "3" }}

[[providers]]
name = "chat-cut"
format = "openai"
base_url = "http://{upstream_addr}/v1"
headers = {{ "x-mock-fault" = "cut", "x-mock-cut-after" = "3" }}

[[models]]
alias = "native"
deployments = [{{ provider = "native", model = "gpt-5-mini" }}]

[[models]]
alias = "chat"
deployments = [{{ provider = "chat", model = "gpt-4o-mini" }}]

[[models]]
alias = "claude"
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
alias = "native-cut"
max_retries = 0
deployments = [{{ provider = "native-cut", model = "gpt-5-mini" }}]

[[models]]
alias = "chat-cut"
max_retries = 0
deployments = [{{ provider = "chat-cut", model = "gpt-4o-mini" }}]

[[keys]]
name = "sdk"
key = "{KEY}"
"""


UPSTREAM_MODEL = {"native": "gpt-5-mini", "chat": "gpt-4o-mini", "claude": "claude-sonnet-4-5"}

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def node():
    with upstream_and_node(config) as (base_url, upstream_addr):
        yield base_url, upstream_addr


@pytest.fixture
def client(node):
    return openai.OpenAI(base_url=node[0], api_key=KEY, max_retries=0)


def last_request(node):
    with urllib.request.urlopen(f"http://{node[1]}/mock/last-request") as response:
        return json.load(response)


def test_a_response_passes_through_to_an_upstream_that_speaks_the_api(client, node):
    sent = {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hi"}]}],
        "instructions": "Be brief.",
        "max_output_tokens": 64,
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    response = client.responses.create(model="native", **sent, extra_body={"x_vendor": {"k": 1}})
    received = last_request(node)["body"]
    assert received == {**sent, "x_vendor": {"k": 1}, "model": "gpt-5-mini"}
    # The upstream's own response, named by the alias.
    assert response.id.startswith("resp_mock")
    assert response.model == "native"
    assert response.status == "completed"
    assert response.output_text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_a_response_is_translated_for_other_upstreams(client, node, model):
    response = client.responses.create(
        model=model, input="Say hi", instructions="Be brief.", max_output_tokens=64
    )
    received = last_request(node)["body"]
    assert received["model"] == UPSTREAM_MODEL[model]
    if model == "chat":
        assert received["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
        ]
        assert received["max_completion_tokens"] == 64
    else:
        assert received["system"] == [{"type": "text", "text": "Be brief."}]
        assert received["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
        assert received["max_tokens"] == 64
    assert response.id.startswith("resp_") and not response.id.startswith("resp_mock")
    assert response.object == "response"
    assert response.model == model
    assert response.status == "completed"
    assert response.instructions == "Be brief."
    assert response.output[0].type == "message"
    assert response.output_text
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


@pytest.mark.parametrize("model", ALIASES)
def test_a_stream_carries_the_full_event_sequence(client, model):
    with client.responses.stream(model=model, input="Say hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in ["response.output_item.added", "response.content_part.added",
                 "response.output_text.done", "response.output_item.done"]:
        assert kind in kinds
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas and final.output_text == deltas
    assert final.model == model
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ALIASES)
@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_round_trip(client, node, model, stream):
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        with client.responses.stream(model=model, input=asked, tools=[WEATHER]) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(model=model, input=asked, tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "weather"
    assert "city" in json.loads(calls[0].arguments)
    follow_up = asked + [item.model_dump(exclude_none=True) for item in first.output] + [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"}
    ]
    second = client.responses.create(model=model, input=follow_up, tools=[WEATHER])
    received = last_request(node)["body"]
    if model == "native":
        assert received["input"][-1] == follow_up[-1]
    elif model == "chat":
        assert received["messages"][-1] == {
            "role": "tool", "tool_call_id": calls[0].call_id, "content": "18C and sunny"}
        assert received["messages"][-2]["tool_calls"][0]["id"] == calls[0].call_id
    else:
        result = received["messages"][-1]["content"][-1]
        assert result["type"] == "tool_result" and result["tool_use_id"] == calls[0].call_id
    assert second.output_text
    assert not [item for item in second.output if item.type == "function_call"]


def test_a_broken_translated_stream_ends_failed_never_completed(client):
    with client.responses.stream(model="chat-cut", input="Say hi") as stream:
        kinds = [event.type for event in stream]
    assert "response.output_text.delta" in kinds
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds


def test_a_broken_passed_through_stream_raises(client):
    kinds = []
    with pytest.raises(openai.APIError):
        with client.responses.stream(model="native-cut", input="Say hi") as stream:
            for event in stream:
                kinds.append(event.type)
    assert "response.output_text.delta" in kinds
    assert "response.completed" not in kinds


def test_what_chat_completions_cannot_do_is_a_400_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="x", tools=[{"type": "web_search"}])
    assert refused.value.body["param"] == "tools"
    assert "web_search" in refused.value.body["message"]


@pytest.mark.parametrize("model", ALIASES)
def test_the_headers_of_the_upstreams_api_are_forwarded_on_every_path(client, node, model):
    sent = {"openai-beta": "responses=v1", "anthropic-beta": "prompt-caching-2024-07-31"}
    client.responses.create(model=model, input="Say hi", extra_headers=sent)
    received = last_request(node)["headers"]
    # Each upstream gets the headers its own API defines, and only those.
    own = "anthropic-beta" if model == "claude" else "openai-beta"
    other = "openai-beta" if model == "claude" else "anthropic-beta"
    assert received[own] == sent[own]
    assert other not in received


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_with_tools_on_anthropic_round_trips_the_signed_thinking(client, node, stream):
    """`reasoning.effort` asks an Anthropic deployment to think; the
    thinking comes back as a reasoning item whose summary is its text and
    whose `encrypted_content` carries the signed blocks, which the next
    turn's input sends back ahead of the tool call, as Anthropic (and the
    mock, as strictly) requires."""
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    request = dict(model="claude", tools=[WEATHER], reasoning={"effort": "low"}, max_output_tokens=2048)
    if stream:
        with client.responses.stream(input=asked, **request) as events:
            kinds = [event.type for event in events]
            first = events.get_final_response()
        assert "response.reasoning_summary_text.delta" in kinds
    else:
        first = client.responses.create(input=asked, **request)
    received = last_request(node)["body"]
    assert received["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    reasoning, call = first.output[0], first.output[-1]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text
    assert reasoning.encrypted_content
    assert call.type == "function_call"
    follow_up = asked + [item.model_dump(exclude_none=True) for item in first.output] + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}]
    second = client.responses.create(input=follow_up, **request)
    assistant = last_request(node)["body"]["messages"][1]["content"]
    assert assistant[0]["type"] == "thinking" and assistant[0]["signature"]
    assert assistant[0]["thinking"] == reasoning.summary[0].text
    assert assistant[-1]["type"] == "tool_use"
    assert second.output_text
