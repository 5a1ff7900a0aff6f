//! A `tools/call` result as one string for the model.
//!
//! Text parts are joined with newlines, `structuredContent` is added as compact JSON (unless a
//! text part already carries it), images, audio and embedded resources are summarised by
//! their mime type and size, and the whole is capped with a visible truncation marker cut on
//! a char boundary. Works on the JSON form of the result so it follows the wire format, not
//! one SDK version's types.

use serde_json::Value;

/// Flattens a `CallToolResult` (as JSON) into text for the model, capped at `max` bytes.
pub fn flatten(result: &Value, max: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(content) = result.get("content").and_then(Value::as_array) {
        parts.extend(content.iter().map(summarise_block));
    }
    if let Some(structured) = result.get("structuredContent").filter(|v| !v.is_null()) {
        let already_there = parts
            .iter()
            .any(|p| serde_json::from_str::<Value>(p).is_ok_and(|parsed| &parsed == structured));
        if !already_there {
            parts.push(structured.to_string());
        }
    }
    let text = if parts.is_empty() {
        "(the tool returned no content)".to_string()
    } else {
        parts.join("\n")
    };
    truncate(text, max)
}

fn summarise_block(block: &Value) -> String {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    let str_field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match kind {
        "text" => str_field(block, "text").unwrap_or_default(),
        "image" | "audio" => format!(
            "[{kind}: {}, {} bytes]",
            str_field(block, "mimeType").unwrap_or_else(|| "unknown type".into()),
            base64_len(block.get("data").and_then(Value::as_str).unwrap_or(""))
        ),
        "resource" => {
            let res = block.get("resource").unwrap_or(&Value::Null);
            let uri = str_field(res, "uri").unwrap_or_default();
            let mime = str_field(res, "mimeType").unwrap_or_else(|| "unknown type".into());
            let size = match (res.get("text"), res.get("blob")) {
                (Some(Value::String(t)), _) => t.len(),
                (_, Some(Value::String(b))) => base64_len(b),
                _ => 0,
            };
            format!("[embedded resource: {uri}, {mime}, {size} bytes]")
        }
        "resource_link" => format!(
            "[resource link: {}{}]",
            str_field(block, "uri").unwrap_or_default(),
            str_field(block, "name")
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        _ => block.to_string(),
    }
}

/// Decoded size of a base64 string.
fn base64_len(data: &str) -> usize {
    let trimmed = data.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

/// Caps `text` at `max` bytes (marker included when there is room), cutting on a char
/// boundary and saying how much was left out.
pub fn truncate(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let marker_for = |kept: usize| format!("\n[… truncated: {kept} of {total} bytes shown]");
    let budget = max.saturating_sub(marker_for(max).len());
    let mut cut = budget.min(total);
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = text[..cut].to_string();
    out.push_str(&marker_for(cut));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_parts_are_joined_and_structured_content_added() {
        let r = json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                       "structuredContent": {"x": 1}});
        assert_eq!(flatten(&r, 1000), "a\nb\n{\"x\":1}");
    }

    #[test]
    fn structured_content_is_not_repeated_when_a_text_part_has_it() {
        let r = json!({"content": [{"type": "text", "text": "{\"x\": 1}"}], "structuredContent": {"x": 1}});
        assert_eq!(flatten(&r, 1000), "{\"x\": 1}");
    }

    #[test]
    fn images_and_resources_are_summarised() {
        let r = json!({"content": [
            {"type": "image", "mimeType": "image/png", "data": "AAAA"},
            {"type": "resource", "resource": {"uri": "file:///a.txt", "mimeType": "text/plain", "text": "hello"}},
            {"type": "resource", "resource": {"uri": "mem://b", "blob": "AAAAAA=="}},
            {"type": "resource_link", "uri": "file:///c", "name": "c"}
        ]});
        assert_eq!(
            flatten(&r, 1000),
            "[image: image/png, 3 bytes]\n[embedded resource: file:///a.txt, text/plain, 5 bytes]\n[embedded resource: mem://b, unknown type, 4 bytes]\n[resource link: file:///c (c)]"
        );
    }

    #[test]
    fn empty_results_say_so() {
        assert_eq!(
            flatten(&json!({"content": []}), 100),
            "(the tool returned no content)"
        );
    }

    #[test]
    fn long_output_is_capped_with_a_marker_on_a_char_boundary() {
        let text = "é".repeat(1000); // 2000 bytes
        let out = truncate(text, 101);
        assert!(out.len() <= 101, "{}", out.len());
        assert!(out.contains("truncated"), "{out}");
        assert!(out.contains("of 2000 bytes shown"), "{out}");
        assert!(out.starts_with('é'));
        assert_eq!(truncate("short".into(), 100), "short");
    }

    #[test]
    fn a_cap_smaller_than_the_marker_still_marks() {
        let out = truncate("x".repeat(500), 10);
        assert!(out.contains("truncated: 0 of 500"), "{out}");
    }
}
