//! Answers of Secrets Manager are read at most [`crate::http::MAX_BODY`] bytes far, as the
//! providers' are (SECURITY.md, *Transport*): an interceptor wraps each answer's body, before
//! the SDK reads it, in one that fails past the limit. (The credential chain's own calls,
//! IMDS and STS, are the SDK's and are not capped.)

use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_types::body::SdkBody;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The error of an answer over the limit, found again by [`too_large`].
#[derive(Debug)]
pub(super) struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "answer larger than {} bytes", crate::http::MAX_BODY)
    }
}

impl std::error::Error for TooLarge {}

/// Whether `e`, or one of its causes, is [`TooLarge`].
pub(super) fn too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<TooLarge>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[derive(Debug)]
pub(super) struct AnswerCap;

impl Intercept for AnswerCap {
    fn name(&self) -> &'static str {
        "rekey answer size cap"
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let resp = ctx.response_mut();
        let announced = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > crate::http::MAX_BODY as u64) {
            return Err(Box::new(TooLarge));
        }
        let body = std::mem::replace(resp.body_mut(), SdkBody::taken());
        *resp.body_mut() = SdkBody::from_body_1_x(Capped {
            inner: body,
            seen: 0,
        });
        Ok(())
    }
}

/// A body that fails once more than the limit has come.
struct Capped {
    inner: SdkBody,
    seen: usize,
}

impl http_body::Body for Capped {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len();
                    if this.seen > crate::http::MAX_BODY {
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}
