-- POST an OpenAI chat completion; BENCH_USER sets the mock's behaviour (the `user` field).
-- wrk counts non-2xx answers itself ("Non-2xx or 3xx responses").
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local user = os.getenv("BENCH_USER") or ""
wrk.body = '{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false,"user":"' .. user .. '"}'
