//! Body wrappers: a request body with a size limit, and a response body that holds the
//! function's concurrency permit until the last byte is sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime_wasi_http::Error as HttpError;

/// The body type the gateway sends.
pub type GatewayBody = UnsyncBoxBody<Bytes, HttpError>;

/// A whole body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> GatewayBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body that fails once more than `limit` bytes arrived, and records that it did
/// so the gateway can answer 413 whatever the guest made of the error.
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`; `exceeded` is set when the limit is crossed.
    pub fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            exceeded,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(
                            this.limit,
                        )))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps a concurrency permit alive while it streams, and fails the
/// response if the request body went over its limit after the response head was sent (the
/// status can no longer be 413, and a silently truncated 200 would be a lie).
pub struct PermitBody {
    inner: GatewayBody,
    permit: Option<OwnedSemaphorePermit>,
    request_over_limit: Option<Arc<AtomicBool>>,
    /// Bytes the response may still carry (`max_response_bytes`); `None`: unlimited.
    response_budget: Option<u64>,
}

impl PermitBody {
    /// Wraps `inner`, releasing `permit` when the body is finished or dropped.
    pub fn new(inner: GatewayBody, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            inner,
            permit,
            request_over_limit: None,
            response_budget: None,
        }
    }

    /// Fails the body once it has carried more than `max` bytes: the head (status 200, say)
    /// has left already, so the client sees the response cut off rather than completed.
    pub fn limit_response(mut self, max: u64) -> Self {
        self.response_budget = Some(max);
        self
    }

    /// Fails the body once `flag` is set.
    pub fn abort_when(mut self, flag: Arc<AtomicBool>) -> Self {
        self.request_over_limit = Some(flag);
        self
    }
}

impl Body for PermitBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if let Some(flag) = &self.request_over_limit
            && flag.load(Ordering::Relaxed)
        {
            return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(None))));
        }
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(budget)) = (&frame, &mut self.response_budget)
            && let Some(data) = frame.data_ref()
        {
            let len = data.len() as u64;
            if len > *budget {
                *budget = 0;
                return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(None))));
            }
            *budget -= len;
        }
        if let Poll::Ready(None) = frame {
            // Released before hyper writes the body's last chunk: a client that sends its next
            // request as soon as it has the whole response finds the permit free, instead of
            // racing the connection task for it (and, turned away, being paused).
            self.permit = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn the_permit_is_free_once_the_body_has_ended_not_only_once_it_is_dropped() {
        let slots = Arc::new(Semaphore::new(1));
        let permit = slots.clone().try_acquire_owned().unwrap();
        let mut body = PermitBody::new(full("hello"), Some(permit));
        assert_eq!(slots.available_permits(), 0);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert_eq!(slots.available_permits(), 0, "still streaming");
        assert!(body.frame().await.is_none());
        assert_eq!(slots.available_permits(), 1, "ended, not yet dropped");
        drop(body);
        assert_eq!(slots.available_permits(), 1);
    }
}
