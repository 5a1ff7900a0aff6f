//! The loop with scripted fakes of the LLM and the hub: no network.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    config::{Config, ModelConfig, ToolMode},
    llm::{Completion, CompletionRequest, Endpoint, FinishReason, LlmError, LlmEvent, LlmStream},
    mcp::{ServerState, ToolOutcome, ToolSpec},
    model::{Message, Role, ToolCall, ToolChoice, ToolDef, Usage},
};

/// Answers from a script and records every request.
#[derive(Default)]
struct ScriptedLlm {
    script: Mutex<VecDeque<Result<Completion, LlmError>>>,
    seen: Mutex<Vec<CompletionRequest>>,
}

impl ScriptedLlm {
    fn new(script: Vec<Completion>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.into_iter().map(Ok).collect()),
            seen: Mutex::default(),
        })
    }
    fn next(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        self.seen.lock().unwrap().push(request.clone());
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .expect("the script ran out")
    }
    fn requests(&self) -> Vec<CompletionRequest> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl LlmClient for ScriptedLlm {
    async fn complete(
        &self,
        _: &Endpoint,
        request: &CompletionRequest,
    ) -> Result<Completion, LlmError> {
        self.next(request)
    }

    async fn stream(
        &self,
        _: &Endpoint,
        request: &CompletionRequest,
    ) -> Result<LlmStream, LlmError> {
        let completion = self.next(request)?;
        // Content in two deltas, then the whole.
        let mid = completion
            .content
            .char_indices()
            .nth(completion.content.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        let (a, b) = completion.content.split_at(mid);
        let events = vec![
            Ok(LlmEvent::Content(a.into())),
            Ok(LlmEvent::Content(b.into())),
            Ok(LlmEvent::Done(completion)),
        ];
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

fn text(content: &str) -> Completion {
    Completion {
        content: content.into(),
        tool_calls: vec![],
        finish_reason: FinishReason::Stop,
        usage: Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            ..Usage::default()
        }),
        refusal: None,
    }
}

fn calls(list: &[(&str, &str, &str)]) -> Completion {
    Completion {
        content: String::new(),
        tool_calls: list
            .iter()
            .map(|(id, name, args)| ToolCall {
                id: (*id).into(),
                name: (*name).into(),
                arguments: (*args).into(),
            })
            .collect(),
        finish_reason: FinishReason::ToolCalls,
        usage: Some(Usage {
            prompt_tokens: 20,
            completion_tokens: 7,
            total_tokens: 27,
            ..Usage::default()
        }),
        refusal: None,
    }
}

/// Tools `add` and `fail` and `slow` on server `fx`; records calls.
#[derive(Default)]
struct FakeHub {
    calls: Mutex<Vec<(String, Value)>>,
    cancelled: Mutex<u32>,
}

#[async_trait::async_trait]
impl ToolHub for FakeHub {
    fn tools(&self) -> Arc<[ToolSpec]> {
        ["add", "fail", "slow"]
            .iter()
            .map(|n| ToolSpec {
                name: (*n).into(),
                server: "fx".into(),
                tool: (*n).into(),
                description: format!("{n} tool"),
                input_schema: json!({"type": "object", "properties": {}}),
            })
            .collect()
    }

    async fn call(&self, name: &str, arguments: Value, cancel: CancellationToken) -> ToolOutcome {
        self.calls
            .lock()
            .unwrap()
            .push((name.into(), arguments.clone()));
        let outcome = |ok: bool, text: String| ToolOutcome {
            server: "fx".into(),
            tool: name.into(),
            ok,
            text,
            duration: Duration::from_millis(1),
        };
        match name {
            "add" => {
                let sum =
                    arguments["a"].as_i64().unwrap_or(0) + arguments["b"].as_i64().unwrap_or(0);
                // The first call finishes last, so order must come from the call list.
                if arguments["a"] == 1 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                outcome(true, sum.to_string())
            }
            "slow" => {
                tokio::select! {
                    () = cancel.cancelled() => { *self.cancelled.lock().unwrap() += 1; outcome(false, "cancelled".into()) }
                    () = tokio::time::sleep(Duration::from_secs(30)) => outcome(true, "done".into()),
                }
            }
            _ => outcome(false, "boom: the tool failed".into()),
        }
    }

    fn servers(&self) -> Vec<ServerState> {
        Vec::new()
    }
}

fn agent_with(
    llm: Arc<ScriptedLlm>,
    hub: Arc<FakeHub>,
    mode: ToolMode,
    max_iterations: u32,
) -> Agent {
    let mut config = Config::default();
    config.upstream.base_url = "http://127.0.0.1:9/v1".into();
    config.models = vec![ModelConfig {
        id: "m".into(),
        tool_mode: mode,
        ..ModelConfig::default()
    }];
    config.upstream.default_model = "m".into();
    config.agent.max_tool_iterations = max_iterations;
    config.agent.system_prompt = Some("be helpful".into());
    parts(llm, hub, &config)
}

fn parts(llm: Arc<ScriptedLlm>, hub: Arc<FakeHub>, config: &Config) -> Agent {
    Agent::new(AgentParts {
        llm,
        hub,
        sessions: Arc::new(crate::sessions::MemoryStore::new(Duration::from_secs(3600))),
        models: ModelTable::from_config(config).unwrap(),
        settings: config.agent.clone(),
        lock_timeout: Duration::from_secs(1),
        request_servers: None,
        tool_prefix: config.mcp.tool_prefix,
        response_ttl: std::time::Duration::from_secs(3600),
    })
}

fn user(text: &str) -> AgentRequest {
    AgentRequest {
        messages: vec![Message::new(Role::User, text)],
        ..AgentRequest::default()
    }
}

#[tokio::test]
async fn answers_without_tools() {
    let llm = ScriptedLlm::new(vec![text("hello")]);
    let agent = agent_with(llm.clone(), Arc::default(), ToolMode::Native, 10);
    let r = agent
        .chat(user("hi"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.message.content, "hello");
    assert_eq!(r.finish, Finish::Stop);
    assert_eq!(r.usage.usage.total_tokens, 15);
    assert!(r.executed.is_empty());
    let sent = &llm.requests()[0];
    assert_eq!(
        sent.messages[0],
        Message::new(Role::System, "be helpful"),
        "system prompt prepended"
    );
    assert_eq!(sent.tools.len(), 3, "MCP tools offered");
    assert_eq!(r.new_messages, vec![Message::new(Role::Assistant, "hello")]);
}

#[tokio::test]
async fn one_tool_call_then_answer() {
    let llm = ScriptedLlm::new(vec![
        calls(&[("c1", "add", r#"{"a": 2, "b": 3}"#)]),
        text("5"),
    ]);
    let hub = Arc::new(FakeHub::default());
    let agent = agent_with(llm.clone(), hub.clone(), ToolMode::Native, 10);
    let r = agent
        .chat(user("2+3?"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.message.content, "5");
    assert_eq!(r.executed.len(), 1);
    assert_eq!(
        (
            r.executed[0].server.as_str(),
            r.executed[0].result.as_str(),
            r.executed[0].ok
        ),
        ("fx", "5", true)
    );
    assert_eq!(
        r.usage.usage.total_tokens,
        27 + 15,
        "usage summed over both upstream calls"
    );
    let second = &llm.requests()[1];
    let n = second.messages.len();
    assert_eq!(second.messages[n - 2].tool_calls[0].id, "c1");
    assert_eq!(second.messages[n - 1], Message::tool_result("c1", "5"));
    assert_eq!(
        r.new_messages.len(),
        3,
        "assistant call, tool result, answer"
    );
}

#[tokio::test]
async fn parallel_calls_keep_call_order() {
    let llm = ScriptedLlm::new(vec![
        calls(&[
            ("c1", "add", r#"{"a": 1, "b": 1}"#),
            ("c2", "add", r#"{"a": 2, "b": 2}"#),
        ]),
        text("done"),
    ]);
    let agent = agent_with(llm.clone(), Arc::default(), ToolMode::Native, 10);
    let r = agent
        .chat(user("x"), CancellationToken::new())
        .await
        .unwrap();
    let second = &llm.requests()[1];
    let n = second.messages.len();
    assert_eq!(second.messages[n - 2], Message::tool_result("c1", "2"));
    assert_eq!(second.messages[n - 1], Message::tool_result("c2", "4"));
    assert_eq!(
        r.executed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c1", "c2"]
    );
}

#[tokio::test]
async fn tool_errors_and_bad_arguments_go_back_to_the_model() {
    let llm = ScriptedLlm::new(vec![
        calls(&[
            ("c1", "fail", "{}"),
            ("c2", "add", "{not json"),
            ("c3", "nope", "{}"),
        ]),
        text("sorry"),
    ]);
    let hub = Arc::new(FakeHub::default());
    let agent = agent_with(llm.clone(), hub.clone(), ToolMode::Native, 10);
    let r = agent
        .chat(user("x"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.message.content, "sorry");
    assert!(r.executed.iter().all(|c| !c.ok));
    assert!(r.executed[0].result.contains("boom"));
    assert!(r.executed[1].result.contains("not valid JSON"));
    assert!(r.executed[2].result.contains("no tool named \"nope\""));
    assert_eq!(
        hub.calls.lock().unwrap().len(),
        1,
        "only the well-formed call reached the hub"
    );
    let second = &llm.requests()[1];
    assert!(
        second
            .messages
            .iter()
            .any(|m| m.role == Role::Tool && m.content.contains("boom"))
    );
}

#[tokio::test]
async fn iteration_limit_stops_the_loop() {
    let llm = ScriptedLlm::new(vec![
        calls(&[("c1", "add", "{}")]),
        calls(&[("c2", "add", "{}")]),
        calls(&[("c3", "add", "{}")]),
    ]);
    let agent = agent_with(llm.clone(), Arc::default(), ToolMode::Native, 2);
    let r = agent
        .chat(user("x"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.finish, Finish::IterationLimit);
    assert_eq!(llm.requests().len(), 2, "no third upstream call");
    // No made-up text: the answer and the stored turn hold what the model said, nothing more.
    assert_eq!(r.message.content, "", "no note in place of an answer");
    assert!(r.message.tool_calls.is_empty());
    assert!(
        r.new_messages
            .iter()
            .all(|m| m.role != Role::Assistant || !m.tool_calls.is_empty()),
        "no assistant text stored: {:?}",
        r.new_messages
    );
    assert_eq!(
        r.new_messages.last().map(|m| m.role),
        Some(Role::Tool),
        "the stored turn ends with the last round's results"
    );
    // Every call in the stored turn has its result.
    let calls: usize = r.new_messages.iter().map(|m| m.tool_calls.len()).sum();
    let results = r
        .new_messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .count();
    assert_eq!(calls, results);
}

/// A streamed turn stopped by the limit shows only what the model said (no note), and
/// ends with the limit as its finish reason.
#[tokio::test]
async fn iteration_limit_in_a_stream_adds_no_text() {
    let mut first = calls(&[("c1", "add", "{}")]);
    first.content = "Let me add.".into();
    let llm = ScriptedLlm::new(vec![first, calls(&[("c2", "add", "{}")])]);
    let agent = agent_with(llm, Arc::default(), ToolMode::Native, 2);
    let mut rx = agent.stream(user("x"), CancellationToken::new()).unwrap();
    let mut content = String::new();
    let mut done = None;
    while let Some(event) = rx.recv().await {
        match event.unwrap() {
            AgentEvent::Content(t) => content.push_str(&t),
            AgentEvent::Done(r) => done = Some(r),
            _ => {}
        }
    }
    let r = done.unwrap();
    assert_eq!(content, "Let me add.");
    assert_eq!(r.message.content, "Let me add.");
    assert_eq!(r.finish, Finish::IterationLimit);
    assert_eq!(r.new_messages.last().map(|m| m.role), Some(Role::Tool));
}

#[tokio::test]
async fn client_tool_call_is_returned_to_the_caller() {
    let llm = ScriptedLlm::new(vec![calls(&[(
        "c1",
        "get_weather",
        r#"{"city": "Paris"}"#,
    )])]);
    let hub = Arc::new(FakeHub::default());
    let agent = agent_with(llm.clone(), hub.clone(), ToolMode::Native, 10);
    let mut request = user("weather?");
    request.client_tools = vec![ToolDef {
        name: "get_weather".into(),
        description: "weather".into(),
        parameters: json!({"type": "object"}),
        strict: None,
    }];
    let r = agent.chat(request, CancellationToken::new()).await.unwrap();
    assert_eq!(r.finish, Finish::ToolCalls);
    assert_eq!(r.message.tool_calls[0].name, "get_weather");
    assert_eq!(r.message.tool_calls[0].arguments, r#"{"city": "Paris"}"#);
    assert!(
        hub.calls.lock().unwrap().is_empty(),
        "client tools never run server-side"
    );
    assert_eq!(
        llm.requests()[0].tools.len(),
        4,
        "client tool offered beside the MCP tools"
    );
}

#[tokio::test]
async fn tool_choice_none_is_passed_and_nothing_runs() {
    let llm = ScriptedLlm::new(vec![text("no tools used")]);
    let agent = agent_with(llm.clone(), Arc::default(), ToolMode::Native, 10);
    let mut request = user("x");
    request.tool_choice = Some(ToolChoice::None);
    let r = agent.chat(request, CancellationToken::new()).await.unwrap();
    assert_eq!(r.message.content, "no tools used");
    assert_eq!(llm.requests()[0].tool_choice, Some(ToolChoice::None));
}

#[tokio::test]
async fn forced_tool_choice_applies_to_the_first_round_only() {
    let llm = ScriptedLlm::new(vec![calls(&[("c1", "add", "{}")]), text("ok")]);
    let agent = agent_with(llm.clone(), Arc::default(), ToolMode::Native, 10);
    let mut request = user("x");
    request.tool_choice = Some(ToolChoice::Function("add".into()));
    agent.chat(request, CancellationToken::new()).await.unwrap();
    let seen = llm.requests();
    assert_eq!(
        seen[0].tool_choice,
        Some(ToolChoice::Function("add".into()))
    );
    assert_eq!(seen[1].tool_choice, Some(ToolChoice::Auto));
}

#[tokio::test]
async fn prompt_mode_parses_calls_and_feeds_results_as_user_messages() {
    let llm = ScriptedLlm::new(vec![
        text("I will add them.\n{\"tool\": \"add\", \"arguments\": {\"a\": 2, \"b\": 2}}"),
        text("The sum is 4."),
    ]);
    let agent = agent_with(llm.clone(), Arc::default(), ToolMode::Prompt, 10);
    let r = agent
        .chat(user("2+2?"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.message.content, "The sum is 4.");
    assert_eq!(r.executed[0].result, "4");
    let seen = llm.requests();
    assert!(seen[0].tools.is_empty(), "prompt mode sends no tools field");
    assert!(
        seen[0].messages[0].content.contains("- add: add tool"),
        "tools described in the system prompt"
    );
    let last = seen[1].messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    assert!(last.content.contains("Result of the tool add:\n4"));
}

/// A client tool call answered by the caller reaches a prompt-mode upstream in its own
/// form (the JSON call, then a user message with the result), never as `role: tool`.
#[tokio::test]
async fn prompt_mode_translates_a_client_tool_round_trip() {
    let llm = ScriptedLlm::new(vec![text("It is sunny.")]);
    let agent = agent_with(llm.clone(), Arc::default(), ToolMode::Prompt, 10);
    let mut request = user("weather?");
    request.client_tools = vec![crate::model::ToolDef {
        name: "get_weather".into(),
        description: "weather".into(),
        parameters: serde_json::json!({"type": "object"}),
        strict: None,
    }];
    request.messages.push(Message {
        tool_calls: vec![crate::model::ToolCall {
            id: "c9".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }],
        ..Message::new(Role::Assistant, "")
    });
    request.messages.push(Message::tool_result("c9", "sunny"));
    let r = agent.chat(request, CancellationToken::new()).await.unwrap();
    assert_eq!(r.message.content, "It is sunny.");
    let sent = &llm.requests()[0].messages;
    assert!(
        sent.iter()
            .all(|m| m.role != Role::Tool && m.tool_calls.is_empty()),
        "{sent:?}"
    );
    let call = &sent[sent.len() - 2];
    assert_eq!(
        (call.role, call.content.as_str()),
        (
            Role::Assistant,
            r#"{"arguments":{"city":"Paris"},"tool":"get_weather"}"#
        )
    );
    let result = sent.last().unwrap();
    assert_eq!(result.role, Role::User);
    assert_eq!(result.content, "Result of the tool get_weather:\nsunny");
}

#[tokio::test]
async fn stream_delivers_events_in_order_across_tool_calls() {
    let llm = ScriptedLlm::new(vec![
        calls(&[("c1", "add", r#"{"a": 2, "b": 3}"#)]),
        text("the answer is 5"),
    ]);
    let agent = agent_with(llm, Arc::default(), ToolMode::Native, 10);
    let mut rx = agent.stream(user("x"), CancellationToken::new()).unwrap();
    let mut kinds = Vec::new();
    let mut content = String::new();
    while let Some(event) = rx.recv().await {
        let event = event.unwrap();
        kinds.push(match &event {
            AgentEvent::Start { .. } => "start",
            AgentEvent::ToolsListed(_) => "listed",
            AgentEvent::Content(t) => {
                content.push_str(t);
                "content"
            }
            AgentEvent::ToolCallStarted { .. } => "started",
            AgentEvent::ToolCallFinished { ok: true, .. } => "finished",
            AgentEvent::ToolCallFinished { .. } => "failed",
            AgentEvent::ToolCallProgress { .. } => "progress",
            AgentEvent::ClientToolCall(_) => "client",
            AgentEvent::ElicitationRequired(_) => "elicitation",
            AgentEvent::ApprovalRequired(_) => "approval",
            AgentEvent::Usage(_) => "usage",
            AgentEvent::Done(_) => "done",
        });
    }
    assert_eq!(
        kinds,
        [
            "start", "started", "finished", "content", "content", "usage", "done"
        ]
    );
    assert_eq!(content, "the answer is 5");
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_tool_call() {
    let llm = ScriptedLlm::new(vec![calls(&[("c1", "slow", "{}")]), text("never")]);
    let hub = Arc::new(FakeHub::default());
    let agent = agent_with(llm.clone(), hub.clone(), ToolMode::Native, 10);
    let mut rx = agent.stream(user("x"), CancellationToken::new()).unwrap();
    // Read until the slow tool started, then go away.
    while let Some(Ok(event)) = rx.recv().await {
        if matches!(event, AgentEvent::ToolCallStarted { .. }) {
            break;
        }
    }
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), async {
        while *hub.cancelled.lock().unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the tool call was not cancelled");
    assert_eq!(
        llm.requests().len(),
        1,
        "no further upstream call after the client left"
    );
}

#[tokio::test]
async fn missing_api_key_names_the_setting() {
    let mut config = Config::default();
    config.upstream.default_model = "gpt-4o".into();
    let agent = parts(
        ScriptedLlm::new(vec![]),
        Arc::new(FakeHub::default()),
        &config,
    );
    let err = agent
        .chat(user("x"), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
}

#[tokio::test]
async fn unknown_model_is_not_found() {
    let agent = agent_with(
        ScriptedLlm::new(vec![]),
        Arc::default(),
        ToolMode::Native,
        10,
    );
    let mut request = user("x");
    request.model = Some("gpt-9".into());
    assert!(
        matches!(agent.chat(request, CancellationToken::new()).await, Err(CoreError::ModelNotFound(m)) if m == "gpt-9")
    );
}

#[tokio::test]
async fn usage_is_estimated_when_the_upstream_gives_none() {
    let mut answer = text("a fairly long answer with several tokens in it");
    answer.usage = None;
    let agent = agent_with(
        ScriptedLlm::new(vec![answer]),
        Arc::default(),
        ToolMode::Native,
        10,
    );
    let r = agent
        .chat(user("hello there"), CancellationToken::new())
        .await
        .unwrap();
    assert!(r.usage.estimated);
    assert!(r.usage.usage.completion_tokens >= 8, "{:?}", r.usage);
    assert_eq!(
        r.usage.usage.total_tokens,
        r.usage.usage.prompt_tokens + r.usage.usage.completion_tokens
    );
}

#[tokio::test]
async fn a_session_turn_is_stored_whole_or_not_at_all() {
    let llm = Arc::new(ScriptedLlm {
        script: Mutex::new(VecDeque::from([
            Ok(calls(&[("c1", "add", r#"{"a": 1, "b": 2}"#)])),
            Ok(text("3")),
            Err(LlmError::Status {
                status: 500,
                message: "down".into(),
                code: None,
                param: None,
                retry_after: None,
            }),
            Ok(text("again")),
        ])),
        seen: Mutex::default(),
    });
    let mut config = Config::default();
    config.upstream.base_url = "http://127.0.0.1:9/v1".into();
    config.upstream.default_model = "m".into();
    config.models = vec![ModelConfig {
        id: "m".into(),
        ..ModelConfig::default()
    }];
    let agent = parts(llm.clone(), Arc::default(), &config);
    let id = crate::sessions::SessionId::generate();
    let in_session = |text: &str| AgentRequest {
        session: Some(id.clone()),
        ..user(text)
    };

    let r = agent
        .chat(in_session("1+2?"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.session_id.as_deref(), Some(id.as_str()));
    let stored = agent.session(&id).await.unwrap().messages;
    let roles: Vec<Role> = stored.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(stored[1].tool_calls[0].id, "c1");

    // A failed turn leaves the session as it was.
    assert!(
        agent
            .chat(in_session("again?"), CancellationToken::new())
            .await
            .is_err()
    );
    assert_eq!(agent.session(&id).await.unwrap().messages, stored);

    // The next turn sees the whole stored history.
    agent
        .chat(in_session("and now?"), CancellationToken::new())
        .await
        .unwrap();
    let last = llm.requests().pop().unwrap();
    assert_eq!(last.messages.len(), 5, "stored 4 + the new user message");
    assert_eq!(agent.session(&id).await.unwrap().messages.len(), 6);
}

/// The context budget leaves room for the tools' definitions: with large schemas offered,
/// more of the oldest history is dropped, and what is sent fits the window.
#[tokio::test]
async fn context_trimming_budgets_the_tool_schemas() {
    let mut config = Config::default();
    config.upstream.base_url = "http://127.0.0.1:9/v1".into();
    config.models = vec![ModelConfig {
        id: "m".into(),
        context_window: 800,
        ..ModelConfig::default()
    }];
    config.upstream.default_model = "m".into();
    let history = || {
        let mut m: Vec<Message> = (0..20)
            .flat_map(|i| {
                [
                    Message::new(
                        Role::User,
                        format!("question {i}: what about the weather on day {i}?"),
                    ),
                    Message::new(
                        Role::Assistant,
                        format!("answer {i}: it will be sunny on day {i}."),
                    ),
                ]
            })
            .collect();
        m.push(Message::new(Role::User, "and today?"));
        m
    };
    let big_tool = crate::model::ToolDef {
        name: "lookup".into(),
        description: "word ".repeat(250),
        parameters: json!({"type": "object"}),
        strict: None,
    };
    let mut sent = Vec::new();
    for tools in [Vec::new(), vec![big_tool]] {
        let llm = ScriptedLlm::new(vec![text("ok")]);
        let agent = parts(llm.clone(), Arc::default(), &config);
        let request = AgentRequest {
            messages: history(),
            client_tools: tools.clone(),
            ..AgentRequest::default()
        };
        agent.chat(request, CancellationToken::new()).await.unwrap();
        let seen = llm.requests()[0].clone();
        let tool_tokens: u32 = seen
            .tools
            .iter()
            .map(|t| usage::count(&t.description) + usage::count(&t.parameters.to_string()))
            .sum();
        let message_tokens: u32 = seen
            .messages
            .iter()
            .map(crate::sessions::message_tokens)
            .sum();
        assert!(
            message_tokens + tool_tokens <= 800 - 200,
            "{message_tokens} + {tool_tokens}"
        );
        sent.push(seen.messages.len());
    }
    assert!(
        sent[1] < sent[0],
        "the tools' tokens left less room for history: {sent:?}"
    );
}

/// Each message of a long turn is tokenized once for the context budget (and the usage
/// estimate), not once per round: later rounds count only what they added.
#[tokio::test]
async fn a_turn_counts_each_message_once_across_rounds() {
    let mut config = Config::default();
    config.upstream.base_url = "http://127.0.0.1:9/v1".into();
    config.models = vec![ModelConfig {
        id: "m".into(),
        context_window: 100_000,
        ..ModelConfig::default()
    }];
    config.upstream.default_model = "m".into();
    config.agent.system_prompt = Some("be helpful".into());
    let mut no_usage = text("done");
    no_usage.usage = None;
    let llm = ScriptedLlm::new(vec![
        calls(&[("c1", "add", r#"{"a": 1, "b": 2}"#)]),
        calls(&[("c2", "add", r#"{"a": 3, "b": 4}"#)]),
        no_usage,
    ]);
    let agent = parts(llm.clone(), Arc::default(), &config);
    let r = agent
        .chat(user("add twice"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.message.content, "done");
    assert_eq!(llm.requests().len(), 3);
    // system, user; then each round's call and result: 6 messages, each counted once
    // (uncached: 2 + 4 + 6 for the budget, and 6 more for the estimate).
    assert_eq!(agent.inner.tokens.counted(), 6);
}

/// Records the name of every span opened under it.
struct SpanNames(Arc<Mutex<Vec<&'static str>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanNames {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.lock().unwrap().push(attrs.metadata().name());
    }
}

#[tokio::test]
async fn without_a_trace_exporter_the_upstream_call_span_is_debug_level() {
    use tracing_subscriber::{Layer as _, filter::LevelFilter, prelude::*};
    assert!(!crate::telemetry::exporting());
    let llm = ScriptedLlm::new(vec![text("one"), text("two")]);
    let agent = agent_with(llm, Arc::default(), ToolMode::Native, 10);
    for (level, upstream_span) in [(LevelFilter::INFO, false), (LevelFilter::DEBUG, true)] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber =
            tracing_subscriber::registry().with(SpanNames(seen.clone()).with_filter(level));
        let guard = tracing::subscriber::set_default(subscriber);
        agent
            .chat(user("hi"), CancellationToken::new())
            .await
            .unwrap();
        drop(guard);
        let seen = seen.lock().unwrap();
        assert!(seen.contains(&"agent.run"), "{level}: {seen:?}");
        assert_eq!(
            seen.contains(&"llm.call"),
            upstream_span,
            "{level}: {seen:?}"
        );
    }
}
