-- POST an OpenAI Responses request (not stored, so it measures the turn, not the store);
-- BENCH_USER sets the mock's behaviour (the `user` field).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local user = os.getenv("BENCH_USER") or ""
wrk.body = '{"model":"m","input":"hi","store":false,"user":"' .. user .. '"}'
