//! Streaming a stored file into a response body, a chunk at a time.

use std::io::{Read, Seek, SeekFrom};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use bwenge_avatars::http_range::{RangeOutcome, parse_range, unsatisfied_content_range};
use futures_util::Stream;

use crate::error::{ErrorCode, current_request_id, problem_response};

/// Bytes read from a file per step when serving it: the most one response
/// holds in memory at a time.
pub const SERVE_CHUNK_BYTES: usize = 128 * 1024;

/// `len` bytes of `file` from `start`, read [`SERVE_CHUNK_BYTES`] at a time
/// on the blocking pool: at most one chunk is in memory per response.
/// `on_chunk` sees the size of every chunk sent. A file that ends early
/// ends the stream with an error (the connection is then closed).
pub fn file_stream(
    mut file: std::fs::File,
    start: u64,
    len: u64,
    on_chunk: impl Fn(u64) + Clone + 'static,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    let seek = if start > 0 {
        file.seek(SeekFrom::Start(start)).map(|_| ())
    } else {
        Ok(())
    };
    let first = seek.err();
    futures_util::stream::unfold((Some(file), len, first), move |(file, left, failed)| {
        let on_chunk = on_chunk.clone();
        async move {
            if let Some(e) = failed {
                return Some((Err(e), (None, 0, None)));
            }
            let file = file?;
            if left == 0 {
                return None;
            }
            let want =
                usize::try_from(left).map_or(SERVE_CHUNK_BYTES, |l| l.min(SERVE_CHUNK_BYTES));
            let read = crate::work::blocking(move || {
                let mut file = file;
                let mut buf = vec![0u8; want];
                let mut filled = 0;
                while filled < want {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => {
                            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok((file, buf))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok((file, buf)) => {
                    on_chunk(buf.len() as u64);
                    let n = buf.len() as u64;
                    Some((Ok(Bytes::from(buf)), (Some(file), left - n, None)))
                }
                Err(e) => Some((Err(e), (None, 0, None))),
            }
        }
    })
}

/// The part of a `len`-byte file a request asks for, from its `Range` and
/// `If-Range` headers: `(200, 0, len)` for the whole file, `(206, start,
/// count)` for one range, or the `416` answer (with its `Content-Range`)
/// when the range lies outside the file. An `If-Range` that is not the
/// current `etag` asks for the whole file.
pub fn requested_slice(
    range: Option<&str>,
    if_range: Option<&str>,
    etag: &str,
    len: u64,
) -> Result<(StatusCode, u64, u64), Box<HttpResponse>> {
    let outcome = match range {
        Some(_) if if_range.is_some_and(|ir| ir.trim() != etag) => RangeOutcome::Full,
        Some(r) => parse_range(r, len),
        None => RangeOutcome::Full,
    };
    match outcome {
        RangeOutcome::Full => Ok((StatusCode::OK, 0, len)),
        RangeOutcome::Partial {
            start,
            end_inclusive,
        } => Ok((
            StatusCode::PARTIAL_CONTENT,
            start,
            end_inclusive - start + 1,
        )),
        RangeOutcome::Unsatisfiable => {
            let mut res = problem_response(
                ErrorCode::RangeNotSatisfiable,
                &format!("The range asked for lies outside the file's {len} bytes."),
                None,
                None,
                current_request_id(),
            );
            if let Ok(v) = HeaderValue::from_str(&unsatisfied_content_range(len)) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Err(Box::new(res))
        }
    }
}
