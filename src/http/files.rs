//! Streaming a stored file into a response body, a chunk at a time.

use std::io::{Read, Seek, SeekFrom};

use actix_web::web::Bytes;
use futures_util::Stream;

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
