//! A request body streamed from the client connection to the handler through a small channel.

use super::chunked::{ChunkedDecoder, Decoded};
use super::head::Framing;
use crate::body::BoxError;
use crate::handler::ConnSettings;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Bytes read per socket read while streaming a body.
const BODY_READ_CHUNK: usize = 16 * 1024;
/// Chunks in flight between the socket and the handler: bounds memory per upload.
const BODY_CHANNEL_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the limit")]
    TooLarge,
    #[error("{0}")]
    Malformed(#[from] super::chunked::ChunkedError),
    #[error("client closed the connection before the body ended")]
    Incomplete,
    #[error("client sent no body bytes in time")]
    TimedOut,
    #[error("handler stopped reading the body")]
    Abandoned,
}

impl BodyError {
    /// The status to answer with, where the client is at fault and can still be told.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            BodyError::TooLarge => Some(StatusCode::PAYLOAD_TOO_LARGE),
            BodyError::Malformed(_) => Some(StatusCode::BAD_REQUEST),
            _ => None,
        }
    }
}

pub struct ChannelBody {
    chunks: mpsc::Receiver<Result<Bytes, BoxError>>,
    remaining: Option<u64>,
}

pub type BodySender = mpsc::Sender<Result<Bytes, BoxError>>;

impl ChannelBody {
    pub fn new(framing: Framing) -> (BodySender, ChannelBody) {
        let (sender, chunks) = mpsc::channel(BODY_CHANNEL_DEPTH);
        let remaining = match framing {
            Framing::Length(n) => Some(n),
            Framing::None => Some(0),
            Framing::Chunked => None,
        };
        (sender, ChannelBody { chunks, remaining })
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == Some(0) {
            return Poll::Ready(None);
        }
        match self.chunks.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => {
                if let Some(remaining) = self.remaining.as_mut() {
                    *remaining = remaining.saturating_sub(data.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.remaining.is_some() => {
                Poll::Ready(Some(Err(BodyError::Incomplete.to_string().into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Reads the request body from the connection (bytes already buffered first) into the channel.
/// On a client fault the handler's body sees an error too, so the upstream request is aborted.
pub async fn pump_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    sender: BodySender,
    settings: &ConnSettings,
) -> Result<(), BodyError> {
    let result = pump(reader, buf, framing, &sender, settings).await;
    if let Err(e) = &result {
        if !matches!(e, BodyError::Abandoned) {
            let _ = sender.send(Err(e.to_string().into())).await;
        }
    }
    result
}

async fn pump<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    sender: &BodySender,
    settings: &ConnSettings,
) -> Result<(), BodyError> {
    let mut decoder = ChunkedDecoder::default();
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut total: u64 = 0;
    loop {
        let piece = match framing {
            Framing::None => return Ok(()),
            Framing::Length(_) if remaining == 0 => return Ok(()),
            Framing::Length(_) if buf.is_empty() => None,
            Framing::Length(_) => {
                let n = remaining.min(buf.len() as u64);
                remaining -= n;
                Some(buf.split_to(n as usize).freeze())
            }
            Framing::Chunked => match decoder.decode(buf)? {
                Decoded::Data(data) => Some(data),
                Decoded::NeedMore => None,
                Decoded::Done => return Ok(()),
            },
        };
        if let Some(data) = piece {
            total += data.len() as u64;
            if settings.max_body_bytes > 0 && total > settings.max_body_bytes {
                return Err(BodyError::TooLarge);
            }
            sender
                .send(Ok(data))
                .await
                .map_err(|_| BodyError::Abandoned)?;
            continue;
        }
        buf.reserve(BODY_READ_CHUNK);
        match tokio::time::timeout(settings.idle_timeout, reader.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(BodyError::Incomplete),
            Ok(Ok(_)) => {}
            Err(_) => return Err(BodyError::TimedOut),
        }
    }
}
