//! A connection the gateway turned a request away on (429) is not read again for a moment.
//!
//! A 429 is answered at once, and costs the gateway some 20 µs. A client that ignores
//! `Retry-After` and asks again at once on the same connection can make it answer tens of
//! thousands a second: with the gateway on threads of its own (see the engine's `offload`), four
//! such clients beside a function at 2× its capacity got 48,000 rejections a second and left
//! the admitted requests 42% of their peak throughput (BENCHMARKS.md, overload).
//! So after a rejection the connection's next request waits [`crate::GatewayConfig`]'s
//! `rejection_pause` in its socket: nothing is read, nothing is spent. A client that honours
//! `Retry-After` (one second) never notices; a fresh connection is answered at once as before.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Set by the connection's service when it turns a request away; taken by the next read.
#[derive(Debug, Default)]
pub(crate) struct Rejected(AtomicBool);

impl Rejected {
    pub(crate) fn note(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A connection's stream whose next read, after a rejection, waits `pause` first.
pub(crate) struct Paused<S> {
    inner: S,
    rejected: Arc<Rejected>,
    pause: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Paused<S> {
    pub(crate) fn new(inner: S, rejected: Arc<Rejected>, pause: Duration) -> Self {
        Self {
            inner,
            rejected,
            pause,
            sleep: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Paused<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pause.is_zero() && self.rejected.0.swap(false, Ordering::Relaxed) {
            self.sleep = Some(Box::pin(tokio::time::sleep(self.pause)));
        }
        if let Some(sleep) = self.sleep.as_mut() {
            std::task::ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paused<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_read_after_a_rejection_waits_the_pause_and_only_once() {
        let (client, server) = tokio::io::duplex(64);
        let rejected = Arc::new(Rejected::default());
        let mut server = Paused::new(server, rejected.clone(), Duration::from_millis(10));
        let mut client = client;
        let mut buf = [0u8; 8];

        client.write_all(b"a").await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no rejection: read at once"
        );

        rejected.note();
        client.write_all(b"b").await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        assert_eq!(&buf[..1], b"b");
        assert!(started.elapsed() >= Duration::from_millis(10), "paused");

        client.write_all(b"c").await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        assert_eq!(started.elapsed(), Duration::ZERO, "the pause is spent");

        // Writes (the 429 itself) never wait.
        rejected.note();
        let started = tokio::time::Instant::now();
        server.write_all(b"429").await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
