//! Capture of guest stdout/stderr into the platform log.
//!
//! Each invocation gets its own [`GuestLog`]: lines written by the guest are emitted as
//! `tracing` events on the `nimbus::guest` target, tagged with the request id, app, function and
//! stream, and handed to the platform's [`LogSink`] (the log store behind `nimbus logs`). A per-invocation byte budget, shared by stdout and stderr, stops a chatty or hostile
//! guest from flooding the log: past it the rest is dropped and one note says how much.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use nimbus_logs::{LINE_VERSION, LogLine, LogSink, Stream};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept whole; longer lines are split.
const MAX_LINE: usize = 8 * 1024;

/// Identifies whose output a log line is.
#[derive(Clone)]
pub struct LogTags {
    /// The run's request id.
    pub request_id: Arc<str>,
    /// The invocation it belongs to (stable across retries).
    pub invocation_id: Arc<str>,
    /// The tenant.
    pub tenant: Arc<str>,
    /// Where lines go besides the process log.
    pub sink: Option<Arc<dyn LogSink>>,
    /// The app name.
    pub app: Arc<str>,
    /// The function name.
    pub function: Arc<str>,
}

impl std::fmt::Debug for LogTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTags")
            .field("request_id", &self.request_id)
            .field("app", &self.app)
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl LogTags {
    /// Hands one line to the sink, if there is one.
    pub fn send(&self, stream: Stream, message: &str) {
        let Some(sink) = &self.sink else {
            return;
        };
        sink.log(LogLine {
            v: LINE_VERSION,
            ts_unix_ms: crate::usage::now_unix_ms(),
            tenant: self.tenant.clone(),
            app: self.app.clone(),
            function: self.function.clone(),
            invocation_id: self.invocation_id.clone(),
            request_id: self.request_id.clone(),
            stream,
            message: message.to_owned(),
        });
    }
}

#[derive(Debug)]
struct Budget {
    limit: usize,
    remaining: usize,
    dropped: usize,
    tags: LogTags,
}

impl Budget {
    /// Logs the note about dropped output, if any was dropped.
    fn report_dropped(&mut self) {
        if self.dropped == 0 {
            return;
        }
        tracing::warn!(
            target: "nimbus::guest",
            request_id = %self.tags.request_id,
            dropped_bytes = self.dropped,
            "guest output over the per-invocation log limit was dropped"
        );
        self.tags.send(
            Stream::Platform,
            &format!(
                "{} bytes of output over the per-invocation log limit were dropped",
                self.dropped
            ),
        );
        self.dropped = 0;
    }
}

/// The output streams of one invocation.
///
/// A pre-instantiated instance (`min_instances`) is built before its invocation is known: its
/// log is [`bound`](GuestLog::bind) to the invocation that takes it, which also restores the
/// byte budget.
#[derive(Debug, Clone)]
pub struct GuestLog {
    budget: Arc<Mutex<Budget>>,
}

impl GuestLog {
    /// A log for one invocation keeping at most `limit` bytes.
    pub fn new(tags: LogTags, limit: usize) -> Self {
        Self {
            budget: Arc::new(Mutex::new(Budget {
                limit,
                remaining: limit,
                dropped: 0,
                tags,
            })),
        }
    }

    /// Hands the log to another invocation: later lines carry `tags`, with a full budget.
    pub fn bind(&self, tags: LogTags) {
        let Ok(mut budget) = self.budget.lock() else {
            return;
        };
        budget.report_dropped();
        budget.tags = tags;
        budget.remaining = budget.limit;
    }

    /// The stream for the guest's stdout.
    pub fn stdout(&self) -> GuestStream {
        GuestStream {
            log: self.clone(),
            stream: Stream::Stdout,
        }
    }

    /// The stream for the guest's stderr.
    pub fn stderr(&self) -> GuestStream {
        GuestStream {
            log: self.clone(),
            stream: Stream::Stderr,
        }
    }

    fn emit(&self, stream: Stream, line: &[u8]) {
        let Ok(tags) = self.budget.lock().map(|b| b.tags.clone()) else {
            return;
        };
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(
            target: "nimbus::guest",
            request_id = %tags.request_id,
            app = %tags.app,
            function = %tags.function,
            stream = stream.as_str(),
            "{text}"
        );
        tags.send(stream, text);
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
        self.report_dropped();
    }
}

/// One output stream (stdout or stderr) of one invocation.
#[derive(Debug, Clone)]
pub struct GuestStream {
    log: GuestLog,
    stream: Stream,
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
    stream: Stream,
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
            invocation_id: "i1".into(),
            tenant: "default".into(),
            sink: None,
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

    #[tokio::test]
    async fn a_bound_log_tags_lines_anew_with_a_full_budget() {
        #[derive(Default)]
        struct Collect(Mutex<Vec<LogLine>>);
        impl LogSink for Collect {
            fn log(&self, line: LogLine) {
                self.0.lock().unwrap().push(line);
            }
        }
        let collected = Arc::new(Collect::default());
        let sink: Arc<dyn LogSink> = collected.clone();
        let placeholder = LogTags {
            sink: Some(sink.clone()),
            ..tags()
        };
        // 5 bytes per invocation: "early" is kept, "!\n" dropped; the unfinished line is
        // emitted when its stream closes.
        let log = GuestLog::new(placeholder, 5);
        let mut out = Pin::from(log.stdout().async_stream());
        out.write_all(b"early!\n").await.unwrap();
        drop(out);
        log.bind(LogTags {
            request_id: "r2".into(),
            invocation_id: "i2".into(),
            sink: Some(sink),
            ..tags()
        });
        let mut out = Pin::from(log.stdout().async_stream());
        out.write_all(b"late\n").await.unwrap();
        let lines = std::mem::take(&mut *collected.0.lock().unwrap());
        let seen: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (&*l.request_id, l.message.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("r1", "early"),
                (
                    "r1",
                    "2 bytes of output over the per-invocation log limit were dropped"
                ),
                ("r2", "late"),
            ]
        );
        assert_eq!(log.dropped(), 0);
    }
}
