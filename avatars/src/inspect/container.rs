//! Container detection: owns deciding GLB vs JSON glTF from the bytes, and
//! checking the GLB framing (header length, chunk lengths and alignment,
//! chunk order) before any chunk content is used.

use super::{ACCEPTED, ModelError, ModelFormat, clip_text};

/// GLB header: magic, version, total length.
const HEADER_LEN: usize = 12;
/// Chunk header: length, type.
const CHUNK_HEADER_LEN: usize = 8;
const CHUNK_JSON: u32 = 0x4E4F_534A;
const CHUNK_BIN: u32 = 0x004E_4942;

/// The parts of an upload that the rest of inspection reads.
pub(super) struct Container<'a> {
    /// Format decided from the bytes.
    pub format: ModelFormat,
    /// The glTF JSON text (the GLB JSON chunk, or the whole `.gltf`).
    pub json: &'a [u8],
    /// The GLB binary chunk, if any.
    pub bin: Option<&'a [u8]>,
}

/// Decides the format and splits a GLB into its chunks.
pub(super) fn open<'a>(
    bytes: &'a [u8],
    file_name: Option<&str>,
) -> Result<Container<'a>, ModelError> {
    if bytes.starts_with(b"glTF") {
        return open_glb(bytes);
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(Container {
            format: ModelFormat::Gltf,
            json: text,
            bin: None,
        });
    }
    Err(ModelError::UnsupportedType(describe_other(
        bytes, file_name,
    )))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn open_glb(bytes: &[u8]) -> Result<Container<'_>, ModelError> {
    let len = bytes.len();
    let (Some(version), Some(declared)) = (read_u32(bytes, 4), read_u32(bytes, 8)) else {
        return Err(ModelError::Invalid(format!(
            "The file is only {len} bytes long, too short for a GLB header; it is truncated. Upload it again."
        )));
    };
    match version {
        2 => {}
        1 => return Err(gltf1_error()),
        v => {
            return Err(ModelError::UnsupportedType(format!(
                "The file is a GLB of container version {v}; only version 2 (glTF 2.0) is supported. {ACCEPTED}"
            )));
        }
    }
    let declared = declared as usize;
    if declared != len {
        return Err(ModelError::Invalid(if declared > len {
            format!(
                "The GLB header says the file is {declared} bytes but only {len} bytes arrived; the file is truncated. Upload it again."
            )
        } else {
            format!(
                "The GLB header says the file is {declared} bytes but it is {len} bytes; the file is corrupted. Export it again."
            )
        }));
    }

    let mut offset = HEADER_LEN;
    let mut index = 0usize;
    let mut json = None;
    let mut bin = None;
    while offset < len {
        let (Some(chunk_len), Some(chunk_type)) =
            (read_u32(bytes, offset), read_u32(bytes, offset + 4))
        else {
            return Err(ModelError::Invalid(format!(
                "The GLB has {} stray bytes after its last chunk; the file is corrupted. Export it again.",
                len - offset
            )));
        };
        let name = chunk_name(chunk_type);
        let chunk_len = chunk_len as usize;
        let start = offset + CHUNK_HEADER_LEN;
        let available = len - start;
        if chunk_len > available {
            return Err(ModelError::Invalid(format!(
                "GLB chunk {index} ({name}) claims {chunk_len} bytes but only {available} bytes follow; the file is truncated or its chunk length is wrong. Export it again."
            )));
        }
        if !chunk_len.is_multiple_of(4) {
            return Err(ModelError::Invalid(format!(
                "GLB chunk {index} ({name}) is {chunk_len} bytes long, which is not a multiple of 4 as the format requires; the file is corrupted. Export it again."
            )));
        }
        let content = &bytes[start..start + chunk_len];
        match (index, chunk_type) {
            (0, CHUNK_JSON) => json = Some(content),
            (0, _) => {
                return Err(ModelError::Invalid(format!(
                    "The first GLB chunk must be the JSON chunk but is {name}; the file is corrupted. Export it again."
                )));
            }
            (1, CHUNK_BIN) => bin = Some(content),
            (_, CHUNK_JSON | CHUNK_BIN) => {
                return Err(ModelError::Invalid(format!(
                    "GLB chunk {index} is a second {name} chunk, which the format does not allow. Export it again."
                )));
            }
            // Chunks of unknown type are ignored, as the specification requires.
            _ => {}
        }
        offset = start + chunk_len;
        index += 1;
    }
    let Some(json) = json else {
        return Err(ModelError::Invalid(
            "The GLB has no JSON chunk; the file is truncated. Upload it again.".to_owned(),
        ));
    };
    if json.is_empty() {
        return Err(ModelError::Invalid(
            "The GLB's JSON chunk is empty; the file is corrupted. Export it again.".to_owned(),
        ));
    }
    Ok(Container {
        format: ModelFormat::Glb,
        json,
        bin,
    })
}

/// The refusal for a glTF 1.0 model (binary or JSON).
pub(super) fn gltf1_error() -> ModelError {
    ModelError::UnsupportedType(format!(
        "The file is a glTF 1.0 model; only glTF 2.0 is supported. Export it again as glTF 2.0. {ACCEPTED}"
    ))
}

/// Names a chunk type for messages: its four letters if printable.
fn chunk_name(chunk_type: u32) -> String {
    let b = chunk_type.to_le_bytes();
    let text: String = b.iter().filter(|&&c| c != 0).map(|&c| c as char).collect();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic()) {
        format!("type \"{text}\"")
    } else {
        format!("type 0x{chunk_type:08X}")
    }
}

/// Builds the refusal for bytes that are neither GLB nor JSON, naming what
/// they look like when that is recognisable.
fn describe_other(bytes: &[u8], file_name: Option<&str>) -> String {
    let kind = if bytes.is_empty() {
        Some("empty")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("a PNG image")
    } else if bytes.starts_with(b"\xFF\xD8\xFF") {
        Some("a JPEG image")
    } else if bytes.starts_with(b"GIF8") {
        Some("a GIF image")
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some("a ZIP archive (unzip it and upload the .glb inside)")
    } else if bytes.starts_with(b"%PDF") {
        Some("a PDF document")
    } else if bytes.starts_with(b"Kaydara FBX Binary") || bytes.starts_with(b"; FBX") {
        Some("an FBX model (convert it to .glb, for example with Blender)")
    } else if bytes.starts_with(b"solid ") {
        Some("an STL model (convert it to .glb, for example with Blender)")
    } else {
        None
    };
    let subject = match file_name {
        Some(name) => format!("The file \"{}\"", clip_text(name)),
        None => "The file".to_owned(),
    };
    match kind {
        Some("empty") => format!("{subject} is empty. {ACCEPTED}"),
        Some(kind) => format!("{subject} is {kind}, not a glTF 2.0 model. {ACCEPTED}"),
        None => format!(
            "{subject} is not a glTF 2.0 model (it starts neither with the GLB signature nor with a JSON object). {ACCEPTED}"
        ),
    }
}
