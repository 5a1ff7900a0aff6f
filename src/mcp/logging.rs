//! Log levels and log messages between the MCP clients of mcp-chat (`/mcp`, `mcp_serve/`)
//! and the hub's servers.
//!
//! Each `/mcp` session may set a level (`logging/setLevel`). A server that offers logging is
//! asked for the most verbose level any live session wants, so that every session can get
//! what it asked for; it is asked again when that level changes (a session sets another one
//! or goes away) and whenever the server (re)connects. Each session then filters what the
//! servers send (`notifications/message`, carried to the sessions as
//! [`HubEvent::Log`](super::proxy::HubEvent)) at its own level with [`passes`]. A session that
//! has set no level gets every message the servers choose to send, as the specification
//! leaves that choice to the server.

#![allow(deprecated)] // Logging is deprecated in the 2026-07-28 revision; 2025 clients use it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams};

use super::{McpHub, Shared};

/// Where a level sits, most verbose first (the RFC 5424 order the specification uses).
pub fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Whether a message at `level` goes to a session that set `floor` (`None`: it set none).
pub fn passes(level: LoggingLevel, floor: Option<LoggingLevel>) -> bool {
    floor.is_none_or(|f| rank(level) >= rank(f))
}

/// A server's message as a client of mcp-chat sees it: the logger names the server
/// (`server` or `server/logger`), so a client of many servers can tell them apart.
pub fn from_server(
    server: &str,
    mut message: LoggingMessageNotificationParam,
) -> LoggingMessageNotificationParam {
    message.logger = Some(match message.logger.take() {
        Some(logger) => format!("{server}/{logger}"),
        None => server.to_string(),
    });
    message
}

/// The levels the live `/mcp` sessions have set.
#[derive(Debug, Default)]
pub struct LogLevels {
    inner: Mutex<Levels>,
}

#[derive(Debug, Default)]
struct Levels {
    next: u64,
    set: HashMap<u64, LoggingLevel>,
}

impl Levels {
    fn effective(&self) -> Option<LoggingLevel> {
        self.set.values().copied().min_by_key(|l| rank(*l))
    }
}

impl LogLevels {
    fn lock(&self) -> MutexGuard<'_, Levels> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most verbose level a live session wants (`None`: no session set one).
    pub fn effective(&self) -> Option<LoggingLevel> {
        self.lock().effective()
    }

    fn register(&self) -> u64 {
        let mut levels = self.lock();
        levels.next += 1;
        levels.next
    }

    fn level_of(&self, session: u64) -> Option<LoggingLevel> {
        self.lock().set.get(&session).copied()
    }

    /// Sets (`Some`) or forgets (`None`) a session's level; the new effective level when it
    /// changed.
    fn update(&self, session: u64, level: Option<LoggingLevel>) -> Option<LoggingLevel> {
        let mut levels = self.lock();
        let before = levels.effective();
        match level {
            Some(level) => levels.set.insert(session, level),
            None => levels.set.remove(&session),
        };
        let after = levels.effective();
        if after != before { after } else { None }
    }
}

/// One `/mcp` session's place in the hub's [`LogLevels`]; forgotten when dropped.
pub struct LogSession {
    id: u64,
    shared: Arc<Shared>,
}

impl LogSession {
    /// The level this session set, if any.
    pub fn level(&self) -> Option<LoggingLevel> {
        self.shared.log_levels.level_of(self.id)
    }

    /// Sets this session's level and asks the servers that log for the effective level when
    /// it changed. Waits for their answers, so a client's next call already sees it.
    pub async fn set(&self, level: LoggingLevel) {
        if let Some(effective) = self.shared.log_levels.update(self.id, Some(level)) {
            apply(&self.shared, effective).await;
        }
    }
}

impl Drop for LogSession {
    fn drop(&mut self) {
        let Some(effective) = self.shared.log_levels.update(self.id, None) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { apply(&shared, effective).await });
        }
    }
}

/// Asks every ready server that offers logging for `level`.
async fn apply(shared: &Shared, level: LoggingLevel) {
    for live in shared.live().into_iter().filter(|l| l.logging) {
        if let Err(e) = live.peer.set_level(SetLevelRequestParams::new(level)).await {
            tracing::debug!(server = %live.server, "logging/setLevel failed: {e}");
        }
    }
}

/// Asks a server that has just become ready for the effective level, if a session set one.
pub(super) fn on_ready(shared: &Arc<Shared>, peer: &rmcp::service::Peer<rmcp::RoleClient>) {
    let Some(level) = shared.log_levels.effective() else {
        return;
    };
    let offers = peer
        .peer_info()
        .is_some_and(|i| i.capabilities.logging.is_some());
    if offers {
        let peer = peer.clone();
        tokio::spawn(async move {
            if let Err(e) = peer.set_level(SetLevelRequestParams::new(level)).await {
                tracing::debug!("logging/setLevel failed: {e}");
            }
        });
    }
}

impl McpHub {
    /// A place for one `/mcp` session's log level.
    pub fn log_session(&self) -> LogSession {
        LogSession {
            id: self.shared.log_levels.register(),
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gets_what_is_at_or_above_its_level() {
        assert!(passes(LoggingLevel::Debug, None));
        assert!(passes(LoggingLevel::Warning, Some(LoggingLevel::Warning)));
        assert!(passes(LoggingLevel::Error, Some(LoggingLevel::Info)));
        assert!(!passes(LoggingLevel::Info, Some(LoggingLevel::Warning)));
    }

    #[test]
    fn servers_are_asked_for_the_most_verbose_level_a_session_wants() {
        let levels = LogLevels::default();
        let (a, b) = (levels.register(), levels.register());
        assert_eq!(
            levels.update(a, Some(LoggingLevel::Warning)),
            Some(LoggingLevel::Warning)
        );
        assert_eq!(
            levels.update(b, Some(LoggingLevel::Debug)),
            Some(LoggingLevel::Debug)
        );
        // A less verbose level beside a debug session changes nothing upstream.
        assert_eq!(levels.update(a, Some(LoggingLevel::Error)), None);
        assert_eq!(levels.level_of(a), Some(LoggingLevel::Error));
        // The debug session leaves: the servers go back to what the other one wants.
        assert_eq!(levels.update(b, None), Some(LoggingLevel::Error));
        assert_eq!(levels.update(a, None), None);
        assert_eq!(levels.effective(), None);
    }

    #[test]
    fn the_logger_names_the_server() {
        let plain = LoggingMessageNotificationParam::new(LoggingLevel::Info, "x".into());
        assert_eq!(
            from_server("db", plain.clone()).logger.as_deref(),
            Some("db")
        );
        let named = plain.with_logger("sql");
        assert_eq!(from_server("db", named).logger.as_deref(), Some("db/sql"));
    }
}
