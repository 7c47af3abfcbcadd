"""The official OpenAI Python client, unchanged, against a tensorgrid gateway.

Usage: openai_client.py BASE_URL API_KEY CHAT_MODEL EMBEDDING_MODEL

Checks what a developer relies on (answers, streaming, usage, seeds, embeddings, errors) and prints one JSON
object on its last line: the usage of every billed response, so the caller can check what the channel paid.
"""

import json
import sys

import httpx
import openai
from openai import OpenAI

base_url, api_key, chat_model, embedding_model = sys.argv[1:5]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
billed = []  # (kind, prompt_tokens, completion_tokens)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# Models.
models = [m.id for m in client.models.list()]
check(chat_model in models and embedding_model in models, f"models listed: {models}")
check(client.models.retrieve(chat_model).id == chat_model, "retrieve a model")

# Chat, not streaming: the answer, its finish reason and usage.
chat = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "What is 2 + 2?"}],
    temperature=0,
    max_tokens=32,
)
answer = chat.choices[0].message.content
check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", chat)
check("4" in answer, f"greedy answer: {answer!r}")
check(chat.choices[0].finish_reason == "stop", chat.choices[0].finish_reason)
u = chat.usage
check(u.prompt_tokens > 10 and u.completion_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens, u)
billed.append(("chat", u.prompt_tokens, u.completion_tokens))

# max_tokens is honoured exactly, with finish_reason "length".
capped = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
    max_tokens=9,
    seed=5,
)
check(capped.choices[0].finish_reason == "length", capped.choices[0].finish_reason)
check(capped.usage.completion_tokens == 9, capped.usage)
billed.append(("chat", capped.usage.prompt_tokens, capped.usage.completion_tokens))

# Chat, streaming: chunks add up to the text, usage arrives in the last chunk when asked for.
stream = client.chat.completions.create(
    model=chat_model,
    messages=[
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three colours."},
    ],
    stream=True,
    stream_options={"include_usage": True},
    max_tokens=40,
    temperature=0.7,
    seed=42,
)
pieces, finish, usage, roles = [], None, None, []
for chunk in stream:
    check(chunk.object == "chat.completion.chunk", chunk)
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.role:
            roles.append(choice.delta.role)
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
streamed = "".join(pieces)
check(roles == ["assistant"], roles)
check(streamed.strip() != "", "streamed text is empty")
check(finish in ("stop", "length"), finish)
check(usage is not None and usage.completion_tokens >= len(pieces) and usage.prompt_tokens > 10, usage)
billed.append(("chat", usage.prompt_tokens, usage.completion_tokens))

# The same seed gives the same answer, streamed or not.
again = client.chat.completions.create(
    model=chat_model,
    messages=[
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three colours."},
    ],
    max_tokens=40,
    temperature=0.7,
    seed=42,
)
check(again.choices[0].message.content == streamed, f"seed 42 twice: {again.choices[0].message.content!r} vs {streamed!r}")
billed.append(("chat", again.usage.prompt_tokens, again.usage.completion_tokens))
other = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "Tell me a story about a cat."}],
    max_tokens=24,
    temperature=1.0,
    seed=1,
)
billed.append(("chat", other.usage.prompt_tokens, other.usage.completion_tokens))
other2 = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "Tell me a story about a cat."}],
    max_tokens=24,
    temperature=1.0,
    seed=2,
)
billed.append(("chat", other2.usage.prompt_tokens, other2.usage.completion_tokens))
check(other.choices[0].message.content != other2.choices[0].message.content, "different seeds, different stories")

# Text completions, streaming and not, with a stop string.
completion = client.completions.create(model=chat_model, prompt="The capital of France is", max_tokens=8, temperature=0)
check(completion.object == "text_completion" and completion.choices[0].text.strip() != "", completion)
billed.append(("text", completion.usage.prompt_tokens, completion.usage.completion_tokens))
text_stream = client.completions.create(
    model=chat_model, prompt="One, two, three,", max_tokens=12, temperature=0, stream=True, stop=["six"]
)
text = "".join(c.choices[0].text for c in text_stream if c.choices)
check("six" not in text, f"stop string returned: {text!r}")
# A stream without include_usage reports no usage; the tokens are still paid, so count them with a twin
# request that does report usage (greedy, so identical).
twin = client.completions.create(model=chat_model, prompt="One, two, three,", max_tokens=12, temperature=0, stop=["six"])
check(twin.choices[0].text == text, f"stream and non-stream differ: {twin.choices[0].text!r} vs {text!r}")
billed.append(("text", twin.usage.prompt_tokens, twin.usage.completion_tokens))
billed.append(("text", twin.usage.prompt_tokens, twin.usage.completion_tokens))

# Embeddings: the client asks for base64 by default and decodes it; floats on request too.
emb = client.embeddings.create(model=embedding_model, input=["A man plays the guitar.", "Someone plays music.", "Taxes rose sharply."])
vectors = [d.embedding for d in emb.data]
check(len(vectors) == 3 and all(len(v) == 384 for v in vectors), [len(v) for v in vectors])
dot = lambda a, b: sum(x * y for x, y in zip(a, b))
check(abs(dot(vectors[0], vectors[0]) - 1) < 1e-3, "normalized")
check(dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2]) + 0.1, "related texts are closer")
check(emb.usage.prompt_tokens > 6 and emb.usage.total_tokens == emb.usage.prompt_tokens, emb.usage)
billed.append(("embed", emb.usage.prompt_tokens, 0))
floats = client.embeddings.create(model=embedding_model, input="A man plays the guitar.", encoding_format="float")
check(max(abs(a - b) for a, b in zip(floats.data[0].embedding, vectors[0])) < 1e-5, "float and base64 agree")
billed.append(("embed", floats.usage.prompt_tokens, 0))

# A small batch: JSONL in, JSONL out, one request failing on its own.
import io
import time

requests = [
    {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": chat_model, "messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "max_tokens": 16, "temperature": 0}}
    for i in range(1, 5)
]
requests.append({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}})
upload = client.files.create(file=("batch.jsonl", io.BytesIO("\n".join(json.dumps(r) for r in requests).encode())), purpose="batch")
check(upload.purpose == "batch" and upload.bytes > 0, upload)
batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
deadline = time.time() + 120
while batch.status not in ("completed", "failed", "cancelled", "expired"):
    check(time.time() < deadline, f"batch stuck: {batch}")
    time.sleep(0.5)
    batch = client.batches.retrieve(batch.id)
check(batch.status == "completed", batch)
check(batch.request_counts.total == 5 and batch.request_counts.completed == 4 and batch.request_counts.failed == 1, batch.request_counts)
check(any(b.id == batch.id for b in client.batches.list()), "listed")
out = [json.loads(l) for l in client.files.content(batch.output_file_id).text.splitlines()]
check(sorted(o["custom_id"] for o in out) == ["q1", "q2", "q3", "q4"], out)
for o in out:
    check(o["response"]["status_code"] == 200, o)
    body = o["response"]["body"]
    check(body["choices"][0]["message"]["content"].strip() != "", body)
    billed.append(("chat", body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]))
errors = [json.loads(l) for l in client.files.content(batch.error_file_id).text.splitlines()]
check(len(errors) == 1 and errors[0]["custom_id"] == "bad" and errors[0]["response"]["status_code"] == 404, errors)
bad_batch = client.batches.create(input_file_id=client.files.create(file=("x.jsonl", io.BytesIO(b"not json\n")), purpose="batch").id,
                                  endpoint="/v1/chat/completions", completion_window="24h")
check(bad_batch.status == "failed" and bad_batch.errors.data[0].line == 1, bad_batch)
check(client.files.delete(upload.id).deleted, "file deleted")

# Errors, shaped and coded as OpenAI's.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check(False, "unknown model accepted")
except openai.NotFoundError as e:
    check(e.status_code == 404 and e.code == "model_not_found", (e.status_code, e.code))
try:
    OpenAI(base_url=base_url, api_key="tg-wrong", max_retries=0).models.list()
    check(False, "wrong key accepted")
except openai.AuthenticationError as e:
    check(e.status_code == 401 and e.code == "invalid_api_key", (e.status_code, e.code))
try:
    client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "word " * 9000}])
    check(False, "an over-long prompt accepted")
except openai.BadRequestError as e:
    check(e.status_code == 400 and e.code == "context_length_exceeded", (e.status_code, e.code, str(e)))
try:
    client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "hi"}], temperature=5)
    check(False, "temperature 5 accepted")
except openai.BadRequestError as e:
    check(e.status_code == 400 and e.body["param"] == "temperature", e.body)
raw = httpx.post(f"{base_url}/chat/completions", headers={"Authorization": f"Bearer {api_key}"}, content=b"{not json")
check(raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error", raw.text)
missing = httpx.get(f"{base_url}/models")
check(missing.status_code == 401 and "API key" in missing.json()["error"]["message"], missing.text)

print(json.dumps({"billed": billed}))
