"""The official `openai` Python SDK against confab's OpenAI-compatible API.

Run by `cargo test --test it the_official_openai_python_sdk` (and so by `make test`) with
CONFAB_URL (confab's address), CONFAB_TOKEN (a bearer token), CONFAB_MODEL (an agent's model id)
and EXPECTED_ANSWER (what the fake upstream answers). Plain Python: it fails on the first
assertion, printing what it got.
"""

import os

import openai

BASE_URL = os.environ["CONFAB_URL"].rstrip("/") + "/v1"
TOKEN = os.environ["CONFAB_TOKEN"]
MODEL = os.environ["CONFAB_MODEL"]
EXPECTED = os.environ["EXPECTED_ANSWER"]

client = openai.OpenAI(base_url=BASE_URL, api_key=TOKEN, max_retries=0, timeout=30)


def check(name, condition, got):
    assert condition, f"{name}: got {got!r}"
    print(f"ok  {name}")


def models():
    ids = [model.id for model in client.models.list()]
    check("models.list has the agent", MODEL in ids, ids)
    check("models.retrieve", client.models.retrieve(MODEL).id == MODEL, MODEL)
    try:
        client.models.retrieve("no-such-model")
        check("unknown model raises NotFoundError", False, "no error")
    except openai.NotFoundError as error:
        check("unknown model raises NotFoundError", error.code == "model_not_found", error.body)


def chat_completions():
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        temperature=0.2,
        max_completion_tokens=100,
    )
    conversation = raw.headers.get("x-confab-conversation-id")
    completion = raw.parse()
    check("chat.completions.create", completion.choices[0].message.content == EXPECTED, completion)
    check("chat usage", completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0, completion.usage)
    check("conversation header", bool(conversation), raw.headers)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": EXPECTED},
            {"role": "user", "content": "Again, streamed"},
        ],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Confab-Conversation-Id": conversation},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check("chat stream text", text == EXPECTED, text)
    check("chat stream finish_reason", finish == "stop", finish)
    check("chat stream usage", usage is not None and usage.completion_tokens > 0, usage)

    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=9)
        check("bad temperature raises BadRequestError", False, "no error")
    except openai.BadRequestError as error:
        check("bad temperature raises BadRequestError", error.param == "temperature", error.body)


def responses():
    response = client.responses.create(model=MODEL, input="Hello", instructions="Be brief.")
    check("responses.create output_text", response.output_text == EXPECTED, response)
    check("responses usage", response.usage.total_tokens > 0, response.usage)

    events = list(
        client.responses.create(
            model=MODEL, input="More, streamed", previous_response_id=response.id, stream=True
        )
    )
    types = [event.type for event in events]
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    check("responses stream text", text == EXPECTED, types)
    check("responses stream ends completed", types[0] == "response.created" and types[-1] == "response.completed", types)
    check("responses stream numbered", [e.sequence_number for e in events] == list(range(len(events))), types)
    check("responses stream final", events[-1].response.output_text == EXPECTED, events[-1])

    with client.responses.stream(model=MODEL, input="Helper stream") as stream:
        final = stream.get_final_response()
    check("responses.stream helper", final.output_text == EXPECTED, final)


def no_key():
    try:
        openai.OpenAI(base_url=BASE_URL, api_key="wrong", max_retries=0).models.list()
        check("a wrong key raises AuthenticationError", False, "no error")
    except openai.AuthenticationError as error:
        check("a wrong key raises AuthenticationError", error.code == "invalid_api_key", error.body)


models()
chat_completions()
responses()
no_key()
print("all passed")
