"""Where a request's instructions go: inclusive callgrind costs of the request path's
stages, per request, as a Markdown table.

usage: callgrind_components.py INCL_TXT SELF_TXT REQUESTS

INCL_TXT is `callgrind_annotate --inclusive=yes` output, SELF_TXT the `--inclusive=no`
one. A function can be listed more than once (inlined into different places); a stage
takes its largest entry. Stages nest (the upstream call is inside the Chat method, which
is inside the connection task), so shares do not add up to 100%.
"""

import re
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$")

# (label, pattern over the "file:function" text, inclusive or self)
STAGES = [
    (
        "connection task: hyper server, axum, middleware and all below",
        r"mcp_chat::http::guard::serve::\{\{closure\}\}::\{\{closure\}\}",
        "incl",
    ),
    (
        "… request JSON → CompletionRequest (`http::extract`, inlined in the handler)",
        r"src/http/extract\.rs:<F as axum::handler::Handler",
        "incl",
    ),
    (
        "… CompletionRequest → proto ChatRequest (`into_proto`)",
        r"CompletionRequest::into_proto$",
        "incl",
    ),
    (
        "gRPC method `Chat` / `StreamChat`, in process (agent run and upstream call)",
        r"ChatService>::(stream_)?chat::\{\{closure\}\}$",
        "incl",
    ),
    (
        "… proto ChatRequest → AgentRequest (`convert::agent_request`)",
        r"convert::request::agent_request$",
        "incl",
    ),
    (
        "… stream set-up (`Agent::stream`: channel, producer task spawned)",
        r"mcp_chat::agent::Agent::stream$",
        "incl",
    ),
    (
        "… the turn (`Turn::run`: upstream call and events)",
        r"src/agent/turn/mod\.rs:mcp_chat::agent::turn::Turn::run::\{\{closure\}\}$",
        "incl",
    ),
    (
        "… upstream call (`OpenAiClient::complete`/`stream`: hyper-util client, answer read)",
        r"OpenAiClient as mcp_chat::llm::LlmClient>::(complete|stream)::",
        "incl",
    ),
    (
        "… … answer JSON → Completion (`llm::answer::parse_completion`)",
        r"mcp_chat::llm::answer::parse_completion",
        "incl",
    ),
    (
        "… … upstream chunk JSON → event (`llm::assemble::Assembler::push`)",
        r"mcp_chat::llm::assemble::Assembler::push$",
        "incl",
    ),
    (
        "… AgentResponse → proto (`convert::response_to_pb`)",
        r"convert::response::response_to_pb$",
        "incl",
    ),
    (
        "upstream connection task (hyper HTTP/1 client: request written, answer read; its own task)",
        r"hyper::client::conn::http1::upgrades::UpgradeableConnection<I,B> as core::future::future::Future>::poll$",
        "incl",
    ),
    (
        "response rendering (OpenAI JSON, `Json::into_response`)",
        r"axum::json::Json<T> as axum_core::response::into_response::IntoResponse>::into_response$",
        "incl",
    ),
    (
        "chunk rendering (`ChunkRenderer::push`)",
        r"mcp_chat::http::openai::render::ChunkRenderer::push$",
        "incl",
    ),
    (
        "span creation (`tracing` `new_span`, every layer)",
        r"Layered<L,S> as tracing_core::subscriber::Subscriber>::new_span$",
        "incl",
    ),
    (
        "task spawns (`tokio::task::spawn`, the future moved into its task)",
        r"tokio::task::spawn::spawn$",
        "incl",
    ),
    ("memcpy (all callers, self)", r"__memcpy\w*", "self"),
    ("allocator: mimalloc (self)", r"libmimalloc-sys|/mimalloc/", "self"),
    ("allocator: glibc malloc/free (self)", r"malloc/malloc\.c|malloc/arena\.c", "self"),
]


def entries(path: str) -> tuple[int, list[tuple[int, str]]]:
    total, rows, in_table = 0, [], False
    for line in open(path, encoding="utf-8", errors="replace"):
        if "file:function" in line:
            in_table = True
            continue
        if in_table and not line.strip():
            break
        m = LINE.match(line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        text = re.sub(r" \[[^\]]*\]\s*$", "", m.group(2))
        if "PROGRAM TOTALS" in text:
            total = count
        elif in_table:
            rows.append((count, text))
    return total, rows


def main() -> None:
    incl_path, self_path, requests = sys.argv[1], sys.argv[2], float(sys.argv[3])
    total, incl = entries(incl_path)
    _, own = entries(self_path)
    if total == 0 or requests <= 0:
        print("(no profile data)")
        return
    print("| stage | instructions per request | share of all |")
    print("|---|---|---|")
    for label, pattern, kind in STAGES:
        rx = re.compile(pattern)
        if kind == "incl":
            count = max((c for c, t in incl if rx.search(t)), default=0)
        else:
            count = sum(c for c, t in own if rx.search(t))
        print(f"| {label} | {count / requests:,.0f} | {100 * count / total:.1f}% |")
    print(f"| **whole process** | **{total / requests:,.0f}** | 100% |")


if __name__ == "__main__":
    main()
