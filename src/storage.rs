//! Where uploaded files are kept on disk: under `<data-dir>/files`, by a key
//! the server chose (organisation and id), never by the client's name.

use std::path::{Path, PathBuf};

/// The path of the file stored under `key`.
pub fn storage_path(data_dir: &Path, key: &str) -> PathBuf {
    data_dir.join("files").join(key)
}
