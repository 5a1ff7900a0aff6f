//! Shared helpers of the bench binaries: `--flag value` arguments and latency summaries.

use std::{collections::HashMap, str::FromStr, time::Duration};

/// `--name value` pairs and bare `--switch`es, after an optional leading subcommand.
pub struct Args {
    pub command: Option<String>,
    values: HashMap<String, String>,
    pub rest: Vec<String>,
}

impl Args {
    /// Parses `std::env::args()`; everything after `--` goes to `rest`.
    pub fn parse(with_command: bool) -> Self {
        let mut raw = std::env::args().skip(1).peekable();
        let command = if with_command { raw.next() } else { None };
        let mut values = HashMap::new();
        let mut rest = Vec::new();
        while let Some(arg) = raw.next() {
            if arg == "--" {
                rest.extend(raw.by_ref());
                break;
            }
            let Some(name) = arg.strip_prefix("--") else {
                rest.push(arg);
                continue;
            };
            let value = match raw.peek() {
                Some(v) if !v.starts_with("--") => raw.next().unwrap_or_default(),
                _ => "true".to_string(),
            };
            values.insert(name.to_string(), value);
        }
        Self {
            command,
            values,
            rest,
        }
    }

    pub fn str(&self, name: &str, default: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn opt(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// A parsed value, or the default; exits with a message when it does not parse.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name}: cannot read {v:?}");
                std::process::exit(2)
            }),
        }
    }
}

/// Percentiles of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

pub fn summarize(samples: &mut [Duration]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        us(samples[i.min(samples.len() - 1)])
    };
    let total: f64 = samples.iter().map(|d| us(*d)).sum();
    Summary {
        n: samples.len(),
        mean_us: total / samples.len() as f64,
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        max_us: us(samples[samples.len() - 1]),
    }
}

/// A listener on `addr` (an `ip:port`) with the gateway's listen backlog (4,096, capped by
/// `net.core.somaxconn`), so a burst of connections is not limited by the tool's own queue
/// where the gateway's is larger (tokio's `TcpListener::bind` asks for 1,024).
pub fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
