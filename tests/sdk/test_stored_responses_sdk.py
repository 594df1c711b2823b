"""Stored responses and conversations through the official `openai` SDK on
a two-node Chorus cluster: a response made through one node is continued
(`previous_response_id`), read and deleted through the other, and a
conversation made on one gathers turns made on both.

`chat` is translated to chat completions; `native` passes through to an
upstream that speaks the Responses API, whose answers Chorus stores all
the same. Each test asserts what the recording upstream received.
"""

import json
import urllib.request

import openai
import pytest

from conftest import upstream_and_cluster
# The same aliases and key as the single-node suite.
from test_responses_sdk import KEY, config


@pytest.fixture(scope="module")
def cluster():
    with upstream_and_cluster(config, ["a", "b"]) as (urls, upstream_addr):
        yield urls, upstream_addr


@pytest.fixture
def clients(cluster):
    return [openai.OpenAI(base_url=url, api_key=KEY, max_retries=0) for url in cluster[0]]


def received(cluster):
    with urllib.request.urlopen(f"http://{cluster[1]}/mock/last-request") as response:
        return json.load(response)["body"]


def create(client, stream, **request):
    if not stream:
        return client.responses.create(**request)
    with client.responses.stream(**request) as events:
        return events.get_final_response()


@pytest.mark.parametrize("model", ["chat", "native"])
@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_continues_through_the_other_node(clients, cluster, model, stream):
    a, b = clients
    first = create(a, stream, model=model, input="My name is Ada.")
    second = create(b, stream, model=model, input="What is my name?", previous_response_id=first.id)
    assert second.output_text
    upstream = received(cluster)
    if model == "chat":
        assert second.previous_response_id == first.id
        assert upstream["messages"] == [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "What is my name?"},
        ]
    else:
        # The upstream gets the whole thread, not an id it never stored.
        assert "previous_response_id" not in upstream
        assert upstream["input"] == [
            {"type": "message", "role": "user", "content": "My name is Ada."},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "message", "role": "user", "content": "What is my name?"},
        ]
    for client in clients:
        kept = client.responses.retrieve(first.id)
        assert (kept.id, kept.status, kept.output_text) == (first.id, "completed", first.output_text)
        assert kept.usage == first.usage


def test_a_response_deleted_through_one_node_is_gone_through_the_other(clients):
    a, b = clients
    made = a.responses.create(model="chat", input="Forget me.")
    deleted = b.responses.delete(made.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as refused:
        b.responses.create(model="chat", input="Who?", previous_response_id=made.id)
    assert refused.value.body["code"] == "previous_response_not_found"


def test_store_false_keeps_nothing(clients):
    a, b = clients
    made = a.responses.create(model="chat", input="Off the record.", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(made.id)


def test_a_conversation_gathers_turns_made_on_both_nodes(clients, cluster):
    a, b = clients
    conversation = a.conversations.create(
        items=[{"type": "message", "role": "user", "content": "I live in Lyon."}],
        metadata={"topic": "travel"},
    )
    assert conversation.id.startswith("conv_")
    first = b.responses.create(model="chat", input="Where do I live?", conversation=conversation.id)
    second = a.responses.create(model="chat", input="And the weather?", conversation=conversation.id)
    assert second.output_text
    assert received(cluster)["messages"] == [
        {"role": "user", "content": "I live in Lyon."},
        {"role": "user", "content": "Where do I live?"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And the weather?"},
    ]
    items = list(b.conversations.items.list(conversation.id, order="asc"))
    assert [item.role for item in items] == ["user", "user", "assistant", "user", "assistant"]
    assert b.conversations.retrieve(conversation.id).metadata == {"topic": "travel"}
    b.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        a.conversations.retrieve(conversation.id)
