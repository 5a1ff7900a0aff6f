//! The built-in web page at `/ui`: its headers and `GET /v1/mcp/servers` over HTTP, and the
//! page itself in headless Chromium (Python `selenium` with Debian's `chromium` and
//! `chromium-driver`, installed by scripts/test) against the real service, the scripted
//! upstream and the fixture MCP server. Screenshots of each state go to
//! `target/ui-screenshots/` (or `$MCP_CHAT_UI_SCREENSHOTS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::{path::Path, path::PathBuf, time::Duration};

use service::{Service, deps_dir, dir_with_fixture, external};
use upstream::{Answer, FakeUpstream, Reply};

/// Two models on the one fake upstream; the second under another upstream name.
fn two_models(base_url: &str) -> String {
    format!(
        r#"
[upstream]
default_model = "test-model"

[[models]]
id = "test-model"
base_url = "{base_url}"

[[models]]
id = "other-model"
base_url = "{base_url}"
upstream_model = "upstream-two"
"#
    )
}

#[tokio::test]
async fn the_page_is_served_with_a_policy_that_forbids_other_origins() {
    let fake = FakeUpstream::with([]).await;
    let svc = service::start_with(&fake.base_url, dir_with_fixture(), &[("API_KEYS", "k")]).await;
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        // The page is public (it holds no data); what it calls needs the key.
        let r = http
            .get(format!("{}{path}", svc.http()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let missing = http
        .get(format!("{}/ui/other.js", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The servers' JSON, behind the same auth.
    let url = format!("{}/v1/mcp/servers", svc.http());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = http
        .get(&url)
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fx = &body["data"][0];
    assert_eq!(fx["name"], "fx", "{body}");
    assert_eq!(fx["state"], "ready", "{body}");
    assert_eq!(fx["transport"], "stdio", "{body}");
    let tools: Vec<&str> = fx["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"add"),
        "{tools:?}"
    );
}

#[tokio::test]
async fn server_ui_off_serves_no_page_but_keeps_the_apis() {
    let fake = FakeUpstream::with([]).await;
    let svc = service::start_with(
        &fake.base_url,
        dir_with_fixture(),
        &[("MCP_CHAT_UI", "false")],
    )
    .await;
    let http = reqwest::Client::new();
    for path in ["/ui", "/ui/app.js"] {
        let r = http
            .get(format!("{}{path}", svc.http()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = http
        .get(format!("{}/v1/mcp/servers", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A TCP proxy in front of `target` (the browser's way to the service) whose connections
/// can be cut, all at once: any request to the control port cuts them (a dropped
/// connection, as a flaky network makes it). Its port and the control URL.
async fn cutting_proxy(target: u16) -> (u16, String) {
    use tokio::{io::AsyncWriteExt, net::TcpListener, sync::broadcast};
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = front.local_addr().unwrap().port();
    let control_url = format!("http://{}/cut", control.local_addr().unwrap());
    let (cut, _) = broadcast::channel::<()>(4);
    let cuts = cut.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = front.accept().await {
            let mut stop = cuts.subscribe();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = stop.recv() => {}
                }
            });
        }
    });
    tokio::spawn(async move {
        while let Ok((mut asker, _)) = control.accept().await {
            let _ = cut.send(());
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut asker, &mut buf).await;
            let _ = asker
                .write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    (port, control_url)
}

/// Where the screenshots go: `$MCP_CHAT_UI_SCREENSHOTS`, else `target/ui-screenshots/`.
fn screenshots_dir() -> PathBuf {
    std::env::var_os("MCP_CHAT_UI_SCREENSHOTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots"),
        PathBuf::from,
    )
}

#[tokio::test]
async fn the_page_works_in_a_real_browser() {
    let deps = deps_dir();
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    let driver = std::env::var_os("CHROMEDRIVER")
        .map_or_else(|| "/usr/bin/chromedriver".into(), PathBuf::from);
    let (Some(python), Some(chromium), Some(driver)) = (
        external(deps.join("venv/bin/python")),
        external(chromium),
        external(driver),
    ) else {
        return;
    };
    let payload = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>";
    let step = Duration::from_millis(250);
    let fake = FakeUpstream::with([
        // 1: streamed in steps.
        Reply::text(&["Hello", " from", " the", " **fake**", " upstream"]).delay(step),
        // 2: a tool call whose result is a script-injection payload, then an answer with more.
        Reply::answer(Answer::text(&[]).tool_call(
            "call_echo",
            "echo",
            &[&serde_json::json!({ "text": payload }).to_string()],
        )),
        Reply::text(&[
            "The tool said: ",
            "<script>window.__pwned=3</script>",
            " and [click](javascript:window.__pwned=4) **done**",
        ]),
        // 3: an upstream error (not retried by the service), then the page's retry.
        Reply::error(400, "the upstream refused this one"),
        Reply::text(&["Recovered after the retry"]),
        // 4: the second model.
        Reply::text(&["The second model here"]),
        // 5: with approvals: a call that waits for Approve, then the answer after it ran.
        Reply::answer(Answer::text(&[]).tool_call("call_add", "add", &[r#"{"a": 2, "b": 3}"#])),
        Reply::text(&["The sum is 5"]),
        // 6: an answer the browser stops reading (it goes offline), then the retry.
        Reply::text(&["Half", " an", " answer", " that", " never", " ends"]).delay(step * 2),
        Reply::text(&["Whole again"]),
        // 7: at 360 px.
        Reply::text(&["A narrow answer"]),
        // 8: a slow call whose server reports progress (the fixture's `slow`: ten steps).
        Reply::answer(Answer::text(&[]).tool_call("call_slow", "slow", &[r#"{"ms": 3000}"#])),
        Reply::text(&["Slow but done"]),
    ])
    .await;
    let dir = dir_with_fixture();
    std::fs::write(dir.path().join("mcp-chat.toml"), two_models(&fake.base_url)).unwrap();
    let svc = Service::start_in(dir, &[("API_KEYS", "ui-key")], &[]).await;

    let (proxy_port, cut_url) = cutting_proxy(svc.http_port).await;
    let shots = screenshots_dir();
    println!("screenshots: {}", shots.display());
    let run = tokio::time::timeout(
        Duration::from_secs(240),
        run_python(
            &python,
            "ui_browser_check.py",
            &[
                ("MCP_CHAT_URL", format!("http://127.0.0.1:{proxy_port}")),
                ("MCP_CHAT_CUT_URL", cut_url),
                ("MCP_CHAT_KEY", "ui-key".into()),
                ("MCP_CHAT_SCREENSHOTS", shots.display().to_string()),
                ("CHROMIUM", chromium.display().to_string()),
                ("CHROMEDRIVER", driver.display().to_string()),
                (
                    "HOME",
                    std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
                ),
            ],
        ),
    )
    .await;
    assert!(
        run.is_ok(),
        "the browser check took over 240 s; its log:\n{}",
        std::fs::read_to_string(shots.join("log.txt")).unwrap_or_default()
    );

    let seen = fake.requests();
    assert_eq!(seen.len(), 13, "every scripted reply was used");
    // The tool really ran on the fixture: its result, payload and all, went to the model.
    let messages = seen[2].body["messages"].as_array().unwrap();
    let tool = messages.last().unwrap();
    assert_eq!(tool["role"], "tool");
    assert!(
        tool["content"].as_str().unwrap().contains("__pwned=1"),
        "{tool}"
    );
    // The retry went on in the same session: its history holds the earlier turns.
    assert!(seen[4].body["messages"].as_array().unwrap().len() > 4);
    assert_eq!(seen[4].body["model"], "test-model");
    // The model picker chose the upstream of the second model.
    assert_eq!(seen[5].body["model"], "upstream-two");
    // The approved call ran on the fixture, and its result went to the model.
    let tool = seen[7].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(tool["role"], "tool", "{tool}");
    assert!(tool["content"].as_str().unwrap().contains('5'), "{tool}");
    for name in [
        "01-needs-key",
        "04-tool-call",
        "08-approval",
        "09-dropped",
        "10-desktop",
        "11-narrow",
    ] {
        assert!(shots.join(format!("{name}.png")).is_file(), "{name}.png");
    }
}

async fn run_python(python: &Path, script: &str, env: &[(&str, String)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{stderr}",
        script.display()
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout.into_owned()
}
