//! A response body read straight from the origin connection; the connection goes back to
//! the pool the moment the body is complete, and is closed if the body is abandoned.

use super::conn::{Server, Stream};
use super::wire::ResponseFraming;
use crate::body::BoxError;
use crate::buffers;
use crate::h1::chunked::{ChunkedDecoder, Decoded};
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read per socket read while streaming a response.
const READ_CHUNK: usize = 32 * 1024;

/// Where a finished connection goes.
pub struct PoolReturn {
    pub server: Arc<Server>,
    pub max_idle: usize,
    /// How long it may idle there (`conn::idle_limit`).
    pub idle_limit: Duration,
}

impl PoolReturn {
    pub fn put(self, stream: Stream) {
        self.server.checkin(stream, self.max_idle, self.idle_limit);
    }
}

pub struct UpstreamBody {
    stream: Option<Stream>,
    buf: BytesMut,
    framing: ResponseFraming,
    remaining: u64,
    chunked: ChunkedDecoder,
    pool: Option<PoolReturn>,
    done: bool,
}

impl UpstreamBody {
    /// `buf` holds body bytes read together with the head. `pool` is `None` when the
    /// connection must not be reused.
    pub fn new(
        stream: Stream,
        buf: BytesMut,
        framing: ResponseFraming,
        pool: Option<PoolReturn>,
    ) -> Self {
        let remaining = match framing {
            ResponseFraming::Length(n) => n,
            _ => 0,
        };
        UpstreamBody {
            stream: Some(stream),
            buf,
            framing,
            remaining,
            chunked: ChunkedDecoder::default(),
            pool,
            done: false,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        let stream = self.stream.take();
        if let (Some(stream), Some(pool)) = (stream, self.pool.take()) {
            // Bytes beyond the body mean the origin misbehaved: do not reuse the connection.
            if self.buf.is_empty() {
                pool.put(stream);
            }
        }
        let buf = std::mem::take(&mut self.buf);
        buffers::ORIGIN.with(|spares| spares.give(buf));
    }

    /// The next piece of body already buffered, if any.
    fn take_buffered(&mut self) -> Result<Option<Bytes>, BoxError> {
        match self.framing {
            ResponseFraming::Empty => {
                self.finish();
                Ok(None)
            }
            ResponseFraming::Length(_) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = self.remaining.min(self.buf.len() as u64);
                self.remaining -= n;
                let data = self.buf.split_to(n as usize).freeze();
                if self.remaining == 0 {
                    self.finish();
                }
                Ok(Some(data))
            }
            ResponseFraming::Chunked => match self.chunked.decode(&mut self.buf)? {
                Decoded::Data(data) => Ok(Some(data)),
                Decoded::Done => {
                    self.finish();
                    Ok(None)
                }
                Decoded::NeedMore => Ok(None),
            },
            ResponseFraming::UntilClose => {
                Ok((!self.buf.is_empty()).then(|| self.buf.split().freeze()))
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.take_buffered() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) if this.done => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    this.stream = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            if this.buf.capacity() - this.buf.len() < READ_CHUNK / 4 {
                this.buf.reserve(READ_CHUNK);
            }
            let spare = this.buf.spare_capacity_mut();
            let mut read = ReadBuf::uninit(spare);
            let polled = Pin::new(stream).poll_read(cx, &mut read);
            let filled = read.filled().len();
            match ready!(polled) {
                Ok(()) if filled == 0 => {
                    this.stream = None;
                    if this.framing == ResponseFraming::UntilClose {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    this.done = true;
                    return Poll::Ready(Some(Err(
                        "the origin closed the connection mid-body".into()
                    )));
                }
                // SAFETY: poll_read initialised `filled` bytes of the spare capacity.
                Ok(()) => unsafe { this.buf.set_len(this.buf.len() + filled) },
                Err(e) => {
                    this.done = true;
                    this.stream = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.framing == ResponseFraming::Empty
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            ResponseFraming::Empty => SizeHint::with_exact(0),
            ResponseFraming::Length(_) => SizeHint::with_exact(self.remaining),
            _ => SizeHint::default(),
        }
    }
}
