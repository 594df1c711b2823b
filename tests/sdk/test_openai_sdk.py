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

[[models]]
alias = "fast"
deployments = [{{ provider = "up", model = "gpt-4o-mini" }}]

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
def node():
    with upstream_and_node(config) as (base_url, _):
        yield base_url


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
    assert [m.id for m in client.models.list()] == ["fast", "broken-stream", "limited", "priced", "embed", "instruct"]


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
