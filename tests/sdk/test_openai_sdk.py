"""The official `openai` Python SDK against a real Chorus node.

Starts `mock-upstream` and `chorus` from CHORUS_BIN_DIR on ephemeral ports and
points the SDK's base_url at the node, unchanged otherwise.
"""

import json
import time
import urllib.request

import openai
import pytest

from conftest import upstream_and_node

KEY = "sk-chorus-sdk-test-key"
ADMIN_TOKEN = "admin-sdk-test-0123456789"


def config(upstream_addr):
    return f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[providers]]
name = "up"
format = "openai"
base_url = "http://{upstream_addr}/v1"
timeout_ms = 2000

[[providers]]
name = "cut"
format = "openai"
base_url = "http://{upstream_addr}/v1"
headers = {{ "x-mock-fault" = "cut", "x-mock-cut-after" = "3" }}

[[providers]]
name = "limited"
format = "openai"
base_url = "http://{upstream_addr}/v1"
headers = {{ "x-mock-fault" = "429" }}

[[providers]]
name = "claude"
format = "anthropic"
base_url = "http://{upstream_addr}/v1"
api_key = "sk-ant-test"

[[models]]
alias = "fast"
deployments = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "claude"
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
alias = "broken-stream"
deployments = [{{ provider = "cut", model = "gpt-4o-mini" }}]

[[models]]
alias = "limited"
max_retries = 0
deployments = [{{ provider = "limited", model = "gpt-4o-mini" }}]

[[models]]
alias = "priced"
deployments = [{{ provider = "up", model = "gpt-4o", input_per_mtok = 1000, output_per_mtok = 2000 }}]

[[models]]
alias = "embed"
deployments = [{{ provider = "up", model = "text-embedding-3-small" }}]

[[models]]
alias = "instruct"
deployments = [{{ provider = "up", model = "gpt-3.5-turbo-instruct" }}]

[[keys]]
name = "sdk"
key = "{KEY}"
"""


@pytest.fixture(scope="module")
def node_and_upstream():
    with upstream_and_node(config) as (base_url, upstream_addr):
        yield base_url, upstream_addr


@pytest.fixture(scope="module")
def node(node_and_upstream):
    return node_and_upstream[0]


@pytest.fixture
def client(node):
    return openai.OpenAI(base_url=node, api_key=KEY, max_retries=0)


def test_sync_completion(client):
    completion = client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "Hello from the SDK"}],
        seed=7,
    )
    assert completion.model == "fast"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens == 16
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 16


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 16
    assert all(c.model == "fast" for c in chunks)
    assert chunks[-1].usage.completion_tokens == 16


def completion_tokens_counted(base_url):
    """The cluster-wide completion tokens of `fast`'s deployment."""
    request = urllib.request.Request(
        base_url + "/cluster", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request) as response:
        view = json.load(response)
    return view["counters"].get("up/gpt-4o-mini", {}).get("completion_tokens", 0)


def test_streaming_by_default_hides_usage_but_counts_it(client, node):
    before = completion_tokens_counted(node)
    stream = client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Count me"}], stream=True
    )
    chunks = list(stream)
    assert chunks and all(c.usage is None and c.choices for c in chunks)
    deadline = time.monotonic() + 5
    while completion_tokens_counted(node) != before + 16:
        assert time.monotonic() < deadline, "the stream's tokens were never counted"
        time.sleep(0.05)


def test_models_list(client):
    assert [m.id for m in client.models.list()] == [
        "fast", "claude", "broken-stream", "limited", "priced", "embed", "instruct"]


def test_embeddings(client):
    # The SDK asks for base64 and decodes it to floats itself.
    result = client.embeddings.create(model="embed", input=["first", "second"], dimensions=8)
    assert result.model == "embed"
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 8 for item in result.data)
    assert abs(sum(x * x for x in result.data[0].embedding) - 1) < 1e-4
    assert result.usage.prompt_tokens > 0


def test_legacy_completions(client):
    whole = client.completions.create(model="instruct", prompt="Once upon a time", max_tokens=5)
    assert whole.model == "instruct"
    assert whole.usage.completion_tokens == 5
    stream = client.completions.create(model="instruct", prompt="Once upon a time", max_tokens=5, stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream if chunk.choices) == whole.choices[0].text


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "model_not_found"


def test_wrong_key_is_an_authentication_error(node):
    bad = openai.OpenAI(base_url=node, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])


def test_upstream_rate_limit_reaches_the_sdk(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "x"}])
    assert raised.value.response.headers["retry-after"] == "1"


def test_a_broken_stream_raises_instead_of_finishing(client):
    stream = client.chat.completions.create(
        model="broken-stream", messages=[{"role": "user", "content": "x"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert all(c.choices[0].finish_reason is None for c in received)
    assert "broke off" in str(raised.value)


def create_key(base_url, **fields):
    """A virtual key made through the admin API; its value."""
    request = urllib.request.Request(
        base_url.removesuffix("/v1") + "/admin/keys",
        data=json.dumps(fields).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["key"]


def test_a_key_over_its_rpm_raises_rate_limit_error_with_the_headers(node):
    limited = openai.OpenAI(base_url=node, api_key=create_key(node, name="sdk-rpm", rpm=1), max_retries=0)
    first = limited.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "x"}]
    )
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as raised:
        limited.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    headers = raised.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert raised.value.code == "rate_limit_exceeded"


def test_a_spent_budget_is_a_402_with_insufficient_quota(node):
    # Without max_tokens, 4,096 output tokens at USD 2,000 per million are
    # reserved: far over a budget of one cent.
    poor = openai.OpenAI(base_url=node, api_key=create_key(node, name="sdk-budget", budget_daily_usd=0.01), max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        poor.chat.completions.create(model="priced", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 402
    assert raised.value.type == "insufficient_quota"


# Reasoning and prompt caching translated to an Anthropic upstream, which
# checks thinking as strictly as Anthropic does: `reasoning_effort` asks for
# a thinking budget, the thinking comes back as `reasoning_content` with its
# signed `thinking_blocks`, and those go back ahead of the tool call on the
# next turn; `cache_control` on a system part reaches Anthropic, whose
# cache is read on the second turn.

WEATHER_TOOL = {"type": "function", "function": {
    "name": "weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def upstream_body(upstream_addr):
    with urllib.request.urlopen(f"http://{upstream_addr}/mock/last-request") as response:
        return json.load(response)["body"]


def reasoning_turn(client, messages, stream):
    request = dict(model="claude", messages=messages, tools=[WEATHER_TOOL],
                   reasoning_effort="low", max_completion_tokens=2048)
    if not stream:
        completion = client.chat.completions.create(**request)
        message = completion.choices[0].message
        extra = message.model_extra
        return message, extra.get("reasoning_content"), extra.get("thinking_blocks"), completion.usage
    chunks = list(client.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}))
    reasoning, blocks, calls, text = "", [], {}, ""
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += delta.model_extra.get("reasoning_content") or ""
        blocks += delta.model_extra.get("thinking_blocks") or []
        text += delta.content or ""
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": call.id, "name": call.function.name, "arguments": ""})
            entry["arguments"] += call.function.arguments or ""
    message = openai.types.chat.ChatCompletionMessage(
        role="assistant", content=text or None,
        tool_calls=[{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls.values()] or None)
    return message, reasoning, blocks, chunks[-1].usage


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_thinks_on_anthropic_and_the_signed_blocks_go_back(client, node_and_upstream, stream):
    upstream_addr = node_and_upstream[1]
    system = {"type": "text", "text": f"You are a terse assistant ({stream}). " * 60,
              "cache_control": {"type": "ephemeral"}}
    history = [{"role": "system", "content": [system]},
               {"role": "user", "content": "What is the weather in Paris?"}]
    first, reasoning, blocks, _ = reasoning_turn(client, history, stream)
    received = upstream_body(upstream_addr)
    assert received["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert received["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert reasoning and blocks and blocks[0]["type"] == "thinking" and blocks[0]["signature"]
    assert blocks[0]["thinking"] == reasoning
    call = first.tool_calls[0]
    history.append({**first.model_dump(exclude_none=True), "thinking_blocks": blocks})
    history.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"})
    second, _, _, usage = reasoning_turn(client, history, stream)
    received = upstream_body(upstream_addr)
    assert received["messages"][1]["content"][0] == blocks[0]
    assert second.content
    assert usage.prompt_tokens_details.cached_tokens > 300
