//! The connection's stream: the idle, header-read and write-stall timeouts.
//!
//! hyper's own `header_read_timeout` starts its clock as soon as a keep-alive connection
//! waits for its next request, so with it an idle connection could live no longer than a
//! request head may take to arrive. The two are different defences (a browser keeps an idle
//! connection open for a minute; a slowloris client trickles a head), so this wrapper keeps
//! both clocks itself, from what it sees of the connection:
//!
//! ```text
//!            first byte of a head          the service is called
//!   idle ──────────────► reading the head ──────────────────────► request in progress
//!    ▲   idle_timeout        header_read_timeout                    (no clock: functions
//!    │                                                               have their own limits)
//!    └───────────────── the response's body has been sent ◄────────┘
//! ```
//!
//! The service side (`track`) counts requests started and in progress in [`ConnState`]; the
//! stream compares the count with the one it last saw to notice a new request. Timers are
//! re-armed lazily: a sleep that fires before the real deadline is pushed forward then, so a
//! busy keep-alive connection costs no timer operation per request.
//!
//! Writes have a clock of their own: a write the socket cannot take (the client stopped
//! reading) fails after `idle_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the connection's service tells its stream.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Requests handed to the service so far.
    pub(crate) started: AtomicU64,
    /// Requests whose response has not been sent completely yet.
    pub(crate) in_progress: AtomicUsize,
}

/// Which clock ran out.
#[derive(Debug, Clone, Copy)]
enum Expired {
    Idle,
    Header,
    Write,
}

fn timed_out(what: Expired, after: Duration) -> io::Error {
    let what = match what {
        Expired::Idle => "idle connection closed",
        Expired::Header => "request head not complete",
        Expired::Write => "client stopped reading the response",
    };
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} after {} ms", after.as_millis()),
    )
}

/// A connection's stream under the listener's timeouts (see the module docs). Listeners that
/// wrap it further (the gateway's pause after a 429) receive it from [`crate::serve`].
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    conn: Arc<ConnState>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// `started` when last looked at.
    seen: u64,
    idle_since: Option<Instant>,
    head_since: Option<Instant>,
    /// The last read found nothing to read.
    read_waiting: bool,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_blocked_since: Option<Instant>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(
        inner: S,
        conn: Arc<ConnState>,
        header_read_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            conn,
            header_read_timeout,
            idle_timeout,
            seen: 0,
            idle_since: None,
            head_since: None,
            read_waiting: false,
            read_timer: None,
            write_blocked_since: None,
            write_timer: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Catches up with the service; true while a request is in progress.
    fn busy(&mut self) -> bool {
        let started = self.conn.started.load(Ordering::Relaxed);
        if started != self.seen {
            self.seen = started;
            self.idle_since = None;
            self.head_since = None;
        }
        self.conn.in_progress.load(Ordering::Relaxed) > 0
    }

    fn read_some(&mut self) {
        if !self.busy() && self.head_since.is_none() {
            self.head_since = Some(Instant::now());
        }
    }

    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.busy() {
            return Poll::Pending;
        }
        let (deadline, what, after) = match self.head_since {
            Some(since) => (
                since + self.header_read_timeout,
                Expired::Header,
                self.header_read_timeout,
            ),
            None => {
                let since = *self.idle_since.get_or_insert_with(Instant::now);
                (since + self.idle_timeout, Expired::Idle, self.idle_timeout)
            }
        };
        ready!(poll_deadline(&mut self.read_timer, deadline, cx));
        Poll::Ready(Err(timed_out(what, after)))
    }

    /// Starts the read clock of a connection whose request has just ended. hyper waits for
    /// the next request with a read that was issued while the response was still being sent
    /// (and so armed no clock); it flushes after writing a response's last bytes, so the
    /// flush is where the clock starts.
    fn arm_read_clock(&mut self, cx: &mut Context<'_>) {
        if self.read_waiting && self.read_pending(cx).is_ready() {
            // Already expired: let the task poll its read again to see the error.
            cx.waker().wake_by_ref();
        }
    }

    fn write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let since = *self.write_blocked_since.get_or_insert_with(Instant::now);
        ready!(poll_deadline(
            &mut self.write_timer,
            since + self.idle_timeout,
            cx
        ));
        Poll::Ready(timed_out(Expired::Write, self.idle_timeout))
    }

    fn wrote<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.write_pending(cx).map(Err),
            ready => {
                self.write_blocked_since = None;
                ready
            }
        }
    }
}

/// Ready once `deadline` has passed. The timer may have been armed for an earlier deadline
/// (an idle clock that a request since pushed forward): it is re-armed when it fires.
fn poll_deadline(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if sleep.deadline() > deadline {
        sleep.as_mut().reset(deadline);
    }
    loop {
        ready!(sleep.as_mut().poll(cx));
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        sleep.as_mut().reset(deadline);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                this.read_waiting = true;
                this.read_pending(cx)
            }
            Poll::Ready(Ok(())) => {
                this.read_waiting = false;
                if buf.filled().len() > before {
                    this.read_some();
                }
                Poll::Ready(Ok(()))
            }
            err => err,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        let result = this.wrote(result, cx);
        this.arm_read_clock(cx);
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
