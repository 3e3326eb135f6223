//! Messages of the persona family (`Persona`, reached through a registry).

use std::marker::PhantomData;

use actix::Message;

/// A question for a persona (sent by the HTTP `ask` handler and by chat
/// sessions). Answered with the persona's reply, or why there is none.
pub struct Ask<Req, Rep, E> {
    pub request: Req,
    _reply: PhantomData<fn() -> (Rep, E)>,
}

impl<Req, Rep, E> Ask<Req, Rep, E> {
    pub fn new(request: Req) -> Self {
        Self {
            request,
            _reply: PhantomData,
        }
    }
}

impl<Req, Rep: 'static, E: 'static> Message for Ask<Req, Rep, E> {
    type Result = Result<Rep, AskError<E>>;
}

/// Why a persona gave no reply.
#[derive(Debug)]
pub enum AskError<E> {
    /// The persona does not exist (any more).
    NotFound,
    /// Loading or answering failed.
    Failed(E),
}

/// Forget the loaded configuration; the next question loads it again (sent
/// when the persona or its knowledge changed, on this node or another).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Reload;
