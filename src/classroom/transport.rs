//! The WebSocket transport of live-classroom watchers: the only file of
//! the classroom that knows the WebSocket library (`actix-ws`), as
//! `chat/ws/transport.rs` is for chat. It upgrades the request and gives
//! the connection a sending half ([`Socket`]) and a receiving half
//! ([`Inbox`]) in the classroom's own terms.

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};

/// Frames above this many bytes end the connection (1009): a watcher only
/// ever sends pings.
const MAX_FRAME: usize = 4096;

/// What arrived on the socket.
pub(super) enum Incoming {
    Text(String),
    /// Binary or continuation frames: the classroom speaks JSON text only.
    NotText,
    Ping(Bytes),
    /// Pongs and no-ops: only show the client is alive.
    Alive,
    Close,
    TooLarge,
    /// A protocol error: the connection is unusable.
    Broken,
}

/// The socket has closed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Closed;

/// The sending half.
pub(super) struct Socket(Session);

/// The receiving half.
pub(super) struct Inbox(MessageStream);

/// Upgrades `req` to a WebSocket; `None` when it is no WebSocket
/// handshake.
pub(super) fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
) -> Option<(HttpResponse, Socket, Inbox)> {
    let (response, session, stream) = actix_ws::handle(req, body).ok()?;
    Some((
        response,
        Socket(session),
        Inbox(stream.max_frame_size(MAX_FRAME)),
    ))
}

impl Socket {
    /// Sends a text frame, waiting for room in the socket's queue.
    pub(super) async fn text(&mut self, text: &str) -> Result<(), Closed> {
        self.0.text(text.to_owned()).await.map_err(|_| Closed)
    }

    pub(super) async fn ping(&mut self) -> Result<(), Closed> {
        self.0.ping(b"").await.map_err(|_| Closed)
    }

    pub(super) async fn pong(&mut self, b: &[u8]) -> Result<(), Closed> {
        self.0.pong(b).await.map_err(|_| Closed)
    }

    /// Sends a close frame with `code` (none: a plain close).
    pub(super) async fn close(self, code: Option<u16>) {
        let reason = code.map(|c| CloseReason {
            code: CloseCode::Other(c),
            description: None,
        });
        let _ = self.0.close(reason).await;
    }
}

impl Inbox {
    /// The next thing from the client; `None` once the stream has ended.
    pub(super) async fn next(&mut self) -> Option<Incoming> {
        use actix_ws::ProtocolError;
        Some(match self.0.recv().await? {
            Ok(Message::Text(t)) => Incoming::Text(t.to_string()),
            Ok(Message::Binary(_) | Message::Continuation(_)) => Incoming::NotText,
            Ok(Message::Ping(b)) => Incoming::Ping(b),
            Ok(Message::Pong(_) | Message::Nop) => Incoming::Alive,
            Ok(Message::Close(_)) => Incoming::Close,
            Err(ProtocolError::Overflow) => Incoming::TooLarge,
            Err(_) => Incoming::Broken,
        })
    }
}
