//! One log line.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The version written into every new line (fields are only ever added).
pub const LINE_VERSION: u32 = 1;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
    /// The platform, about the invocation (a trap, a timeout, dropped output).
    Platform,
}

impl Stream {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Platform => "platform",
        }
    }
}

/// One line of a function's log. The names are shared (`Arc<str>`): every line of an
/// invocation carries the same ones, and the engine hands them over without copying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Line format version ([`LINE_VERSION`]).
    pub v: u32,
    /// When it was written, in ms since the Unix epoch.
    pub ts_unix_ms: u64,
    /// The tenant owning the app.
    pub tenant: Arc<str>,
    /// The app.
    pub app: Arc<str>,
    /// The function.
    pub function: Arc<str>,
    /// The invocation (stable across retries).
    pub invocation_id: Arc<str>,
    /// The run that wrote it (`x-request-id` for HTTP).
    pub request_id: Arc<str>,
    /// Where it came from.
    pub stream: Stream,
    /// The text, without its line break.
    pub message: String,
}

impl LogLine {
    /// Roughly what the line costs to keep: its text and names.
    pub fn size(&self) -> u64 {
        (self.message.len()
            + self.app.len()
            + self.function.len()
            + self.invocation_id.len()
            + self.request_id.len()
            + 48) as u64
    }
}
