//! How `mcp-chat tools call` answers a server that asks for input mid-call
//! (`elicitation/create`): on a terminal it asks field by field (each checked against the
//! requested schema); with `--accept-defaults` it accepts the schema's defaults (SEP-1034)
//! without asking; otherwise it declines. Sampling requests are refused: this command has
//! no model.

use std::io::{BufRead, IsTerminal, Write};

use mcp_chat::mcp::asks::{self, Caller, ElicitAnswer, Elicitation};
use serde_json::{Map, Value};

pub struct TerminalCaller {
    pub accept_defaults: bool,
}

#[async_trait::async_trait]
impl Caller for TerminalCaller {
    fn patience(&self) -> Option<std::time::Duration> {
        // A person at the terminal may take a while to fill a form.
        (std::io::stdin().is_terminal() && !self.accept_defaults)
            .then_some(std::time::Duration::from_secs(600))
    }

    async fn elicit(&self, request: Elicitation) -> ElicitAnswer {
        let accept_defaults = self.accept_defaults;
        tokio::task::spawn_blocking(move || answer(&request, accept_defaults))
            .await
            .unwrap_or_else(|e| ElicitAnswer::Decline(format!("the prompt failed: {e}")))
    }
}

fn say(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

fn answer(request: &Elicitation, accept_defaults: bool) -> ElicitAnswer {
    say(&format!(
        "mcp-chat: server {:?} asks: {}\n",
        request.server, request.message
    ));
    let interactive = std::io::stdin().is_terminal() && !accept_defaults;
    if let Some(url) = &request.url {
        say(&format!("  open {url}\n"));
        if !interactive {
            return ElicitAnswer::Decline("a URL request needs a person at a terminal".into());
        }
        return match ask("Done (y), decline (n) or cancel (c)? [y/n/c] ").as_deref() {
            Some("y" | "Y" | "yes") => ElicitAnswer::Accept(Map::new()),
            Some("c" | "C") => ElicitAnswer::Cancel,
            _ => ElicitAnswer::Decline("declined at the terminal".into()),
        };
    }
    let schema = request.schema.clone().unwrap_or(Value::Null);
    let content = if interactive {
        match fill(&schema) {
            Some(content) => content,
            None => return ElicitAnswer::Cancel,
        }
    } else if accept_defaults {
        asks::with_defaults(&schema, Map::new())
    } else {
        say("  declined: not a terminal (use --accept-defaults to accept the defaults)\n");
        return ElicitAnswer::Decline("no terminal to ask at".into());
    };
    match asks::validate(&schema, &content) {
        Ok(()) => {
            say(&format!("  answered {}\n", Value::Object(content.clone())));
            ElicitAnswer::Accept(content)
        }
        Err(why) => {
            say(&format!("  declined: {why}\n"));
            ElicitAnswer::Decline(why)
        }
    }
}

/// One line from the terminal, trimmed; `None` at end of input.
fn ask(prompt: &str) -> Option<String> {
    say(prompt);
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

/// Asks for each property (an empty answer takes the default, or leaves it out); a value
/// that does not fit its schema is asked again. `None` when the input ends.
fn fill(schema: &Value) -> Option<Map<String, Value>> {
    let mut content = Map::new();
    let props = schema.get("properties").and_then(Value::as_object);
    for (name, property) in props.into_iter().flatten() {
        let kind = property
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        let default = property.get("default");
        let hint = default.map(|d| format!(" [{d}]")).unwrap_or_default();
        let title = property
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or(name);
        loop {
            let line = ask(&format!("  {title} ({kind}){hint}: "))?;
            let value = if line.is_empty() {
                match default {
                    Some(d) => d.clone(),
                    None => break,
                }
            } else {
                parse(kind, &line)
            };
            let mut one = Map::new();
            one.insert(name.clone(), value.clone());
            let single = serde_json::json!({"properties": {name: property}});
            match asks::validate(&single, &one) {
                Ok(()) => {
                    content.insert(name.clone(), value);
                    break;
                }
                Err(why) => say(&format!("  {why}\n")),
            }
        }
    }
    Some(content)
}

/// A typed value from what was typed (a string when it does not parse as the type).
fn parse(kind: &str, line: &str) -> Value {
    match kind {
        "integer" => line.parse::<i64>().map(Value::from).ok(),
        "number" => line.parse::<f64>().ok().map(Value::from),
        "boolean" => match line {
            "y" | "yes" | "true" => Some(Value::Bool(true)),
            "n" | "no" | "false" => Some(Value::Bool(false)),
            _ => None,
        },
        "array" => Some(Value::Array(
            line.split(',')
                .map(|s| Value::String(s.trim().to_string()))
                .collect(),
        )),
        _ => None,
    }
    .unwrap_or_else(|| Value::String(line.to_string()))
}
