//! The scanner behind the layer rules: Rust source with comments and literals blanked, and
//! the `crate::` paths (expanded `use` trees and inline paths) and external crates it names.

/// One `crate::` path found in a file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Import {
    pub(super) line: usize,
    pub(super) path: Vec<String>,
}

/// The code of a Rust file with comments, string and char literals blanked (newlines kept),
/// so that only real paths are seen.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"…" or r#"…"#: find the closing quote and as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            chars[i..j.min(chars.len())]
                .iter()
                .for_each(|c| out.push(blank(*c)));
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(c) = chars.get(i) {
                    out.push(blank(*c));
                }
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x' or '\n', '\''); a lifetime ('a) has no closing quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 1;
            }
            j += 1;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            (i..=j.min(chars.len() - 1)).for_each(|_| out.push(' '));
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].matches('\n').count() + 1
}

/// Expands a use tree (`a::{b, c::{d, self}}`) into its paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        for part in split_top_level(inner) {
            expand(part, prefix, out);
        }
        return;
    }
    match tree.split_once("::") {
        Some((head, rest)) => {
            let mut p = prefix.to_vec();
            p.push(head.trim().to_string());
            expand(rest, &p, out);
        }
        None => {
            let name = tree.split(" as ").next().unwrap_or(tree).trim();
            let mut p = prefix.to_vec();
            if name != "self" {
                p.push(name.to_string());
            }
            out.push(p);
        }
    }
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Every `crate::` path of a file: the expanded `use crate::…;` trees and inline paths.
pub(super) fn imports(text: &str) -> Vec<Import> {
    let code = code_only(text);
    let mut found = Vec::new();
    let mut in_use = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("use crate::") {
        let start = from + at;
        let before = code[..start].chars().next_back();
        from = start + "use crate::".len();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = code[from..].find(';').map_or(code.len(), |e| from + e);
        let mut paths = Vec::new();
        expand(&code[from..end], &[], &mut paths);
        let line = line_of(&code, start);
        found.extend(paths.into_iter().map(|path| Import { line, path }));
        in_use.push(start..end);
        from = end;
    }
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
            || in_use.iter().any(|r| r.contains(&start))
        {
            continue;
        }
        let path: Vec<String> = code[from..]
            .split("::")
            .map(|seg| {
                let ident: String = seg
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // The path goes on only when the segment is nothing but the identifier.
                let whole = ident.len() == seg.len();
                (ident, whole)
            })
            .scan(true, |go, (seg, whole)| {
                let keep = *go && !seg.is_empty();
                *go = keep && whole;
                keep.then_some(seg)
            })
            .collect();
        if !path.is_empty() {
            found.push(Import {
                line: line_of(&code, start),
                path,
            });
        }
    }
    found
}

/// The external crates among `names` that a file's code refers to, with their lines.
pub(super) fn crates_named(text: &str, names: &[&str]) -> Vec<(usize, String)> {
    let code = code_only(text);
    let mut found = Vec::new();
    for name in names {
        for (at, _) in code.match_indices(name) {
            let before = code[..at].chars().next_back();
            let after = &code[at + name.len()..];
            let boundary = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if boundary && (after.starts_with("::") || after.starts_with(" as ")) {
                found.push((line_of(&code, at), (*name).to_string()));
            }
        }
    }
    found
}

#[test]
fn the_parser_sees_grouped_inline_and_only_real_paths() {
    let text = r#"
use crate::{
    config::{self, Secret},
    llm::{LlmError as E,
          Completion},
    pb,
};
use crate::model::Message;
// use crate::grpc::Hidden;
const S: &str = "crate::http::InString";
const R: &str = r"crate::http::InRaw";
fn f<'a>(c: char) { let _ = '"'; crate::telemetry::metrics::metrics(); g(crate::pb::KEY).h::i(); }
"#;
    let paths: Vec<String> = imports(text).iter().map(|i| i.path.join("::")).collect();
    assert_eq!(
        paths,
        [
            "config",
            "config::Secret",
            "llm::LlmError",
            "llm::Completion",
            "pb",
            "model::Message",
            "telemetry::metrics::metrics",
            "pb::KEY",
        ]
    );
    assert_eq!(
        imports(text)[3].line,
        2,
        "the line of the `use`, not of the item"
    );
    assert_eq!(
        crates_named(
            "use tonic::Status;\nfn f(_: axum::Json<()>) {}\n// prost::x",
            &["tonic", "axum", "prost"]
        ),
        [(1, "tonic".to_string()), (2, "axum".to_string())]
    );
}
