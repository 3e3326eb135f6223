//! Streaming uploads: the multipart body goes to a temporary file (never
//! whole into memory), the size limit is enforced while streaming (and at
//! once from `Content-Length`), the type is sniffed from the bytes. A
//! refused upload leaves nothing behind: the temporary file is removed when
//! its handle drops.

use std::path::Path;

use actix_multipart::Multipart;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Room for the multipart framing and small fields around the file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
const MAX_TITLE_BYTES: usize = 2048;

/// A file received in full, not yet kept.
pub struct Received {
    /// Deleted when dropped, unless persisted.
    pub temp: tempfile::TempPath,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub title: Option<String>,
}

pub fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "The file is larger than the limit of {} MiB.",
            limit / (1024 * 1024)
        ),
    )
}

/// Refuses at once when the declared length is over the limit.
pub fn check_content_length(req: &actix_web::HttpRequest, limit: u64) -> ApiResult<()> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit.saturating_add(MULTIPART_OVERHEAD) => Err(too_large(limit)),
        _ => Ok(()),
    }
}

fn malformed(e: actix_multipart::MultipartError) -> ApiError {
    use actix_multipart::MultipartError as E;
    match e {
        // Not a multipart body at all (JSON, a bare file, no type): the
        // wrong media type, not a broken body.
        E::ContentTypeMissing | E::ContentTypeParse | E::ContentTypeIncompatible => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Send the upload as multipart/form-data with the file in a `file` field.",
        ),
        e => ApiError::bad_request(format!("The multipart body could not be read: {e}")),
    }
}

/// Reads the multipart body: `file` (required) to a temporary file in
/// `tmp_dir`, and the small text fields named in `text_fields`.
pub async fn receive(
    mut payload: Multipart,
    tmp_dir: &Path,
    limit: u64,
    text_fields: &[&str],
) -> ApiResult<(Received, Vec<(String, String)>)> {
    tokio::fs::create_dir_all(tmp_dir).await.map_err(|e| {
        ApiError::internal(anyhow::Error::new(e).context("creating the upload directory"))
    })?;
    let mut file: Option<(tempfile::TempPath, String, u64, String)> = None;
    let mut texts = Vec::new();
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::validation("file", "Send one file per upload."));
            }
            let filename = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(sanitize_filename)
                .unwrap_or_else(|| "upload".to_owned());
            let named = tempfile::Builder::new()
                .prefix("upload-")
                .tempfile_in(tmp_dir)
                .map_err(|e| {
                    ApiError::internal(anyhow::Error::new(e).context("creating a temporary file"))
                })?;
            let (std_file, temp) = named.into_parts();
            let mut out = tokio::fs::File::from_std(std_file);
            let mut size = 0u64;
            let mut hasher = Sha256::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(malformed)?;
                size += chunk.len() as u64;
                if size > limit {
                    // `temp` drops here: nothing stays on disk.
                    return Err(too_large(limit));
                }
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(|e| {
                    ApiError::internal(anyhow::Error::new(e).context("writing the upload"))
                })?;
            }
            out.flush().await.map_err(|e| {
                ApiError::internal(anyhow::Error::new(e).context("flushing the upload"))
            })?;
            file = Some((temp, filename, size, hex::encode(hasher.finalize())));
        } else if text_fields.contains(&name.as_str()) {
            let mut value = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(malformed)?;
                if value.len() + chunk.len() > MAX_TITLE_BYTES {
                    return Err(ApiError::validation(name, "This field is too long."));
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value).map_err(|_| {
                ApiError::validation(name.clone(), "This field must be UTF-8 text.")
            })?;
            texts.push((name, value));
        } else {
            // Unknown parts are read and dropped, within the same limit.
            let mut seen = 0u64;
            while let Some(chunk) = field.next().await {
                seen += chunk.map_err(malformed)?.len() as u64;
                if seen > limit {
                    return Err(too_large(limit));
                }
            }
        }
    }
    let (temp, filename, size, sha256) = file
        .ok_or_else(|| ApiError::validation("file", "Attach the file in a part named `file`."))?;
    if size == 0 {
        return Err(ApiError::validation("file", "The file is empty."));
    }
    let title = texts
        .iter()
        .find(|(k, _)| k == "title")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    Ok((
        Received {
            temp,
            filename,
            size,
            sha256,
            title,
        },
        texts,
    ))
}

/// Keeps only the last path component and printable characters: the name
/// is shown to people, never used as a path.
pub fn sanitize_filename(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    let clean = clean.trim().to_owned();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_tamed() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\t\\notes.pdf"), "notes.pdf");
        assert_eq!(sanitize_filename(".."), "upload");
        assert_eq!(sanitize_filename("a\u{0}b.txt"), "ab.txt");
    }
}
