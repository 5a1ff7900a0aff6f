"""The official Python MCP SDK's client against mcp-chat's `/mcp` (run by tests/mcp_serve.rs).

Usage: python mcp_serve_client.py <url> <key>

Lists and calls tools of the fixture (`fx`), mcp-server-sqlite and server-everything, reads a
resource, gets a prompt, sees the long-running tool's progress, cancels a call (the fixture
counts it), and hears `notifications/tools/list_changed` when the fixture goes down and again
when it is back. Exits non-zero with the failing check on stderr.
"""

import sys

import anyio
from pydantic import AnyUrl

import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"FAILED: {what}")


def text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def main(url: str, key: str) -> None:
    changed = anyio.Event()
    changes = 0

    async def on_message(message) -> None:
        nonlocal changed, changes
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ToolListChangedNotification
        ):
            changes += 1
            changed.set()

    headers = {"Authorization": f"Bearer {key}"}
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write, message_handler=on_message) as session:
            init = await session.initialize()
            check(init.serverInfo.name == "mcp-chat", f"server name {init.serverInfo}")

            names = {t.name for t in (await session.list_tools()).tools}
            for name in ("fx__echo", "everything__echo", "read_query", "trigger-long-running-operation"):
                check(name in names, f"{name} in tools/list: {sorted(names)}")

            echoed = await session.call_tool("fx__echo", {"text": "from python"})
            check("from python" in text(echoed), f"echo: {echoed}")
            await session.call_tool("create_table", {"query": "CREATE TABLE p (x TEXT)"})
            await session.call_tool("write_query", {"query": "INSERT INTO p VALUES ('py-row')"})
            rows = await session.call_tool("read_query", {"query": "SELECT x FROM p"})
            check("py-row" in text(rows), f"read_query: {rows}")

            resources = (await session.list_resources()).resources
            check(any(str(r.uri) == "memo://insights" for r in resources), f"resources: {resources}")
            memo = await session.read_resource(AnyUrl("memo://insights"))
            check(len(memo.contents) > 0, f"read memo://insights: {memo}")

            prompts = {p.name for p in (await session.list_prompts()).prompts}
            check("mcp-demo" in prompts and "simple-prompt" in prompts, f"prompts: {prompts}")
            demo = await session.get_prompt("mcp-demo", {"topic": "birds"})
            check(len(demo.messages) > 0, f"get mcp-demo: {demo}")

            progress: list[tuple[float, float | None]] = []

            async def on_progress(p: float, total: float | None, _message: str | None) -> None:
                progress.append((p, total))

            done = await session.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
            check("completed" in text(done), f"long-running: {done}")
            check(progress == [(1, 3), (2, 3), (3, 3)], f"progress: {progress}")

            # Cancel a slow call after its first progress report.
            started = anyio.Event()

            async def on_slow_progress(_p: float, _t: float | None, _m: str | None) -> None:
                started.set()

            request_id = session._request_id  # the id the next request gets
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    await session.call_tool("slow", {"ms": 20000}, progress_callback=on_slow_progress)

                tg.start_soon(slow)
                with anyio.fail_after(10):
                    await started.wait()
                await session.send_notification(
                    types.ClientNotification(
                        types.CancelledNotification(
                            params=types.CancelledNotificationParams(requestId=request_id, reason="enough")
                        )
                    )
                )
                tg.cancel_scope.cancel()
            with anyio.fail_after(10):
                while text(await session.call_tool("cancellations", {})) != "1":
                    await anyio.sleep(0.1)

            # The fixture goes down and comes back: list_changed each time.
            changed = anyio.Event()
            seen = changes
            with anyio.move_on_after(1):
                await session.call_tool("crash", {})
            with anyio.fail_after(20):
                while True:
                    await changed.wait()
                    changed = anyio.Event()
                    names = {t.name for t in (await session.list_tools()).tools}
                    if "slow" in names and changes >= seen + 2:
                        break
    print("python mcp client: all checks passed")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
