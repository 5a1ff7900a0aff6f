//! Durations in config: a humantime string (`"25s"`, `"1m 30s"`, `"250ms"`) or a plain
//! number of seconds, since environment variables arrive as numbers when they look like one.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Secs(u64),
    Float(f64),
    Text(String),
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Float(f) if f.is_finite() && f >= 0.0 => Ok(Duration::from_secs_f64(f)),
        Raw::Float(f) => Err(D::Error::custom(format!("{f} is not a valid duration"))),
        Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            D::Error::custom(format!(
                "{t:?} is not a duration ({e}); write e.g. \"30s\", \"500ms\" or \"2m\""
            ))
        }),
    }
}
