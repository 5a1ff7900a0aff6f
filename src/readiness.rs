//! Readiness: which parts of the process are up, for `/readyz` and the gRPC health service.
//!
//! Components register themselves by name with a state and a detail; the process is ready
//! once start-up has finished and every component that is `required` is up.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;

/// The state of one component.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Whether it works now.
    pub up: bool,
    /// Whether the process is unready while it is down.
    pub required: bool,
    /// What it is doing or why it is down.
    pub detail: String,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    started: AtomicBool,
    stopping: AtomicBool,
    components: RwLock<BTreeMap<String, Component>>,
}

/// A snapshot for rendering.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ready: bool,
    pub status: &'static str,
    pub components: BTreeMap<String, Component>,
}

impl Readiness {
    pub fn set(&self, name: impl Into<String>, component: Component) {
        if let Ok(mut map) = self.inner.components.write() {
            map.insert(name.into(), component);
        }
    }

    /// Marks start-up as finished.
    pub fn mark_started(&self) {
        self.inner.started.store(true, Ordering::Release);
    }

    /// Marks the process as draining: it reports unready from now on.
    pub fn mark_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    pub fn report(&self) -> Report {
        let components = self
            .inner
            .components
            .read()
            .map(|m| m.clone())
            .unwrap_or_default();
        let started = self.inner.started.load(Ordering::Acquire);
        let stopping = self.inner.stopping.load(Ordering::Acquire);
        let required_up = components.values().all(|c| c.up || !c.required);
        let (ready, status) = match (started, stopping, required_up) {
            (_, true, _) => (false, "stopping"),
            (false, _, _) => (false, "starting"),
            (true, false, false) => (false, "degraded"),
            (true, false, true) => (true, "ready"),
        };
        Report {
            ready,
            status,
            components,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(up: bool, required: bool) -> Component {
        Component {
            up,
            required,
            detail: String::new(),
        }
    }

    #[test]
    fn ready_only_after_start_and_with_required_components_up() {
        let r = Readiness::default();
        r.set("http", comp(true, true));
        assert_eq!(r.report().status, "starting");
        r.mark_started();
        assert!(r.report().ready);
        r.set("mcp:optional", comp(false, false));
        assert!(
            r.report().ready,
            "an optional component that is down keeps the process ready"
        );
        r.set("mcp:needed", comp(false, true));
        assert_eq!(r.report().status, "degraded");
        r.set("mcp:needed", comp(true, true));
        assert!(r.report().ready);
        r.mark_stopping();
        assert_eq!(r.report().status, "stopping");
    }
}
