"""OpenAI's Responses API through the official `openai` SDK (driven by tests/clients.rs), against
the fixture MCP server `fx`: a question answered through two rounds of MCP tool calls, a streamed
continuation, retrieve, a client function tool round trip, an approval round trip, input items,
and (PHASE=resume, after the service restarted) a continuation of a stored response. Every
response and stream event is validated strictly by the SDK's own pydantic types.

Environment: MCP_CHAT_URL, MCP_CHAT_MODEL, PHASE (main | resume), RESUME_ID (resume). The
scripted upstream's replies come in the order of the calls below.
"""

import os

import pydantic
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent

URL = os.environ["MCP_CHAT_URL"]
MODEL = os.environ["MCP_CHAT_MODEL"]
client = OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0)
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def check(name, condition, detail=""):
    if not condition:
        raise SystemExit(f"FAILED {name}: {detail}")
    print(f"ok {name}")


def strict(r):
    """The response as the SDK's strict model (raises on any field it does not accept)."""
    return Response.model_validate(r.to_dict())


def kinds(r):
    return [item.type for item in r.output]


if os.environ.get("PHASE") == "resume":
    previous = os.environ["RESUME_ID"]
    r = strict(client.responses.create(model=MODEL, input="Are you still there?", previous_response_id=previous))
    check("resumed after a restart", r.output_text == "Still here.", r)
    check("resumed previous id", r.previous_response_id == previous, r)
    old = strict(client.responses.retrieve(previous))
    check("the old response survived", old.output_text == "The sum is 5.", old)
    print("all checks passed")
    raise SystemExit(0)

# 1. Two rounds of MCP calls on the operator's server, then the answer; usage summed.
r = strict(client.responses.create(model=MODEL, input="What is 2+3? Then echo hi."))
check("status", r.status == "completed", r)
check("items", kinds(r) == ["mcp_list_tools", "mcp_call", "mcp_call", "message"], kinds(r))
listed = r.output[0]
check("listed tools", listed.server_label == "fx" and "add" in [t.name for t in listed.tools], listed)
add, echo = r.output[1], r.output[2]
check("add call", (add.server_label, add.name, add.arguments) == ("fx", "add", '{"a": 2, "b": 3}'), add)
check("add output", add.output is not None and "5" in add.output and add.error is None, add)
check("echo call", echo.name == "echo" and echo.output == "hi", echo)
check("answer", r.output_text == "The sum is 5.", r.output_text)
check("usage summed", (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (30, 6, 36), r.usage)
first = r

# 2. A streamed continuation: typed events in order, each valid, numbered from 0.
events = [EVENT.validate_python(e.to_dict()) for e in client.responses.create(
    model=MODEL, input="Say hello.", previous_response_id=first.id, stream=True)]
types = [e.type for e in events]
check("stream events", types == [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
    "response.content_part.done", "response.output_item.done", "response.completed"], types)
check("sequence numbers", [e.sequence_number for e in events] == list(range(len(events))), events)
deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
check("deltas", deltas == "Hello!", deltas)
done = events[-1].response
check("stream final", done.output_text == "Hello!" and done.previous_response_id == first.id, done)

# 2b. A streamed new conversation with an MCP call: the listing and call events, all valid.
events = [EVENT.validate_python(e.to_dict()) for e in client.responses.create(
    model=MODEL, input="Echo yo.", stream=True)]
types = [e.type for e in events]
for expected in ["response.mcp_list_tools.in_progress", "response.mcp_list_tools.completed",
                 "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
                 "response.mcp_call.in_progress", "response.mcp_call.completed"]:
    check(f"stream has {expected}", expected in types, types)
final = events[-1].response
check("streamed call items", kinds(final) == ["mcp_list_tools", "mcp_call", "message"], kinds(final))
check("streamed call output", final.output[1].output == "yo" and final.output_text == "yo!", final)
done_items = [e.item.type for e in events if e.type == "response.output_item.done"]
check("every item is done once", done_items == kinds(final), done_items)

# 3. Retrieve what was streamed.
got = strict(client.responses.retrieve(done.id))
check("retrieve", got.id == done.id and got.output_text == "Hello!" and got.status == "completed", got)

# 4. A client function tool: the response stops at the call; its output continues it.
weather = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
events = [EVENT.validate_python(e.to_dict()) for e in client.responses.create(
    model=MODEL, input="Weather in Paris?", tools=weather, stream=True)]
types = [e.type for e in events]
check("function call events", "response.function_call_arguments.delta" in types
      and "response.function_call_arguments.done" in types, types)
r = events[-1].response
call = r.output[-1]
check("function call", call.type == "function_call" and call.name == "get_weather"
      and call.arguments == '{"city": "Paris"}', r.output)
r = strict(client.responses.create(model=MODEL, previous_response_id=r.id, tools=weather,
                                   input=[{"type": "function_call_output", "call_id": call.call_id,
                                           "output": "sunny"}]))
check("function answer", r.output_text == "It is sunny in Paris.", r)

# 5. Approval: the call waits; approving it runs it (once), then the model answers.
mcp = [{"type": "mcp", "server_label": "fx", "allowed_tools": ["add"], "require_approval": "always"}]
r = strict(client.responses.create(model=MODEL, input="Add 2 and 3.", tools=mcp))
check("approval items", kinds(r) == ["mcp_list_tools", "mcp_approval_request"], kinds(r))
request = r.output[1]
check("approval request", (request.server_label, request.name) == ("fx", "add"), request)
r = strict(client.responses.create(model=MODEL, previous_response_id=r.id, tools=mcp, input=[
    {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]))
check("approved call", kinds(r) == ["mcp_call", "message"], kinds(r))
check("approved call names its request", r.output[0].approval_request_id == request.id, r.output[0])
check("approved answer", r.output_text == "Approved: 5.", r)

# 6. Input items, newest first by default.
items = client.responses.input_items.list(r.id)
check("input items", [i.type for i in items.data] == ["mcp_approval_response"], items)

# 7. Errors in OpenAI's shape.
try:
    client.responses.retrieve("resp_unknown")
    check("404", False, "no error")
except Exception as e:  # noqa: BLE001
    check("404", getattr(e, "status_code", None) == 404, e)
try:
    client.responses.create(model=MODEL, input=[{"type": "web_search_call", "id": "x"}])
    check("unknown item 400", False, "no error")
except Exception as e:  # noqa: BLE001
    check("unknown item 400", getattr(e, "status_code", None) == 400 and "input[0].type" in str(e), e)

print(f"RESUME_ID={first.id}")
print("all checks passed")
