//! Binary data: owns where each buffer's bytes come from (the GLB binary
//! chunk or a base64 `data:` URI, never a file or the network), the bounds
//! of every buffer view and accessor (sparse storage included), and reading
//! vertex positions when a POSITION accessor lacks its `min`/`max`.

use std::borrow::Cow;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use gltf::json;
use gltf::json::accessor::{ComponentType, Type};
use gltf::json::validation::Checked;

use super::{MAX_ACCESSOR_COUNT, MAX_DATA_URI_BYTES, ModelError, clip_text};

/// Standard base64, tolerant of missing padding (some exporters omit it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Most external references quoted in one message.
const MAX_LISTED_REFERENCES: usize = 5;

/// Per-axis minimum and maximum of a set of 3D points.
pub(super) type Vec3Bounds = ([f32; 3], [f32; 3]);

/// The bytes of each buffer, in buffer order. Each holds at least the
/// buffer's declared `byteLength`.
pub(super) type Buffers<'a> = Vec<Cow<'a, [u8]>>;

fn corrupted(detail: String) -> ModelError {
    ModelError::Invalid(format!(
        "{detail}; the file is corrupted. Export it again from your 3D tool."
    ))
}

fn is_data_uri(uri: &str) -> bool {
    uri.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:"))
}

/// Refuses buffers and images that live outside the uploaded file (any URI
/// that is not a `data:` URI), naming them.
pub(super) fn refuse_external(root: &json::Root) -> Result<(), ModelError> {
    let external: Vec<String> = root
        .buffers
        .iter()
        .filter_map(|b| b.uri.as_deref())
        .filter(|uri| !is_data_uri(uri))
        .map(|uri| format!("an external buffer \"{}\"", clip_text(uri)))
        .chain(
            root.images
                .iter()
                .filter_map(|i| i.uri.as_deref())
                .filter(|uri| !is_data_uri(uri))
                .map(|uri| format!("an external image \"{}\"", clip_text(uri))),
        )
        .collect();
    if external.is_empty() {
        Ok(())
    } else {
        Err(external_error(&external))
    }
}

/// Loads every buffer (after [`refuse_external`]): the GLB binary chunk
/// for buffer 0 without URI, decoded `data:` URIs otherwise.
pub(super) fn load_buffers<'a>(
    root: &json::Root,
    bin: Option<&'a [u8]>,
) -> Result<Buffers<'a>, ModelError> {
    let mut budget = MAX_DATA_URI_BYTES;
    let mut buffers = Vec::with_capacity(root.buffers.len());
    for (i, buffer) in root.buffers.iter().enumerate() {
        let data: Cow<'a, [u8]> = match (&buffer.uri, bin) {
            (Some(uri), _) if is_data_uri(uri) => Cow::Owned(decode_data_uri(uri, i, &mut budget)?),
            (Some(uri), _) => {
                return Err(external_error(&[format!(
                    "an external buffer \"{}\"",
                    clip_text(uri)
                )]));
            }
            (None, Some(bin)) if i == 0 => Cow::Borrowed(bin),
            (None, None) if i == 0 => {
                return Err(corrupted(
                    "Buffer 0 has no URI, so its data must be the GLB binary chunk, but the file has none".to_owned(),
                ));
            }
            (None, _) => {
                return Err(corrupted(format!(
                    "Buffer {i} has no URI, but only buffer 0 can be the GLB binary chunk"
                )));
            }
        };
        let declared = buffer.byte_length.0;
        if (data.len() as u64) < declared {
            return Err(corrupted(format!(
                "Buffer {i} declares {declared} bytes but holds only {}",
                data.len()
            )));
        }
        buffers.push(data);
    }
    Ok(buffers)
}

fn external_error(references: &[String]) -> ModelError {
    let mut listed: Vec<&str> = references
        .iter()
        .take(MAX_LISTED_REFERENCES)
        .map(String::as_str)
        .collect();
    let rest = references.len().saturating_sub(MAX_LISTED_REFERENCES);
    let more = format!("{rest} more");
    if rest > 0 {
        listed.push(&more);
    }
    let list = match listed.split_last() {
        Some((last, first)) if !first.is_empty() => format!("{} and {last}", first.join(", ")),
        Some((last, _)) => (*last).to_owned(),
        None => String::new(),
    };
    let verb = if references.len() == 1 { "is" } else { "are" };
    let embedded = if references
        .iter()
        .any(|r| r.starts_with("an external image"))
    {
        "embedded buffers and images"
    } else {
        "embedded buffers"
    };
    ModelError::ExternalReference(format!(
        "The file references {list} that {verb} not part of the upload; export the model as .glb or a .gltf with {embedded}."
    ))
}

/// Decodes a base64 `data:` URI, charging its size to `budget`.
fn decode_data_uri(uri: &str, index: usize, budget: &mut u64) -> Result<Vec<u8>, ModelError> {
    let rest = uri.get(5..).unwrap_or_default();
    let Some((header, payload)) = rest.split_once(',') else {
        return Err(corrupted(format!(
            "Buffer {index} has a malformed data URI (no comma)"
        )));
    };
    let is_base64 = header
        .rsplit(';')
        .next()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !is_base64 {
        return Err(ModelError::Invalid(format!(
            "Buffer {index} is embedded as a data URI that is not base64-encoded, which is not supported. Export the model as .glb instead."
        )));
    }
    let estimate = base64::decoded_len_estimate(payload.len()) as u64;
    if estimate > *budget {
        return Err(ModelError::TooComplex(format!(
            "The model's embedded buffers are larger than {} MB. Export it as .glb, or reduce its size.",
            MAX_DATA_URI_BYTES / (1024 * 1024)
        )));
    }
    let bytes = BASE64.decode(payload.trim()).map_err(|e| {
        corrupted(format!(
            "Buffer {index} is embedded as a data URI that is not valid base64 ({e})"
        ))
    })?;
    *budget = budget.saturating_sub(bytes.len() as u64);
    Ok(bytes)
}

/// Every buffer view must lie within its buffer's declared length (which
/// [`load_buffers`] ensured the bytes cover).
pub(super) fn check_views(root: &json::Root, buffers: &Buffers<'_>) -> Result<(), ModelError> {
    for (i, view) in root.buffer_views.iter().enumerate() {
        let b = view.buffer.value();
        let (Some(buffer), Some(_)) = (root.buffers.get(b), buffers.get(b)) else {
            return Err(corrupted(format!(
                "Buffer view {i} refers to buffer {b}, which does not exist"
            )));
        };
        let offset = view.byte_offset.map_or(0, |o| o.0);
        let end = offset.checked_add(view.byte_length.0);
        let declared = buffer.byte_length.0;
        if end.is_none_or(|end| end > declared) {
            return Err(corrupted(format!(
                "Buffer view {i} covers {} bytes from offset {offset} of buffer {b}, which has only {declared} bytes",
                view.byte_length.0
            )));
        }
    }
    Ok(())
}

/// Size in bytes of one element, including the column padding that glTF
/// requires for 1- and 2-byte matrices.
fn element_size(component: ComponentType, ty: Type) -> u64 {
    let c = component.size() as u64;
    match (ty, c) {
        (Type::Mat2, 1) => 8,
        (Type::Mat3, 1) => 12,
        (Type::Mat3, 2) => 24,
        _ => c * ty.multiplicity() as u64,
    }
}

/// The component type and element type of accessor `i`.
fn accessor_kind(i: usize, accessor: &json::Accessor) -> Result<(ComponentType, Type), ModelError> {
    match (accessor.component_type, accessor.type_) {
        (Checked::Valid(c), Checked::Valid(t)) => Ok((c.0, t)),
        _ => Err(corrupted(format!(
            "Accessor {i} has an invalid component type or type"
        ))),
    }
}

/// The bytes of buffer view `index`.
fn view_bytes<'b>(root: &json::Root, buffers: &'b Buffers<'_>, index: usize) -> Option<&'b [u8]> {
    let view = root.buffer_views.get(index)?;
    let data = buffers.get(view.buffer.value())?;
    let start = usize::try_from(view.byte_offset.map_or(0, |o| o.0)).ok()?;
    let end = start.checked_add(usize::try_from(view.byte_length.0).ok()?)?;
    data.get(start..end)
}

/// Checks that `count` items of `size` bytes, `stride` apart, starting at
/// `offset`, fit in buffer view `view`.
fn check_span(
    root: &json::Root,
    view: usize,
    offset: u64,
    count: u64,
    stride: u64,
    size: u64,
    what: &dyn Fn() -> String,
) -> Result<(), ModelError> {
    let Some(v) = root.buffer_views.get(view) else {
        return Err(corrupted(format!(
            "{} refers to buffer view {view}, which does not exist",
            what()
        )));
    };
    let available = v.byte_length.0;
    if count == 0 {
        return Ok(());
    }
    let end = (count - 1)
        .checked_mul(stride)
        .and_then(|x| x.checked_add(offset))
        .and_then(|x| x.checked_add(size));
    if end.is_none_or(|end| end > available) {
        return Err(corrupted(format!(
            "{} reads past the end of buffer view {view} ({count} elements of {size} bytes from offset {offset}, but the view has {available} bytes)",
            what()
        )));
    }
    Ok(())
}

/// Every accessor, dense and sparse parts, must lie within its buffer views.
pub(super) fn check_accessors(root: &json::Root, buffers: &Buffers<'_>) -> Result<(), ModelError> {
    for (i, accessor) in root.accessors.iter().enumerate() {
        let count = accessor.count.0;
        let (component, ty) = accessor_kind(i, accessor)?;
        let size = element_size(component, ty);
        if let Some(view) = accessor.buffer_view {
            let stride = root
                .buffer_views
                .get(view.value())
                .and_then(|v| v.byte_stride)
                .map_or(size, |s| s.0 as u64);
            if stride < size {
                return Err(corrupted(format!(
                    "Accessor {i} has {size}-byte elements but buffer view {} steps only {stride} bytes between them",
                    view.value()
                )));
            }
            let offset = accessor.byte_offset.map_or(0, |o| o.0);
            check_span(root, view.value(), offset, count, stride, size, &|| {
                format!("Accessor {i}")
            })?;
        }
        // Checked after the span, so that a count the data cannot hold is
        // reported as corruption rather than as size.
        if count > MAX_ACCESSOR_COUNT {
            return Err(ModelError::TooComplex(format!(
                "Accessor {i} has {count} elements; at most {MAX_ACCESSOR_COUNT} are accepted. Simplify the model and export it again."
            )));
        }
        if let Some(sparse) = &accessor.sparse {
            check_sparse(root, buffers, i, accessor, sparse, size)?;
        }
    }
    Ok(())
}

fn check_sparse(
    root: &json::Root,
    buffers: &Buffers<'_>,
    i: usize,
    accessor: &json::Accessor,
    sparse: &json::accessor::sparse::Sparse,
    size: u64,
) -> Result<(), ModelError> {
    let count = sparse.count.0;
    if count == 0 || count > accessor.count.0 {
        return Err(corrupted(format!(
            "Accessor {i} has {count} sparse values but {} elements",
            accessor.count.0
        )));
    }
    let Checked::Valid(index_type) = sparse.indices.component_type else {
        return Err(corrupted(format!(
            "Accessor {i} has an invalid sparse index type"
        )));
    };
    let index_size = index_type.0.size() as u64;
    check_span(
        root,
        sparse.indices.buffer_view.value(),
        sparse.indices.byte_offset.0,
        count,
        index_size,
        index_size,
        &|| format!("The sparse indices of accessor {i}"),
    )?;
    check_span(
        root,
        sparse.values.buffer_view.value(),
        sparse.values.byte_offset.0,
        count,
        size,
        size,
        &|| format!("The sparse values of accessor {i}"),
    )?;
    let indices = sparse_indices(root, buffers, sparse)
        .ok_or_else(|| corrupted(format!("The sparse indices of accessor {i} cannot be read")))?;
    let mut previous: Option<u64> = None;
    for index in indices {
        if index >= accessor.count.0 || previous.is_some_and(|p| index <= p) {
            return Err(corrupted(format!(
                "The sparse indices of accessor {i} are not increasing and below its {} elements",
                accessor.count.0
            )));
        }
        previous = Some(index);
    }
    Ok(())
}

/// Reads the sparse indices (bounds already checked).
fn sparse_indices(
    root: &json::Root,
    buffers: &Buffers<'_>,
    sparse: &json::accessor::sparse::Sparse,
) -> Option<Vec<u64>> {
    let Checked::Valid(index_type) = sparse.indices.component_type else {
        return None;
    };
    let size = index_type.0.size();
    let bytes = view_bytes(root, buffers, sparse.indices.buffer_view.value())?;
    let start = usize::try_from(sparse.indices.byte_offset.0).ok()?;
    let count = usize::try_from(sparse.count.0).ok()?;
    let len = count.checked_mul(size)?;
    let bytes = bytes.get(start..start.checked_add(len)?)?;
    Some(
        bytes
            .chunks_exact(size)
            .map(|c| match *c {
                [a] => u64::from(a),
                [a, b] => u64::from(u16::from_le_bytes([a, b])),
                [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
                _ => u64::MAX,
            })
            .collect(),
    )
}

fn read_vec3(bytes: &[u8], at: usize) -> Option<[f32; 3]> {
    let b = bytes.get(at..at.checked_add(12)?)?;
    let f =
        |k: usize| -> Option<f32> { Some(f32::from_le_bytes(b.get(k..k + 4)?.try_into().ok()?)) };
    Some([f(0)?, f(4)?, f(8)?])
}

/// Computes the bounds of a float VEC3 accessor from its data (dense part,
/// or zeros without a buffer view, overridden by its sparse values).
/// `None` if it has no elements. Bounds were checked by [`check_accessors`].
pub(super) fn vec3_bounds(
    root: &json::Root,
    buffers: &Buffers<'_>,
    index: usize,
) -> Result<Option<Vec3Bounds>, ModelError> {
    let unreadable = || corrupted(format!("The positions of accessor {index} cannot be read"));
    let accessor = root.accessors.get(index).ok_or_else(unreadable)?;
    let count = usize::try_from(accessor.count.0).map_err(|_| unreadable())?;
    if count == 0 {
        return Ok(None);
    }
    let dense = match accessor.buffer_view {
        Some(view) => {
            let bytes = view_bytes(root, buffers, view.value()).ok_or_else(unreadable)?;
            let stride = root
                .buffer_views
                .get(view.value())
                .and_then(|v| v.byte_stride)
                .map_or(12, |s| s.0);
            let offset = usize::try_from(accessor.byte_offset.map_or(0, |o| o.0))
                .map_err(|_| unreadable())?;
            Some((bytes, stride, offset))
        }
        None => None,
    };
    let mut overrides: Vec<(u64, [f32; 3])> = Vec::new();
    if let Some(sparse) = &accessor.sparse {
        let indices = sparse_indices(root, buffers, sparse).ok_or_else(unreadable)?;
        let values =
            view_bytes(root, buffers, sparse.values.buffer_view.value()).ok_or_else(unreadable)?;
        let start = usize::try_from(sparse.values.byte_offset.0).map_err(|_| unreadable())?;
        for (k, index) in indices.into_iter().enumerate() {
            let at = k
                .checked_mul(12)
                .and_then(|x| x.checked_add(start))
                .ok_or_else(unreadable)?;
            overrides.push((index, read_vec3(values, at).ok_or_else(unreadable)?));
        }
    }

    let mut min = [f32::INFINITY; 3];
    let mut max = [f32::NEG_INFINITY; 3];
    let mut next_override = overrides.iter().peekable();
    for i in 0..count {
        let value = match next_override.peek() {
            Some((at, value)) if *at == i as u64 => {
                next_override.next();
                *value
            }
            _ => match dense {
                Some((bytes, stride, offset)) => {
                    let at = i
                        .checked_mul(stride)
                        .and_then(|x| x.checked_add(offset))
                        .ok_or_else(unreadable)?;
                    read_vec3(bytes, at).ok_or_else(unreadable)?
                }
                None => [0.0; 3],
            },
        };
        if !value.iter().all(|v| v.is_finite()) {
            return Err(corrupted(format!(
                "Accessor {index} holds a position that is not a finite number"
            )));
        }
        for k in 0..3 {
            min[k] = min[k].min(value[k]);
            max[k] = max[k].max(value[k]);
        }
    }
    Ok(Some((min, max)))
}
