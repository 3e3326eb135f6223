//! The production clients of `bwenge-payments` against the fake providers,
//! over real HTTP on 127.0.0.1, with a local receiver for callbacks and
//! webhooks.
#![allow(clippy::unwrap_used)]

mod airtel;
mod momo;
mod receiver;
mod stripe;

use std::time::Duration;

/// An address that accepts connections but never answers: a provider
/// that hangs.
pub fn silent_server() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// An address nothing listens on.
pub fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

pub fn http() -> reqwest::Client {
    bwenge_payments::http_client(Duration::from_secs(10))
}

/// Generous upper bound for asynchronous deliveries on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(20);
