//! 3D avatar models (work in progress: storage first).

pub mod store;

use crate::http::RouteDef;

pub fn routes() -> Vec<RouteDef> {
    Vec::new()
}
