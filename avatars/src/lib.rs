//! 3D avatar models for Bwenge's tutors.
//!
//! This crate owns everything the server needs to accept, describe and
//! serve a teacher's avatar model, with no I/O of its own:
//!
//! - [`inspect`](mod@inspect): decides whether uploaded bytes are a glTF 2.0
//!   model the browser can load as one file (`.glb`, or `.gltf` with embedded
//!   buffers), validates it against hostile input, and reports its bounding
//!   box, animation clips and size counts.
//! - [`gestures`]: the fixed gesture vocabulary the tutor uses and the
//!   matching of a model's animation clips to it, with teacher overrides.
//! - [`signing`]: HMAC-signed, expiring asset URLs.
//! - [`http_range`]: `Range` and `If-None-Match` handling for serving the
//!   model bytes.

pub mod gestures;
pub mod http_range;
pub mod inspect;
pub mod signing;

pub use gestures::{GESTURES, GestureError, match_clips, merge, validate_overrides};
pub use http_range::{RangeOutcome, etag_matches, parse_range, strong_etag};
pub use inspect::{BoundingBox, ModelError, ModelFormat, ModelInfo, inspect};
pub use signing::{SignatureError, UrlSigner, WeakSecretError};
