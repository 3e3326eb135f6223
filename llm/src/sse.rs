//! The one Server-Sent Events decoder both providers use: bytes as they come
//! off the network, in chunks of any size, to [`SseEvent`]s, following the
//! WHATWG event-stream rules.
//!
//! * Lines end with `\r\n`, `\n` or `\r`, and a `\r\n` split across two
//!   chunks is one line end; bytes are only decoded as UTF-8 once a line is
//!   complete, so multi-byte characters split across chunks survive.
//! * `data:` lines accumulate (joined with `\n`); `event:` sets the type
//!   (default `message`); `id:` is kept; `retry:` and unknown fields are
//!   ignored; lines starting with `:` are comments (keep-alives); one space
//!   after the colon is dropped; a leading BOM is skipped.
//! * A blank line dispatches the event; an event with no `data` line is not
//!   dispatched.
//! * At the end of the stream, an event whose lines were all complete but
//!   that lacked the final blank line is dispatched (some servers close right
//!   after `data: [DONE]\n`); a partial last line is discarded.

use futures_util::{Stream, StreamExt};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `message` when there was none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` field of the event, if any.
    pub id: Option<String>,
}

/// Incremental event-stream decoder.
#[derive(Debug, Default, Clone)]
pub struct SseDecoder {
    line: Vec<u8>,
    skip_lf: bool,
    started: bool,
    pre: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut out = Vec::new();
        if self.started {
            self.feed(chunk, &mut out);
            return out;
        }
        // The BOM may itself be split: wait until it is known whether one is there.
        self.pre.extend_from_slice(chunk);
        if self.pre.len() < BOM.len() && BOM.starts_with(&self.pre) {
            return out;
        }
        self.started = true;
        let pre = std::mem::take(&mut self.pre);
        self.feed(pre.strip_prefix(BOM).unwrap_or(&pre), &mut out);
        out
    }

    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) {
        while !bytes.is_empty() {
            if self.skip_lf {
                self.skip_lf = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            self.feed_once(&mut bytes, out);
        }
    }

    fn feed_once(&mut self, bytes: &mut &[u8], out: &mut Vec<SseEvent>) {
        match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(pos) => {
                self.line.extend_from_slice(&bytes[..pos]);
                if bytes[pos] == b'\r' {
                    self.skip_lf = true;
                }
                *bytes = &bytes[pos + 1..];
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
            }
            None => {
                self.line.extend_from_slice(bytes);
                *bytes = &[];
            }
        }
    }

    /// Ends the stream: dispatches an event whose lines were complete but
    /// that was not followed by a blank line; drops a partial last line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.line.clear();
        self.skip_lf = false;
        self.dispatch()
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(ev) = self.dispatch() {
                out.push(ev);
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let had_data = std::mem::take(&mut self.has_data);
        let event = self.event.take();
        let id = self.id.take();
        let data = std::mem::take(&mut self.data);
        if !had_data {
            return None;
        }
        Some(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".to_owned()),
            data,
            id,
        })
    }
}

/// Decodes a byte stream into events. Errors from the byte stream are passed
/// through; after the byte stream ends, [`SseDecoder::finish`] is applied.
pub fn sse_events<S, B, E>(bytes: S) -> impl Stream<Item = Result<SseEvent, E>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let state = (
        bytes,
        SseDecoder::new(),
        std::collections::VecDeque::new(),
        false,
    );
    futures_util::stream::unfold(
        state,
        |(mut bytes, mut dec, mut queue, mut ended)| async move {
            loop {
                if let Some(ev) = queue.pop_front() {
                    return Some((Ok(ev), (bytes, dec, queue, ended)));
                }
                if ended {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => queue.extend(dec.push(chunk.as_ref())),
                    Some(Err(e)) => {
                        ended = true;
                        return Some((Err(e), (bytes, dec, queue, ended)));
                    }
                    None => {
                        ended = true;
                        queue.extend(dec.finish());
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut dec = SseDecoder::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts {
            out.extend(dec.push(&input[last..c]));
            last = c;
        }
        out.extend(dec.push(&input[last..]));
        out.extend(dec.finish());
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: None,
        }
    }

    const SAMPLE: &str = "\u{FEFF}: keep-alive comment\r\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"Ça \u{1F600} \u{6C34}\"}}]}\r\n\r\n\
        event: content_block_delta\n\
        data: first line\n\
        data:second line\n\
        data:  two spaces\n\n\
        id: 7\rdata: cr only\r\r\
        event: ping\n\n\
        data\n\n\
        : comment\n\
        data: [DONE]\n\n";

    fn sample_events() -> Vec<SseEvent> {
        vec![
            ev(
                "message",
                "{\"choices\":[{\"delta\":{\"content\":\"Ça \u{1F600} \u{6C34}\"}}]}",
            ),
            ev(
                "content_block_delta",
                "first line\nsecond line\n two spaces",
            ),
            SseEvent {
                event: "message".into(),
                data: "cr only".into(),
                id: Some("7".into()),
            },
            ev("message", ""),
            ev("message", "[DONE]"),
        ]
    }

    #[test]
    fn decodes_whole_input() {
        assert_eq!(decode_in_chunks(SAMPLE.as_bytes(), &[]), sample_events());
    }

    #[test]
    fn decodes_identically_at_every_single_and_double_split() {
        let input = SAMPLE.as_bytes();
        let want = sample_events();
        for a in 0..=input.len() {
            assert_eq!(decode_in_chunks(input, &[a]), want, "split at {a}");
        }
        for a in (0..=input.len()).step_by(3) {
            for b in (a..=input.len()).step_by(2) {
                assert_eq!(decode_in_chunks(input, &[a, b]), want, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn decodes_byte_by_byte() {
        let input = SAMPLE.as_bytes();
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(decode_in_chunks(input, &cuts), sample_events());
    }

    #[test]
    fn end_of_stream_rules() {
        // Complete lines without the blank line: dispatched at finish.
        assert_eq!(
            decode_in_chunks(b"data: [DONE]\n", &[]),
            vec![ev("message", "[DONE]")]
        );
        // A partial line is discarded.
        assert_eq!(
            decode_in_chunks(b"data: {\"a\":1}\n\ndata: {\"b", &[]),
            vec![ev("message", "{\"a\":1}")]
        );
        // An event with no data is not dispatched; its type does not leak.
        assert_eq!(
            decode_in_chunks(b"event: ping\n\ndata: x\n\n", &[]),
            vec![ev("message", "x")]
        );
        assert!(decode_in_chunks(b"", &[]).is_empty());
        assert!(decode_in_chunks(b"\xEF\xBB", &[]).is_empty());
    }

    #[tokio::test]
    async fn stream_adapter_passes_errors_and_finishes() {
        let chunks: Vec<Result<Vec<u8>, String>> = vec![
            Ok(b"data: a\n".to_vec()),
            Ok(b"\ndata: b".to_vec()),
            Ok(b"\n".to_vec()),
        ];
        let events: Vec<_> = sse_events(futures_util::stream::iter(chunks))
            .collect()
            .await;
        assert_eq!(events, vec![Ok(ev("message", "a")), Ok(ev("message", "b"))]);

        let chunks: Vec<Result<Vec<u8>, String>> =
            vec![Ok(b"data: a\n\n".to_vec()), Err("reset".into())];
        let events: Vec<_> = sse_events(futures_util::stream::iter(chunks))
            .collect()
            .await;
        assert_eq!(
            events,
            vec![Ok(ev("message", "a")), Err("reset".to_owned())]
        );
    }
}
