//! Progress of a call in flight, forwarded: the hub's client sends every request with a
//! progress token (rmcp sets one), and the `notifications/progress` a server sends for that
//! token go to the sink its caller registered here ([`ProgressRoutes::enter`]) for as long
//! as the call runs. The sink is neutral ([`Progress`]); the MCP server edge turns it into
//! its own client's `notifications/progress`, the agent into a progress event.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rmcp::model::{ProgressNotificationParam, ProgressToken};

/// One progress report of a running call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Increases with every report (the total work done, in the server's units).
    pub progress: f64,
    /// The total, when the server knows it.
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// Where a call's progress goes.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// The sinks of the calls in flight on one server connection, by progress token.
#[derive(Default)]
pub struct ProgressRoutes {
    live: Mutex<HashMap<ProgressToken, ProgressSink>>,
}

impl ProgressRoutes {
    /// Sends the progress reported for `token` to `sink` until the guard drops.
    pub fn enter(self: &Arc<Self>, token: ProgressToken, sink: ProgressSink) -> ProgressGuard {
        self.lock().insert(token.clone(), sink);
        ProgressGuard {
            routes: self.clone(),
            token,
        }
    }

    /// Hands a server's `notifications/progress` to its call's sink; one for a call that
    /// has ended (or never asked) is dropped. Returns whether a sink took it.
    pub fn forward(&self, params: ProgressNotificationParam) -> bool {
        let sink = self.lock().get(&params.progress_token).cloned();
        let Some(sink) = sink else {
            return false;
        };
        sink(Progress {
            progress: params.progress,
            total: params.total,
            message: params.message,
        });
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, ProgressSink>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a sink from [`ProgressRoutes`] when dropped.
pub struct ProgressGuard {
    routes: Arc<ProgressRoutes>,
    token: ProgressToken,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    fn report(token: &ProgressToken, progress: f64) -> ProgressNotificationParam {
        ProgressNotificationParam::new(token.clone(), progress)
    }

    #[test]
    fn progress_reaches_the_sink_of_its_token_while_the_call_runs() {
        let routes = Arc::new(ProgressRoutes::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let token = ProgressToken(NumberOrString::Number(7));
        let other = ProgressToken(NumberOrString::Number(8));
        let guard = routes.enter(
            token.clone(),
            Arc::new(move |p: Progress| into.lock().unwrap().push(p.progress)),
        );
        assert!(routes.forward(report(&token, 1.0)));
        assert!(
            !routes.forward(report(&other, 2.0)),
            "no call has that token"
        );
        drop(guard);
        assert!(!routes.forward(report(&token, 3.0)), "the call has ended");
        assert_eq!(*seen.lock().unwrap(), vec![1.0]);
    }
}
