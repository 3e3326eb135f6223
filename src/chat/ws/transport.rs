//! The WebSocket transport of chat connections: the only file that knows
//! the WebSocket library (`actix-ws`). It upgrades the request, offers and
//! sends frames to the socket's queue, closes it, and turns the library's
//! incoming messages into [`Incoming`] for [`WsConnection`]. Moving to
//! another library means rewriting this file only.

use std::sync::Arc;
use std::task::Poll;

use actix::{Actor, AsyncContext, StreamHandler};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, ProtocolError, Session};

use super::WsConnection;

/// Frames above this many bytes end the connection (1009); frames between
/// `chat.max_frame_bytes` and this get an `error` frame.
pub(super) const HARD_FRAME_LIMIT: usize = 1 << 20;

/// A frame for the socket.
pub(super) enum Out {
    Text(Arc<str>),
    Ping,
    Pong(Bytes),
}

/// What arrived on the socket.
pub(super) enum Incoming<'a> {
    Text(&'a str),
    /// Binary or continuation frames: chat speaks JSON text only.
    NotText,
    Ping(Bytes),
    /// Pongs and no-ops: only show the client is alive.
    Alive,
    Close,
    /// A frame over [`HARD_FRAME_LIMIT`].
    TooLarge,
    /// A protocol error: the connection is unusable.
    Broken,
}

/// The socket has closed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Closed;

/// The sending half of a socket; clones share its queue.
#[derive(Clone)]
pub(super) struct Socket(Session);

/// Upgrades `req` to a WebSocket whose frames feed the connection `make`
/// builds around the socket; `None` when the request is no WebSocket
/// handshake.
pub(super) fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
    make: impl FnOnce(Socket) -> WsConnection,
) -> Option<HttpResponse> {
    let (response, session, stream) = actix_ws::handle(req, body).ok()?;
    let stream = stream.max_frame_size(HARD_FRAME_LIMIT);
    WsConnection::create(move |ctx| {
        ctx.add_stream(stream);
        make(Socket(session))
    });
    Some(response)
}

/// Upgrades `req` and closes the socket at once with `code` (4401: no
/// valid token; 4429: too many sockets): a browser cannot read the status
/// of a refused upgrade, but it can read a close code. `None` when the
/// request is no WebSocket handshake.
pub(super) fn refuse(
    req: &HttpRequest,
    body: web::Payload,
    code: u16,
    reason: &'static str,
    linger: std::time::Duration,
) -> Option<HttpResponse> {
    let (response, session, mut stream) = actix_ws::handle(req, body).ok()?;
    actix_web::rt::spawn(async move {
        let close = CloseReason {
            code: CloseCode::Other(code),
            description: Some(reason.to_owned()),
        };
        let _ = session.close(Some(close)).await;
        // Read until the client answers the close (or gives up), so the
        // close frame is not cut off by a reset.
        let _ = tokio::time::timeout(linger, async {
            use futures_util::StreamExt;
            while let Some(msg) = stream.next().await {
                if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                    break;
                }
            }
        })
        .await;
    });
    Some(response)
}

impl Socket {
    /// Offers a frame to the socket's queue without waiting: `None` when the
    /// queue is full. (The send is polled once; a send that would wait is
    /// dropped, which takes nothing from the queue. Unconstrained: the
    /// actor's task may have spent its cooperative budget, which must not
    /// read as a full queue.)
    pub(super) fn offer(&mut self, out: &Out) -> Option<Result<(), Closed>> {
        poll_once(self.send(out))
    }

    /// Sends a frame, waiting for room in the socket's queue.
    pub(super) async fn send(&mut self, out: &Out) -> Result<(), Closed> {
        match out {
            Out::Text(t) => self.0.text(&**t).await,
            Out::Ping => self.0.ping(b"").await,
            Out::Pong(b) => self.0.pong(b).await,
        }
        .map_err(|_| Closed)
    }

    /// Sends a close frame with `code`, waiting for room.
    pub(super) async fn close(self, code: u16) -> Result<(), Closed> {
        let reason = CloseReason {
            code: CloseCode::Other(code),
            description: None,
        };
        self.0.close(Some(reason)).await.map_err(|_| Closed)
    }

    /// A close frame (no code) if the queue has room now.
    pub(super) fn close_now(self) {
        let _ = poll_once(async move { self.0.close(None).await.map_err(|_| Closed) });
    }
}

/// Polls a send once: its result, or `None` if it would wait.
fn poll_once(f: impl Future<Output = Result<(), Closed>>) -> Option<Result<(), Closed>> {
    let mut f = std::pin::pin!(tokio::task::unconstrained(f));
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

impl StreamHandler<Result<Message, ProtocolError>> for WsConnection {
    fn handle(&mut self, frame: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        let incoming = match &frame {
            Ok(Message::Text(t)) => Incoming::Text(t),
            Ok(Message::Binary(_) | Message::Continuation(_)) => Incoming::NotText,
            Ok(Message::Ping(b)) => Incoming::Ping(b.clone()),
            Ok(Message::Pong(_) | Message::Nop) => Incoming::Alive,
            Ok(Message::Close(_)) => Incoming::Close,
            Err(ProtocolError::Overflow) => Incoming::TooLarge,
            Err(_) => Incoming::Broken,
        };
        self.on_incoming(incoming, ctx);
    }

    /// The client went away.
    fn finished(&mut self, ctx: &mut Self::Context) {
        use actix::ActorContext;
        ctx.stop();
    }
}
