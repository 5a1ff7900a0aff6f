//! The layer rules of `ARCHITECTURE.md`, checked: every `.rs` file of the library under
//! `src/` is read, each `use crate::…` (grouped braces over several lines included) and each
//! inline `crate::x::…` path is taken apart, and an import a layer may not make fails the test
//! naming the file, the line, the import and the rule. The core layers are also checked for
//! transport crates (tonic, axum, prost). Keep [`RULES`] and `ARCHITECTURE.md` in step.

mod scan;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use scan::{crates_named, imports};

/// What a layer may import from the rest of the crate (its own modules are always allowed).
struct Rule {
    layer: &'static str,
    /// Top-level modules it may import anything from.
    may_import: &'static [&'static str],
    /// `(module, item)`: modules it may import only the named item from.
    may_import_only: &'static [(&'static str, &'static str)],
    /// External crates it may not name.
    no_crates: &'static [&'static str],
}

const TRANSPORT_CRATES: &[&str] = &["tonic", "tonic_types", "axum", "prost", "prost_types"];
const CORE: &[&str] = TRANSPORT_CRATES;
const ANY: &[&str] = &[];

impl Rule {
    /// The rule in words, as the table in `ARCHITECTURE.md` gives it.
    fn says(&self) -> String {
        let mut allowed: Vec<String> = self.may_import.iter().map(|m| (*m).to_string()).collect();
        allowed.extend(
            self.may_import_only
                .iter()
                .map(|(m, item)| format!("{m}::{item} only")),
        );
        let mut says = if allowed.is_empty() {
            format!("{} imports nothing of the crate", self.layer)
        } else {
            format!("{} may import only {}", self.layer, allowed.join(", "))
        };
        if !self.no_crates.is_empty() {
            let _ = write!(says, "; never the crates {}", self.no_crates.join(", "));
        }
        says + " (ARCHITECTURE.md, \"Layer rules\")"
    }
}

/// The rules of `ARCHITECTURE.md`'s table, one line a layer.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    Rule { layer: "http", no_crates: ANY, may_import_only: &[("grpc", "ChatApi")], may_import: &["pb", "config", "telemetry", "readiness", "inflight", "auth"] },
    Rule { layer: "grpc", no_crates: ANY, may_import_only: &[], may_import: &["agent", "model", "error", "pb", "auth", "llm", "mcp", "sessions", "config", "telemetry"] },
    Rule { layer: "agent", no_crates: CORE, may_import_only: &[], may_import: &["llm", "mcp", "sessions", "model", "error", "config", "telemetry"] },
    Rule { layer: "llm", no_crates: CORE, may_import_only: &[], may_import: &["model", "config", "telemetry"] },
    Rule { layer: "mcp", no_crates: CORE, may_import_only: &[], may_import: &["model", "config", "telemetry", "sessions"] },
    Rule { layer: "mcp_serve", no_crates: ANY, may_import_only: &[("grpc", "ChatApi")], may_import: &["mcp", "auth", "config", "telemetry", "inflight", "pb"] },
    Rule { layer: "sessions", no_crates: CORE, may_import_only: &[], may_import: &["model", "config", "telemetry"] },
    Rule { layer: "model", no_crates: CORE, may_import_only: &[], may_import: &[] },
    Rule { layer: "error", no_crates: CORE, may_import_only: &[], may_import: &["llm", "sessions"] },
    Rule { layer: "pb", no_crates: ANY, may_import_only: &[], may_import: &[] },
    Rule { layer: "inflight", no_crates: ANY, may_import_only: &[], may_import: &["pb", "config", "telemetry"] },
    Rule { layer: "auth", no_crates: ANY, may_import_only: &[], may_import: &["config", "telemetry"] },
    Rule { layer: "readiness", no_crates: ANY, may_import_only: &[], may_import: &["config", "telemetry"] },
    Rule { layer: "telemetry", no_crates: ANY, may_import_only: &[], may_import: &["config"] },
    Rule { layer: "config", no_crates: CORE, may_import_only: &[], may_import: &[] },
    // The composition root wires every layer (and the crate root's re-exports).
    Rule { layer: "server", no_crates: ANY, may_import_only: &[], may_import: &["agent", "auth", "config", "error", "grpc", "http", "inflight", "llm", "mcp", "mcp_serve", "model", "pb", "readiness", "sessions", "telemetry", "Config", "Listeners", "run"] },
];

/// Files of `src/` that are not library layers: the crate root, the binary and this test.
const NOT_LAYERS: &[&str] = &["lib", "main", "cli", "architecture_tests"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer of a file: its top-level module under `src/`.
fn layer_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

fn violations(src: &Path) -> (Vec<String>, usize) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in files {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let layer = layer_of(relative);
        if NOT_LAYERS.contains(&layer.as_str()) {
            continue;
        }
        let shown = Path::new("src").join(relative);
        let Some(rule) = RULES.iter().find(|r| r.layer == layer) else {
            problems.push(format!(
                "{}: the layer `{layer}` has no rule; add it to ARCHITECTURE.md and to RULES in \
                 src/architecture_tests.rs",
                shown.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        checked += 1;
        for import in imports(&text) {
            let Some(target) = import.path.first() else {
                continue;
            };
            let item = import.path.get(1).map(String::as_str);
            let allowed = target == &layer
                || rule.may_import.contains(&target.as_str())
                || rule
                    .may_import_only
                    .iter()
                    .any(|(module, only)| module == target && item == Some(*only));
            if !allowed {
                problems.push(format!(
                    "{}:{}: imports crate::{} — rule: {}",
                    shown.display(),
                    import.line,
                    import.path.join("::"),
                    rule.says()
                ));
            }
        }
        for (line, name) in crates_named(&text, rule.no_crates) {
            problems.push(format!(
                "{}:{line}: names the crate `{name}` — rule: {}",
                shown.display(),
                rule.says()
            ));
        }
    }
    (problems, checked)
}

#[test]
fn every_layer_keeps_to_its_imports() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (problems, checked) = violations(&src);
    assert!(checked > 50, "only {checked} files were read under {src:?}");
    let mut report = String::new();
    for p in &problems {
        let _ = writeln!(report, "  {p}");
    }
    assert!(
        problems.is_empty(),
        "{} import(s) break ARCHITECTURE.md's layer rules:\n{report}",
        problems.len()
    );
}
