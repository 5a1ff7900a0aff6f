//! End to end on the real binary: listeners, health, readiness, reflection, errors,
//! configuration at start-up, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;

use std::{process::Stdio, time::Duration};

use mcp_chat::pb::chat_service_client::ChatServiceClient;
use serde_json::Value;
use service::{Service, command, free_port};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn http_endpoints_answer_and_unknown_routes_get_openai_errors() {
    let svc = Service::start(&[]).await;
    let client = reqwest::Client::new();

    let root = client.get(svc.http()).send().await.unwrap();
    assert_eq!(root.status(), 200);
    let root: Value = root.json().await.unwrap();
    assert_eq!(root["name"], "mcp-chat");
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
    assert!(root["endpoints"]["POST /v1/chat/completions"].is_string());

    let health = client
        .get(format!("{}/healthz", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let ready = client
        .get(format!("{}/readyz", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    for component in ["config", "http", "grpc"] {
        assert_eq!(ready["components"][component]["up"], true, "{ready}");
    }

    let missing = client
        .get(format!("{}/no/such/route", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    let error = &body["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/route"),
        "{body}"
    );
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );

    let wrong_method = client
        .delete(format!("{}/healthz", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DELETE"),
        "{body}"
    );
}

#[tokio::test]
async fn grpc_health_reflection_and_list_models() {
    let svc = Service::start(&[("DEFAULT_MODEL", "test-model")]).await;
    let channel = tonic::transport::Endpoint::from_shared(svc.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "mcpchat.v1.ChatService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.status(),
            ServingStatus::Serving,
            "health of {service:?}"
        );
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"mcpchat.v1.ChatService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let mut chat = ChatServiceClient::new(channel);
    let models = chat
        .list_models(mcp_chat::pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(models.default_model, "test-model");
    assert_eq!(models.models.len(), 1);
    assert_eq!(models.models[0].id, "test-model");
}

#[tokio::test]
async fn sigterm_on_an_idle_service_exits_zero() {
    let mut svc = Service::start(&[]).await;
    svc.signal("TERM");
    let status = svc.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

/// Runs the binary with `env` and returns (exit code, stderr) without waiting for readiness.
async fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), env, args).await
}

async fn run_in(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = command(dir, free_port(), free_port());
    cmd.envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn config_errors_exit_non_zero_before_binding() {
    let port = free_port();
    let port_text = port.to_string();
    let (code, _, stderr) = run_to_exit(
        &[("PORT", &port_text), ("MCP_CHAT_SHUTDOWN_GRACE", "later")],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("MCP_CHAT_SHUTDOWN_GRACE") && stderr.contains("server.shutdown_grace"),
        "{stderr}"
    );
    // Nothing was bound: the port is still free.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();

    let (code, _, stderr) = run_to_exit(&[], &["--config", "nope.toml"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("nope.toml"), "{stderr}");
}

#[tokio::test]
async fn check_config_prints_effective_values_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mcp-chat.toml"), "[server]\nport = 9100\n").unwrap();
    std::fs::write(dir.path().join(".env"), "DEFAULT_MODEL=from-dotenv\n").unwrap();
    let (code, stdout, stderr) = run_in(
        dir.path(),
        &[
            ("OPENAI_API_KEY", "sk-very-secret"),
            ("GRPC_PORT", "9200"),
            ("PORT", "9300"),
        ],
        &["check-config", "--servers-config", "/dev/null/none.json"],
    )
    .await;
    // The servers file does not exist: named in the error.
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("/dev/null/none.json"), "{stderr}");

    std::fs::write(
        dir.path().join("servers_config.json"),
        r#"{"mcpServers": {}}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = run_in(
        dir.path(),
        &[("OPENAI_API_KEY", "sk-very-secret"), ("GRPC_PORT", "9200")],
        &["check-config"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("sk-very-secret"), "{stdout}");
    assert!(stdout.contains("api_key = \"<redacted>\""), "{stdout}");
    assert!(stdout.contains("grpc_port = 9200"), "{stdout}");
    assert!(
        stdout.contains("default_model = \"from-dotenv\""),
        "{stdout}"
    );
}
