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
    /// The rule as `ARCHITECTURE.md` states it.
    says: &'static str,
}

/// The cross-cutting modules the small layers may use: configuration and telemetry.
const CROSS_CUTTING: &[&str] = &["config", "telemetry"];
const TRANSPORT_CRATES: &[&str] = &["tonic", "tonic_types", "axum", "prost", "prost_types"];

const RULES: &[Rule] = &[
    Rule {
        layer: "http",
        may_import: &["pb", "config", "telemetry", "readiness", "inflight", "auth"],
        may_import_only: &[("grpc", "ChatApi")],
        no_crates: &[],
        says: "http/ imports only the service (grpc::ChatApi), pb and the cross-cutting \
               modules (config, telemetry, readiness, inflight, auth)",
    },
    Rule {
        layer: "grpc",
        may_import: &[
            "agent",
            "model",
            "error",
            "pb",
            "auth",
            "llm",
            "mcp",
            "sessions",
            "config",
            "telemetry",
        ],
        may_import_only: &[],
        no_crates: &[],
        says: "grpc/ imports the agent, the core's types and errors (model, error, llm, mcp, \
               sessions), pb, auth and the cross-cutting modules; never http/ or server",
    },
    Rule {
        layer: "agent",
        may_import: &[
            "llm",
            "mcp",
            "sessions",
            "model",
            "error",
            "config",
            "telemetry",
        ],
        may_import_only: &[],
        no_crates: TRANSPORT_CRATES,
        says: "agent/ imports llm, mcp, sessions, model, error, config and telemetry; no \
               transport crate",
    },
    Rule {
        layer: "llm",
        may_import: &["model", "config", "telemetry"],
        may_import_only: &[],
        no_crates: TRANSPORT_CRATES,
        says: "llm/ imports only model, config and telemetry (never grpc, http, agent, mcp or \
               sessions); no transport crate",
    },
    Rule {
        layer: "mcp",
        may_import: &["model", "config", "telemetry"],
        may_import_only: &[],
        no_crates: TRANSPORT_CRATES,
        says: "mcp/ imports only model, config and telemetry (never llm, agent, sessions, grpc \
               or http); no transport crate",
    },
    Rule {
        layer: "sessions",
        may_import: &["model", "config", "telemetry"],
        may_import_only: &[],
        no_crates: TRANSPORT_CRATES,
        says: "sessions/ imports only model, config and telemetry (never llm, mcp, agent, grpc \
               or http); no transport crate",
    },
    Rule {
        layer: "model",
        may_import: &[],
        may_import_only: &[],
        no_crates: TRANSPORT_CRATES,
        says: "model.rs is neutral: it imports nothing of the crate and no transport crate",
    },
    Rule {
        layer: "error",
        may_import: &["llm", "sessions"],
        may_import_only: &[],
        no_crates: TRANSPORT_CRATES,
        says: "error.rs wraps the core's errors (llm, sessions) and knows no transport",
    },
    Rule {
        layer: "pb",
        may_import: &[],
        may_import_only: &[],
        no_crates: &[],
        says: "pb/ is the proto and its helpers: it imports nothing of the crate",
    },
    Rule {
        layer: "inflight",
        may_import: &["pb", "config", "telemetry"],
        may_import_only: &[],
        no_crates: &[],
        says: "inflight.rs (a tower layer both servers use) imports only pb and cross-cutting",
    },
    Rule {
        layer: "auth",
        may_import: CROSS_CUTTING,
        may_import_only: &[],
        no_crates: &[],
        says: "auth.rs imports only config and telemetry",
    },
    Rule {
        layer: "readiness",
        may_import: CROSS_CUTTING,
        may_import_only: &[],
        no_crates: &[],
        says: "readiness.rs imports only config and telemetry",
    },
    Rule {
        layer: "telemetry",
        may_import: &["config"],
        may_import_only: &[],
        no_crates: &[],
        says: "telemetry/ imports only config",
    },
    Rule {
        layer: "config",
        may_import: &[],
        may_import_only: &[],
        no_crates: TRANSPORT_CRATES,
        says: "config/ imports nothing of the crate",
    },
    Rule {
        layer: "server",
        may_import: &[
            "agent",
            "auth",
            "config",
            "error",
            "grpc",
            "http",
            "inflight",
            "llm",
            "mcp",
            "model",
            "pb",
            "readiness",
            "sessions",
            "telemetry",
            "Config",
            "Listeners",
            "run",
        ],
        may_import_only: &[],
        no_crates: &[],
        says: "server.rs is the composition root: it may wire every layer",
    },
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
                    rule.says
                ));
            }
        }
        for (line, name) in crates_named(&text, rule.no_crates) {
            problems.push(format!(
                "{}:{line}: names the crate `{name}` — rule: {}",
                shown.display(),
                rule.says
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
