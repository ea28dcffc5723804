//! Capture of guest stdout/stderr into the platform log.
//!
//! Each invocation gets its own [`GuestLog`]: lines written by the guest are emitted as
//! `tracing` events on the `nimbus::guest` target, tagged with the request id, app, function and
//! stream. A per-invocation byte budget, shared by stdout and stderr, stops a chatty or hostile
//! guest from flooding the log: past it the rest is dropped and one note says how much.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept whole; longer lines are split.
const MAX_LINE: usize = 8 * 1024;

/// Identifies whose output a log line is.
#[derive(Debug, Clone)]
pub struct LogTags {
    /// The request (invocation) id.
    pub request_id: Arc<str>,
    /// The app name.
    pub app: Arc<str>,
    /// The function name.
    pub function: Arc<str>,
}

#[derive(Debug)]
struct Budget {
    remaining: usize,
    dropped: usize,
}

/// The output streams of one invocation.
#[derive(Debug, Clone)]
pub struct GuestLog {
    tags: LogTags,
    budget: Arc<Mutex<Budget>>,
}

impl GuestLog {
    /// A log for one invocation keeping at most `limit` bytes.
    pub fn new(tags: LogTags, limit: usize) -> Self {
        Self {
            tags,
            budget: Arc::new(Mutex::new(Budget {
                remaining: limit,
                dropped: 0,
            })),
        }
    }

    /// The stream for the guest's stdout.
    pub fn stdout(&self) -> GuestStream {
        GuestStream {
            log: self.clone(),
            stream: "stdout",
        }
    }

    /// The stream for the guest's stderr.
    pub fn stderr(&self) -> GuestStream {
        GuestStream {
            log: self.clone(),
            stream: "stderr",
        }
    }

    fn emit(&self, stream: &'static str, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(
            target: "nimbus::guest",
            request_id = %self.tags.request_id,
            app = %self.tags.app,
            function = %self.tags.function,
            stream,
            "{text}"
        );
    }

    /// Takes up to `want` bytes from the budget; returns how many may be kept.
    fn take(&self, want: usize) -> usize {
        let Ok(mut budget) = self.budget.lock() else {
            return 0;
        };
        let granted = want.min(budget.remaining);
        budget.remaining -= granted;
        budget.dropped += want - granted;
        granted
    }

    /// Bytes dropped because the budget ran out.
    pub fn dropped(&self) -> usize {
        self.budget.lock().map(|b| b.dropped).unwrap_or(0)
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                target: "nimbus::guest",
                dropped_bytes = self.dropped,
                "guest output over the per-invocation log limit was dropped"
            );
        }
    }
}

/// One output stream (stdout or stderr) of one invocation.
#[derive(Debug, Clone)]
pub struct GuestStream {
    log: GuestLog,
    stream: &'static str,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.log.clone(),
            stream: self.stream,
            pending: Vec::new(),
        })
    }
}

/// Splits written bytes into lines and emits each.
struct LineWriter {
    log: GuestLog,
    stream: &'static str,
    pending: Vec<u8>,
}

impl LineWriter {
    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.log.emit(self.stream, &line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Accept everything (the guest must never block on logging); keep only the budget.
        let keep = self.log.take(buf.len());
        let mut rest = &buf[..keep];
        while !rest.is_empty() {
            let cut = rest.iter().position(|b| *b == b'\n');
            match cut {
                Some(i) => {
                    self.pending.extend_from_slice(&rest[..=i]);
                    self.flush_pending();
                    rest = &rest[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(rest);
                    rest = &[];
                    if self.pending.len() >= MAX_LINE {
                        self.flush_pending();
                    }
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_pending();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn tags() -> LogTags {
        LogTags {
            request_id: "r1".into(),
            app: "a".into(),
            function: "f".into(),
        }
    }

    #[tokio::test]
    async fn budget_is_shared_and_counts_dropped_bytes() {
        let log = GuestLog::new(tags(), 10);
        let mut out = Pin::from(log.stdout().async_stream());
        let mut err = Pin::from(log.stderr().async_stream());
        out.write_all(b"123456\n").await.unwrap();
        err.write_all(b"abcdef\n").await.unwrap();
        assert_eq!(log.dropped(), 4);
    }
}
