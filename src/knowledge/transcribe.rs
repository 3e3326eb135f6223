//! Audio and video: an OpenAI-compatible transcription client
//! (`POST {base}/v1/audio/transcriptions`, multipart, `verbose_json` for
//! timestamps). Without a configured base URL, media uploads are refused.

use std::path::Path;
use std::time::Duration;

use bwenge_parsers::{Document, ParseError, Section};
use serde::Deserialize;

use crate::config::TranscriptionSettings;

#[derive(Deserialize)]
struct Answer {
    text: Option<String>,
    #[serde(default)]
    segments: Vec<Segment>,
}

#[derive(Deserialize)]
struct Segment {
    start: f64,
    end: f64,
    text: String,
}

pub fn enabled(settings: &TranscriptionSettings) -> bool {
    !settings.base_url.trim().is_empty()
}

/// Transcribes a media file into a document whose pages are minutes.
pub async fn transcribe(
    settings: &TranscriptionSettings,
    path: &Path,
    filename: &str,
    mime: &str,
) -> Result<Document, ParseError> {
    let bytes = tokio::fs::read(path).await.map_err(ParseError::Io)?;
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(filename.to_owned())
        .mime_str(mime)
        .map_err(|e| ParseError::Malformed(format!("the media type could not be sent: {e}")))?;
    let form = reqwest::multipart::Form::new()
        .text("model", settings.model.clone())
        .text("response_format", "verbose_json")
        .part("file", part);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_secs))
        .build()
        .map_err(|e| ParseError::Io(std::io::Error::other(e)))?;
    let url = format!(
        "{}/v1/audio/transcriptions",
        settings.base_url.trim_end_matches('/')
    );
    let mut req = client.post(url).multipart(form);
    if !settings.api_key.is_empty() {
        req = req.bearer_auth(settings.api_key.expose());
    }
    let res = req.send().await.map_err(|e| {
        ParseError::Io(std::io::Error::other(format!(
            "transcription service unreachable: {e}"
        )))
    })?;
    let status = res.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ParseError::Io(std::io::Error::other(format!(
            "the transcription service answered {status}"
        ))));
    }
    if !status.is_success() {
        return Err(ParseError::Malformed(format!(
            "The transcription service refused this file ({status})."
        )));
    }
    let answer: Answer = res.json().await.map_err(|e| {
        ParseError::Malformed(format!(
            "The transcription service gave an unreadable answer: {e}"
        ))
    })?;
    let mut sections: Vec<Section> = Vec::new();
    if answer.segments.is_empty() {
        let text = answer.text.unwrap_or_default();
        if !text.trim().is_empty() {
            sections.push(Section {
                page: 1,
                heading_path: vec![],
                text,
                start_ms: Some(0),
                end_ms: None,
            });
        }
    } else {
        for s in answer.segments {
            let start_ms = (s.start.max(0.0) * 1000.0) as u64;
            let page = (start_ms / 60_000) as u32 + 1;
            match sections.last_mut() {
                Some(last) if last.page == page => {
                    last.text.push(' ');
                    last.text.push_str(s.text.trim());
                    last.end_ms = Some((s.end.max(0.0) * 1000.0) as u64);
                }
                _ => sections.push(Section {
                    page,
                    heading_path: vec![],
                    text: s.text.trim().to_owned(),
                    start_ms: Some(start_ms),
                    end_ms: Some((s.end.max(0.0) * 1000.0) as u64),
                }),
            }
        }
    }
    if sections.is_empty() {
        return Err(ParseError::Empty);
    }
    let page_count = sections.last().map_or(1, |s| s.page);
    Ok(Document {
        sections,
        page_count,
        title: None,
    })
}
