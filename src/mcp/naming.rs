//! Exposed tool names <-> (server, tool), and input-schema repair.
//!
//! Names offered to the model must match `^[a-zA-Z0-9_-]{1,64}$` and be unique across
//! servers. A tool keeps its own (sanitised) name unless another server has a tool of the
//! same name, or the prefix policy is `always`: then it becomes `server__tool`. Names longer
//! than 64 characters are cut and given a short hash so they stay unique. The index built
//! here is the only mapping back ([`extend_index`] names a request's own servers beside it): [`ToolSpec::server`] and [`ToolSpec::tool`] hold the
//! original names.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::ToolSpec;
use crate::config::ToolPrefix;

/// The longest name OpenAI accepts for a function.
pub const MAX_NAME_LEN: usize = 64;
const SEPARATOR: &str = "__";

/// A tool as one server lists it (after the allow/deny filters).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTool {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    /// The server's own definition (title, output schema, annotations, `_meta`), for MCP
    /// clients of mcp-chat; `None` where no server listed it (tests).
    pub definition: Option<std::sync::Arc<rmcp::model::Tool>>,
}

/// Builds the tool index offered to the model from each server's tools, in server order.
/// `servers` holds every server whose tools are known (so names stay stable while one is
/// down); `offered` says which of them are offered now.
pub fn build_index(servers: &[(&str, &[ListedTool], bool)], prefix: ToolPrefix) -> Vec<ToolSpec> {
    let mut owners: HashMap<String, HashSet<&str>> = HashMap::new();
    for (server, tools, _) in servers {
        for tool in tools.iter() {
            owners
                .entry(sanitize(&tool.name))
                .or_default()
                .insert(server);
        }
    }
    let mut used = HashSet::new();
    let mut index = Vec::new();
    for (server, tools, offered) in servers {
        for tool in tools.iter() {
            let base = sanitize(&tool.name);
            let shared = owners.get(&base).is_some_and(|s| s.len() > 1);
            let wanted = if prefix == ToolPrefix::Always || shared {
                format!("{}{SEPARATOR}{base}", sanitize(server))
            } else {
                base
            };
            let name = unique(fit(&wanted), &mut used);
            if *offered {
                index.push(ToolSpec {
                    name,
                    server: (*server).to_string(),
                    tool: tool.name.clone(),
                    description: tool.description.clone(),
                    input_schema: repair_schema(tool.input_schema.clone()),
                });
            }
        }
    }
    index
}

/// Names the tools of more servers (a request's own) beside `taken`, the tools already
/// offered, whose names do not change. A tool keeps its own name unless it is already taken,
/// another of these servers has a tool of that name, or the prefix policy is `always`: then
/// it becomes `server__tool`, made unique like the rest.
pub fn extend_index(
    taken: &[ToolSpec],
    servers: &[(&str, &[ListedTool])],
    prefix: ToolPrefix,
) -> Vec<ToolSpec> {
    let mut owners: HashMap<String, HashSet<&str>> = HashMap::new();
    for (server, tools) in servers {
        for tool in tools.iter() {
            owners
                .entry(sanitize(&tool.name))
                .or_default()
                .insert(server);
        }
    }
    let mut used: HashSet<String> = taken.iter().map(|t| t.name.clone()).collect();
    let mut index = Vec::new();
    for (server, tools) in servers {
        for tool in tools.iter() {
            let base = sanitize(&tool.name);
            let shared = owners.get(&base).is_some_and(|s| s.len() > 1) || used.contains(&base);
            let wanted = if prefix == ToolPrefix::Always || shared {
                format!("{}{SEPARATOR}{base}", sanitize(server))
            } else {
                base
            };
            index.push(ToolSpec {
                name: unique(fit(&wanted), &mut used),
                server: (*server).to_string(),
                tool: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: repair_schema(tool.input_schema.clone()),
            });
        }
    }
    index
}

/// Replaces every character outside `[a-zA-Z0-9_-]` with `_`; never empty.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "tool".into() } else { s }
}

/// Cuts a (sanitised, ASCII) name to 64 characters, ending in a hash of the whole name.
fn fit(name: &str) -> String {
    if name.len() <= MAX_NAME_LEN {
        return name.to_string();
    }
    let hash = format!("{:08x}", fnv1a(name) as u32);
    format!("{}_{hash}", &name[..MAX_NAME_LEN - hash.len() - 1])
}

/// Makes `name` unique among `used` by a numbered suffix, keeping the 64-char limit.
fn unique(name: String, used: &mut HashSet<String>) -> String {
    if used.insert(name.clone()) {
        return name;
    }
    for n in 2u32.. {
        let suffix = format!("_{n}");
        let stem_len = name.len().min(MAX_NAME_LEN - suffix.len());
        let candidate = format!("{}{suffix}", &name[..stem_len]);
        if used.insert(candidate.clone()) {
            return candidate;
        }
    }
    name
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Makes an input schema acceptable to OpenAI function calling: an object schema with
/// `type: "object"` and a `properties` object. Everything else passes through.
pub fn repair_schema(schema: Value) -> Value {
    let mut map = match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    if map.get("type").and_then(Value::as_str) != Some("object") {
        map.insert("type".into(), Value::String("object".into()));
    }
    if !map.get("properties").is_some_and(Value::is_object) {
        map.insert("properties".into(), Value::Object(Map::new()));
    }
    if map.get("required").is_some_and(|r| !r.is_array()) {
        map.remove("required");
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool(name: &str) -> ListedTool {
        ListedTool {
            name: name.into(),
            description: format!("{name} it"),
            input_schema: json!({"type": "object", "properties": {}}),
            definition: None,
        }
    }

    fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn collisions_are_prefixed_only_where_names_are_shared() {
        let a = [tool("echo"), tool("add")];
        let b = [tool("echo"), tool("mul")];
        let index = build_index(&[("a", &a, true), ("b", &b, true)], ToolPrefix::OnCollision);
        let names: Vec<_> = index.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a__echo", "add", "b__echo", "mul"]);
        assert_eq!(
            (index[2].server.as_str(), index[2].tool.as_str()),
            ("b", "echo")
        );
    }

    #[test]
    fn always_prefixes_every_tool() {
        let a = [tool("echo")];
        let index = build_index(&[("my server", &a, true)], ToolPrefix::Always);
        assert_eq!(index[0].name, "my_server__echo");
        assert_eq!(index[0].tool, "echo");
    }

    #[test]
    fn names_are_sanitised_and_map_back_to_the_original() {
        let a = [tool("get.weather/now"), tool("ünï cødé"), tool("")];
        let index = build_index(&[("s", &a, true)], ToolPrefix::OnCollision);
        assert_eq!(index[0].name, "get_weather_now");
        assert_eq!(index[0].tool, "get.weather/now");
        assert!(index.iter().all(|t| valid(&t.name)), "{index:?}");
        assert_eq!(index[2].name, "tool");
    }

    #[test]
    fn long_names_are_cut_to_64_and_stay_unique() {
        let long1 = format!("{}_one", "x".repeat(80));
        let long2 = format!("{}_two", "x".repeat(80));
        let a = [tool(&long1), tool(&long2)];
        let index = build_index(&[("server", &a, true)], ToolPrefix::Always);
        assert!(index.iter().all(|t| valid(&t.name)), "{index:?}");
        assert_ne!(index[0].name, index[1].name);
        assert_eq!(index[0].tool, long1);
    }

    #[test]
    fn sanitised_duplicates_get_a_numbered_suffix() {
        let a = [tool("a.b"), tool("a/b")];
        let index = build_index(&[("s", &a, true)], ToolPrefix::OnCollision);
        assert_eq!(index[0].name, "a_b");
        assert_eq!(index[1].name, "a_b_2");
        assert_eq!(index[1].tool, "a/b");
    }

    #[test]
    fn servers_that_are_down_keep_names_stable_but_offer_nothing() {
        let a = [tool("echo")];
        let b = [tool("echo")];
        let index = build_index(
            &[("a", &a, false), ("b", &b, true)],
            ToolPrefix::OnCollision,
        );
        assert_eq!(index.len(), 1);
        assert_eq!(index[0].name, "b__echo");
    }

    #[test]
    fn more_servers_are_named_beside_the_taken_names_which_stay() {
        let hub = build_index(
            &[("fix", &[tool("echo"), tool("add")], true)],
            ToolPrefix::OnCollision,
        );
        let r1 = [tool("echo"), tool("mul"), tool("div")];
        let r2 = [tool("div")];
        let more = extend_index(&hub, &[("req", &r1), ("two", &r2)], ToolPrefix::OnCollision);
        let names: Vec<_> = more.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["req__echo", "mul", "req__div", "two__div"]);
        assert_eq!(
            (more[0].server.as_str(), more[0].tool.as_str()),
            ("req", "echo")
        );
        // A prefixed name that is itself taken still ends up unique.
        let taken = [
            ToolSpec {
                name: "req__echo".into(),
                ..hub[0].clone()
            },
            hub[0].clone(),
        ];
        let more = extend_index(&taken, &[("req", &r1[..1])], ToolPrefix::OnCollision);
        assert_eq!(more[0].name, "req__echo_2");
        let more = extend_index(&[], &[("req", &r1[1..2])], ToolPrefix::Always);
        assert_eq!(more[0].name, "req__mul");
    }

    #[test]
    fn schemas_are_repaired_for_openai() {
        assert_eq!(
            repair_schema(json!({})),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            repair_schema(json!({"properties": {"x": {"type": "string"}}, "required": "x"})),
            json!({"type": "object", "properties": {"x": {"type": "string"}}})
        );
        assert_eq!(
            repair_schema(json!(null)),
            json!({"type": "object", "properties": {}})
        );
        let good = json!({"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"], "additionalProperties": false});
        assert_eq!(repair_schema(good.clone()), good);
    }
}
