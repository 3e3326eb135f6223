//! Cursor pagination as API.md says: `?limit=` (default 50, max 200) and
//! `?cursor=`; answers `{items, next_cursor}`. Cursors are opaque to clients:
//! base64url JSON of the last row's sort key.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validation::Invalid;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Items per page (default 50); more than 200 is taken as 200.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The sort key of a row: time, then id to break ties.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    pub t: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl PageQuery {
    pub fn parse(&self) -> Result<Page, Invalid> {
        // Above the maximum is clamped (a client asking for "everything"
        // gets the largest page and a cursor); zero asks for nothing.
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        if limit == 0 {
            return Err(Invalid::new(
                "limit",
                format!("limit must be at least 1 (at most {MAX_LIMIT} are returned)."),
            ));
        }
        let after = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(decode(c).ok_or_else(|| {
                Invalid::new("cursor", "The cursor is not one this server gave out.")
            })?),
        };
        Ok(Page { limit, after })
    }
}

fn decode(cursor: &str) -> Option<Cursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn encode(cursor: Cursor) -> String {
    let json = serde_json::to_vec(&cursor).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// A page of items.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Builds a page from `limit + 1` fetched rows: the extra row only says
/// whether there is more.
pub fn page_of<R, T>(
    mut rows: Vec<R>,
    limit: u32,
    key: impl Fn(&R) -> Cursor,
    view: impl Fn(R) -> T,
) -> List<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode(key(r)))
    } else {
        None
    };
    List {
        items: rows.into_iter().map(view).collect(),
        next_cursor,
    }
}
