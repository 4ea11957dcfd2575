//! The body types shared by every stage of the request path.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request and response bodies flow through Velox as this one streaming type.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body of known length: lets the protocol layer send `Content-Length` for a streamed body.
pub fn with_length(body: Body, length: u64) -> Body {
    KnownLength {
        inner: body,
        remaining: length,
    }
    .boxed_unsync()
}

struct KnownLength {
    inner: Body,
    remaining: u64,
}

impl http_body::Body for KnownLength {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.remaining = self.remaining.saturating_sub(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// `length` bytes of `body` from `start`: the bytes before are read and dropped, and the body
/// ends after the last one (the rest of `inner` is never read). A body that ends short is an
/// error, so a client counting on `Content-Length` sees the connection cut, not a hang.
pub fn slice(body: Body, start: u64, length: u64) -> Body {
    Slice {
        inner: body,
        skip: start,
        remaining: length,
    }
    .boxed_unsync()
}

struct Slice {
    inner: Body,
    skip: u64,
    remaining: u64,
}

impl http_body::Body for Slice {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        while self.remaining > 0 {
            let data = match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Err("the body ended before the range".into())))
                }
                // Trailers describe the whole body, not the range: dropped.
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            let skipped = self.skip.min(data.len() as u64);
            self.skip -= skipped;
            let rest = data.slice(skipped as usize..);
            let take = self.remaining.min(rest.len() as u64);
            if take == 0 {
                continue;
            }
            self.remaining -= take;
            return Poll::Ready(Some(Ok(http_body::Frame::data(
                rest.slice(..take as usize),
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
            .collect();
        boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    async fn collect(body: Body) -> Result<Vec<u8>, BoxError> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn slice_takes_the_range_across_chunk_boundaries() {
        let body = || chunks(&[b"0123", b"4567", b"89"]);
        assert_eq!(collect(slice(body(), 0, 10)).await.unwrap(), b"0123456789");
        assert_eq!(collect(slice(body(), 3, 4)).await.unwrap(), b"3456");
        assert_eq!(collect(slice(body(), 4, 4)).await.unwrap(), b"4567");
        assert_eq!(collect(slice(body(), 9, 1)).await.unwrap(), b"9");
        assert_eq!(
            http_body::Body::size_hint(&slice(body(), 2, 5)).exact(),
            Some(5)
        );
        assert!(collect(slice(body(), 8, 5)).await.is_err());
    }
}
