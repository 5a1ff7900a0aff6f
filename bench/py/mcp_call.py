"""Times MCP tools/call round trips with the official Python SDK's stdio client.

Usage: python mcp_call.py [--tool echo] [--calls 500] [--warmup 50] -- COMMAND [ARGS...]
Prints one JSON object (latency in microseconds) on stdout, like bench's mcp-call.
"""

import argparse
import asyncio
import json
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def summarize(samples):
    samples.sort()
    n = len(samples)
    at = lambda q: samples[min(n - 1, round((n - 1) * q))]
    return {"n": n, "mean_us": sum(samples) / n, "p50_us": at(0.5), "p90_us": at(0.9),
            "p99_us": at(0.99), "max_us": samples[-1]}


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    server = StdioServerParameters(command=args.command[0], args=args.command[1:])
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for _ in range(args.warmup):
                await session.call_tool(args.tool, {"text": "bench"})
            lat = []
            for _ in range(args.calls):
                t = time.perf_counter()
                await session.call_tool(args.tool, {"text": "bench"})
                lat.append((time.perf_counter() - t) * 1e6)
    print(json.dumps({"client": "python-mcp", "calls": args.calls, "latency": summarize(lat)}))


asyncio.run(main())
