"""OpenAI's `type: "mcp"` tool on chat completions through the official `openai` SDK (driven
by tests/clients.rs): an operator server chosen by label with `allowed_tools` and
`require_approval` (the mcp entries go in `extra_body`), the approval round trip on a whole
answer and on a stream, and a denial, all parsed by the SDK's own types.

Environment: MCP_CHAT_URL, MCP_CHAT_MODEL. The scripted upstream's replies come in the order
of the calls below.
"""

import os

from openai import OpenAI

URL = os.environ["MCP_CHAT_URL"]
MODEL = os.environ["MCP_CHAT_MODEL"]
client = OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0)
MCP = [
    {
        "type": "mcp",
        "server_label": "fx",
        "allowed_tools": {"tool_names": ["add", "echo"]},
        "require_approval": {"never": {"tool_names": ["echo"]}},
    }
]


def check(name, condition, detail=""):
    if not condition:
        raise SystemExit(f"FAILED {name}: {detail}")
    print(f"ok {name}")


question = [{"role": "user", "content": "What is 2+3?"}]

# 1. The call needs approval: it does not run; the answer asks for it.
r = client.chat.completions.create(model=MODEL, messages=question, extra_body={"tools": MCP})
message = r.choices[0].message
check("finish tool_calls", r.choices[0].finish_reason == "tool_calls", r)
check("the pending call", [c.id for c in message.tool_calls] == ["call_add"], message)
pending = (message.model_extra or {}).get("mcp_approval_requests")
check(
    "mcp_approval_requests",
    pending == [{"id": "call_add", "type": "mcp_approval_request", "server_label": "fx", "name": "add",
                 "arguments": '{"a": 2, "b": 3}'}],
    pending,
)

# 2. Approve: the stored call runs; the model answers.
history = question + [message.model_dump(exclude_none=True, exclude={"mcp_approval_requests"})]
approval = {"role": "tool", "tool_call_id": "call_add", "content": "", "approval": {"approve": True}}
r = client.chat.completions.create(model=MODEL, messages=history + [approval], extra_body={"tools": MCP})
check("approved answer", r.choices[0].message.content == "The sum is 5.", r)

# 3. A stream: the pending call arrives as a tool-call chunk with the extension.
chunks = list(
    client.chat.completions.create(model=MODEL, messages=question, stream=True, extra_body={"tools": MCP})
)
calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
check("stream tool call", [(tc.id, tc.function.name) for tc in calls] == [("call_add2", "add")], chunks)
extra = [c.choices[0].delta.model_extra.get("mcp_approval_requests") for c in chunks if c.choices and c.choices[0].delta.model_extra]
check("stream extension", any(e and e[0]["id"] == "call_add2" for e in extra), extra)
check("stream finish", chunks[-1].choices[0].finish_reason == "tool_calls", chunks[-1])

# 4. Deny it (the Responses-style item is accepted too): the model is told why.
assistant = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_add2", "type": "function", "function": {"name": "add", "arguments": calls[0].function.arguments}}]}
deny = {"type": "mcp_approval_response", "approval_request_id": "call_add2", "approve": False, "reason": "not today"}
r = client.chat.completions.create(model=MODEL, messages=question + [assistant, deny], extra_body={"tools": MCP})
check("denied answer", r.choices[0].message.content == "Not adding, then.", r)

print("all checks passed")
