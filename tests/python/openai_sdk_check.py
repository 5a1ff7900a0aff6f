"""The official `openai` SDK against a running mcp-chat (driven by tests/clients.rs).

Environment: MCP_CHAT_URL (http://host:port), MCP_CHAT_KEY (a valid API key), MCP_CHAT_MODEL.
The upstream behind the service is a scripted fake whose replies come in the order of the
calls below; each check prints one line and the script exits non-zero on the first failure.
"""

import json
import os

import httpx
import openai
from openai import OpenAI

URL = os.environ["MCP_CHAT_URL"]
MODEL = os.environ["MCP_CHAT_MODEL"]
client = OpenAI(base_url=URL + "/v1", api_key=os.environ["MCP_CHAT_KEY"], max_retries=0)


def check(name, condition, detail=""):
    if not condition:
        raise SystemExit(f"FAILED {name}: {detail}")
    print(f"ok {name}")


models = client.models.list()
check("models.list", [m.id for m in models.data] == [MODEL], models)
check("models.retrieve", client.models.retrieve(MODEL).id == MODEL)

# 1. Non-stream.
r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
check("non-stream content", r.choices[0].message.content == "Hello there", r)
check("non-stream finish", r.choices[0].finish_reason == "stop", r)
check("non-stream usage", r.usage.total_tokens > 0, r.usage)
check("non-stream id", r.id.startswith("chatcmpl-") and r.object == "chat.completion", r)

# 2. Stream.
chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("stream content", text == "Hello there", chunks)
check("stream role first", chunks[0].choices[0].delta.role == "assistant", chunks[0])
check("stream finish", chunks[-1].choices[0].finish_reason == "stop", chunks[-1])

# 3. Stream with include_usage: a last chunk with empty choices and the usage.
chunks = list(
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
)
check("usage chunk", chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0, chunks[-1])
check("usage chunk content", "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there")

# 4. A question answered through an MCP tool (mcp-server-sqlite), non-stream and stream.
r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 6*7? Use SQL."}])
check("mcp tool non-stream", r.choices[0].message.content == "The database says 42.", r)
check("mcp tool calls hidden", not r.choices[0].message.tool_calls, r)
chunks = list(
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 6*7? Use SQL."}], stream=True)
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("mcp tool stream", text == "The database says 42.", chunks)
check("mcp tool stream has no tool_calls", all(not (c.choices and c.choices[0].delta.tool_calls) for c in chunks))

# 5. A client-side tool round trip.
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
messages = [{"role": "user", "content": "Weather in Paris?"}]
r = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
choice = r.choices[0]
check("client tool finish", choice.finish_reason == "tool_calls", r)
call = choice.message.tool_calls[0]
check("client tool call", call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}, call)
messages.append(choice.message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"})
r = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
check("client tool answer", r.choices[0].message.content == "It is 18 C and sunny in Paris.", r)

# 6. Errors raise the SDK's matching exception classes.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check("unknown model", False, "no exception")
except openai.NotFoundError as e:
    check("unknown model", e.code == "model_not_found" and "no-such-model" in e.message, e)

try:
    OpenAI(base_url=URL + "/v1", api_key="wrong-key", max_retries=0).models.list()
    check("wrong key", False, "no exception")
except openai.AuthenticationError as e:
    check("wrong key", e.code == "invalid_api_key", e)

try:
    client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "hi"}])
    check("invalid request", False, "no exception")
except openai.BadRequestError as e:
    check("invalid request", e.param == "messages[0].role", e.body)

raw = httpx.post(
    URL + "/v1/chat/completions",
    content=b'{"model": "x", "messages": [',
    headers={"Authorization": "Bearer " + os.environ["MCP_CHAT_KEY"], "Content-Type": "application/json"},
)
error = client._make_status_error_from_response(raw)
check("bad json", isinstance(error, openai.BadRequestError) and "not valid JSON" in error.message, error)
print("all checks passed")
