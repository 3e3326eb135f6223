//! The web client, served by the binary itself: plain ES modules and CSS from
//! `web/`, compiled in with `include_bytes!` (no build step, no node).
//!
//! It is the app's default service, so every route of the route table keeps
//! its meaning; this module answers only what nothing else matched:
//!
//! - `GET`/`HEAD /static/<path>.<hash>.<ext>`: a file of `web/` under a name
//!   carrying the first 12 hex digits of its SHA-256, with
//!   `Cache-Control: public, max-age=31536000, immutable`. The plain name
//!   (`/static/<path>`) answers too, with `no-cache`.
//! - Any other `GET`/`HEAD` outside `/v1/`, `/assets/` and the operations
//!   routes, whose last segment has no dot (`/`, `/chat/…`, `/login`, the
//!   mail links `/verify-email`, `/reset-password`, `/accept-invitation`):
//!   `index.html`, `no-cache`, so a new release is seen at once.
//! - Everything else: the API's problem+json `404` (an unknown `/v1/…`
//!   stays an API answer).
//!
//! Modules import each other by relative URL (`./api.js`); `index.html`
//! carries an import map from every plain URL to its hashed one (and
//! `three` to the vendored three.js), so a module's URL changes exactly when
//! its bytes do. The import map is the only inline script: the
//! `Content-Security-Policy` allows it by its `sha256-` hash and nothing
//! else inline. Files are compressed once, with brotli and with gzip, when
//! the server starts, and sent compressed as `Accept-Encoding` allows
//! (`br` preferred; `Vary: Accept-Encoding`). Browsers offer `br` only over
//! HTTPS, so behind a TLS-terminating proxy.
//!
//! `WEB_CLIENT_DIR`, when set, reads the files from that directory instead
//! of the compiled-in copies (for working on the client without rebuilding).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::ApiResult;

macro_rules! web_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)) as &[u8])),*]
    };
}

/// Every file served under `/static/`, by its path under `web/`. A test
/// checks that this list and the directory agree.
pub const FILES: &[(&str, &[u8])] = web_files![
    "app.css",
    "app.js",
    "api.js",
    "chat.js",
    "dom.js",
    "i18n.js",
    "avatar.js",
    "i18n/en.js",
    "i18n/fr.js",
    "i18n/rw.js",
    "i18n/sw.js",
    "pages/auth.js",
    "pages/chat.js",
    "pages/history.js",
    "pages/material.js",
    "pages/personas.js",
    "pages/members.js",
    "pages/analytics.js",
    "pages/classroom.js",
    "pages/billing.js",
    "charts.js",
    "format.js",
    "vendor/README.md",
    "vendor/three/LICENSE",
    "vendor/three/build/three.module.min.js",
    "vendor/three/build/three.core.min.js",
    "vendor/three/examples/jsm/loaders/GLTFLoader.js",
    "vendor/three/examples/jsm/utils/BufferGeometryUtils.js",
    "vendor/three/examples/jsm/utils/SkeletonUtils.js",
];

/// `web/` files deliberately not served: the page template (served as
/// `index.html` after rendering) and axe-core, which only the browser tests
/// inject.
pub const NOT_SERVED: &[&str] = &[
    "index.html",
    "vendor/axe-core/axe.min.js",
    "vendor/axe-core/LICENSE",
];

const INDEX_TEMPLATE: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/index.html"));

/// The module three.js's bare specifier resolves to.
const THREE: &str = "vendor/three/build/three.module.min.js";

/// Modules every page needs, announced with `modulepreload` so that a slow
/// link fetches them in parallel instead of one import level at a time.
const PRELOAD: &[&str] = &[
    "app.js",
    "api.js",
    "chat.js",
    "dom.js",
    "i18n.js",
    "i18n/en.js",
    "pages/auth.js",
    "pages/chat.js",
    "pages/history.js",
    "pages/material.js",
    "pages/personas.js",
    "pages/members.js",
    "pages/analytics.js",
    "pages/classroom.js",
    "pages/billing.js",
    "charts.js",
    "format.js",
];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Asset {
    body: Vec<u8>,
    gzip: Option<Vec<u8>>,
    br: Option<Vec<u8>>,
    content_type: &'static str,
    cache_control: &'static str,
    etag: String,
}

struct Site {
    /// By URL path: hashed and plain names.
    assets: HashMap<String, std::sync::Arc<Asset>>,
    index: Asset,
    /// `sha256-…` of the inline import map.
    import_map_hash: String,
}

static SITE: OnceLock<Site> = OnceLock::new();

fn site() -> &'static Site {
    SITE.get_or_init(|| {
        let files: Vec<(String, Vec<u8>)> = match std::env::var("WEB_CLIENT_DIR") {
            Ok(dir) if !dir.trim().is_empty() => FILES
                .iter()
                .map(|(p, embedded)| {
                    let bytes = std::fs::read(std::path::Path::new(&dir).join(p))
                        .unwrap_or_else(|_| embedded.to_vec());
                    ((*p).to_owned(), bytes)
                })
                .chain(std::iter::once((
                    "index.html".to_owned(),
                    std::fs::read(std::path::Path::new(&dir).join("index.html"))
                        .unwrap_or_else(|_| INDEX_TEMPLATE.to_vec()),
                )))
                .collect(),
            _ => FILES
                .iter()
                .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
                .chain(std::iter::once((
                    "index.html".to_owned(),
                    INDEX_TEMPLATE.to_vec(),
                )))
                .collect(),
        };
        build_site(files)
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `dir/name.ext` → `dir/name.<hash>.ext`.
fn hashed_name(path: &str, hash: &str) -> String {
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let named = match file.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{file}.{hash}"),
    };
    if dir.is_empty() {
        named
    } else {
        format!("{dir}/{named}")
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    }
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).ok()?;
    let out = enc.finish().ok()?;
    // Not worth a header when it does not shrink.
    (out.len() < bytes.len()).then_some(out)
}

/// Files above this size are compressed at a lower brotli quality: the
/// highest takes about a second per megabyte, and still beats gzip below it.
const BROTLI_BEST_UP_TO: usize = 64 * 1024;

fn brotli_compress(bytes: &[u8]) -> Option<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: if bytes.len() <= BROTLI_BEST_UP_TO {
            11
        } else {
            7
        },
        lgwin: 22,
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).ok()?;
    (out.len() < bytes.len()).then_some(out)
}

fn asset(body: Vec<u8>, content_type: &'static str, cache_control: &'static str) -> Asset {
    let etag = format!("\"{}\"", &sha256_hex(&body)[..32]);
    Asset {
        gzip: gzip(&body),
        br: brotli_compress(&body),
        body,
        content_type,
        cache_control,
        etag,
    }
}

fn build_site(files: Vec<(String, Vec<u8>)>) -> Site {
    let mut assets = HashMap::new();
    let mut urls: BTreeMap<String, String> = BTreeMap::new();
    let mut template = Vec::new();
    for (path, bytes) in files {
        if path == "index.html" {
            template = bytes;
            continue;
        }
        let hash = &sha256_hex(&bytes)[..12];
        let plain = format!("/static/{path}");
        let hashed = format!("/static/{}", hashed_name(&path, hash));
        let ct = content_type(&path);
        let immutable = std::sync::Arc::new(asset(bytes.clone(), ct, IMMUTABLE));
        let fresh = std::sync::Arc::new(Asset {
            cache_control: "no-cache",
            body: immutable.body.clone(),
            gzip: immutable.gzip.clone(),
            br: immutable.br.clone(),
            content_type: ct,
            etag: immutable.etag.clone(),
        });
        assets.insert(hashed.clone(), immutable);
        assets.insert(plain.clone(), fresh);
        urls.insert(path, hashed);
    }
    let url = |p: &str| {
        urls.get(p)
            .cloned()
            .unwrap_or_else(|| format!("/static/{p}"))
    };
    let mut imports = serde_json::Map::new();
    for (path, hashed) in &urls {
        if path.ends_with(".js") {
            imports.insert(
                format!("/static/{path}"),
                serde_json::Value::String(hashed.clone()),
            );
        }
    }
    imports.insert("three".into(), serde_json::Value::String(url(THREE)));
    let import_map = serde_json::json!({ "imports": imports }).to_string();
    let import_map_hash = format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(import_map.as_bytes()))
    );
    let preload: String = PRELOAD
        .iter()
        .map(|p| format!("<link rel=\"modulepreload\" href=\"{}\">\n", url(p)))
        .collect();
    let html = String::from_utf8_lossy(&template)
        .replace("{{importmap}}", &import_map)
        .replace("{{preload}}", &preload)
        .replace("{{css}}", &url("app.css"))
        .replace("{{app}}", &url("app.js"));
    Site {
        assets,
        index: asset(html.into_bytes(), "text/html; charset=utf-8", "no-cache"),
        import_map_hash,
    }
}

/// Paths that belong to the server, never to the client's router.
fn is_server_path(path: &str) -> bool {
    path == "/v1"
        || path.starts_with("/v1/")
        || path == "/assets"
        || path.starts_with("/assets/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
        // Reserved for the server's own (test builds' routes among them).
        || path.starts_with("/__")
}

/// A host safe to put in a header (the CSP's WebSocket origins).
fn safe_host(req: &HttpRequest) -> Option<String> {
    let host = req.connection_info().host().to_owned();
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then_some(host)
}

fn csp(req: &HttpRequest, import_map_hash: &str) -> String {
    let ws = safe_host(req)
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' '{import_map_hash}'; style-src 'self'; \
         img-src 'self' blob: data:; connect-src 'self'{ws}; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
         worker-src 'self' blob:"
    )
}

/// Whether `Accept-Encoding` allows `coding` (by name or `*`, not `q=0`).
fn accepts(req: &HttpRequest, coding: &str) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or_default().trim();
            let refused = it.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            (name.eq_ignore_ascii_case(coding) || name == "*") && !refused
        })
}

fn respond(
    req: &HttpRequest,
    asset: &Asset,
    extra: &[(header::HeaderName, String)],
) -> HttpResponse {
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == asset.etag)
        });
    let mut res = if not_modified {
        HttpResponse::build(StatusCode::NOT_MODIFIED).finish()
    } else {
        let mut b = HttpResponse::Ok();
        b.content_type(asset.content_type);
        match (&asset.br, &asset.gzip) {
            (Some(br), _) if accepts(req, "br") => {
                b.insert_header((header::CONTENT_ENCODING, "br"));
                b.body(br.clone())
            }
            (_, Some(gz)) if accepts(req, "gzip") => {
                b.insert_header((header::CONTENT_ENCODING, "gzip"));
                b.body(gz.clone())
            }
            _ => b.body(asset.body.clone()),
        }
    };
    let headers = res.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(header::CACHE_CONTROL, asset.cache_control);
    set(header::ETAG, &asset.etag);
    set(header::VARY, "Accept-Encoding");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    for (name, value) in extra {
        set(name.clone(), value);
    }
    res
}

/// Builds (hashes, compresses) the client's files ahead of the first
/// request, which would otherwise wait for it.
pub fn warm() {
    site();
}

/// The default service: the client's files and pages, or the API's `404`.
pub async fn serve(req: HttpRequest) -> ApiResult<HttpResponse> {
    let path = req.path();
    if !(req.method() == Method::GET || req.method() == Method::HEAD) || is_server_path(path) {
        return crate::http::not_found().await;
    }
    let site = site();
    if path.starts_with("/static/") {
        return match site.assets.get(path) {
            Some(asset) => Ok(respond(&req, asset, &[])),
            None => crate::http::not_found().await,
        };
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return crate::http::not_found().await;
    }
    let extra = [
        (
            header::CONTENT_SECURITY_POLICY,
            csp(&req, &site.import_map_hash),
        ),
        (header::REFERRER_POLICY, "same-origin".to_owned()),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
    ];
    Ok(respond(&req, &site.index, &extra))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(rel);
            }
        }
    }

    #[test]
    fn every_file_of_web_is_served_or_deliberately_not() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut found = Vec::new();
        walk(&base, &base, &mut found);
        let listed: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
        let missing: Vec<_> = found
            .iter()
            .filter(|f| !listed.contains(&f.as_str()) && !NOT_SERVED.contains(&f.as_str()))
            .collect();
        assert!(missing.is_empty(), "add to webapp::FILES: {missing:?}");
    }

    #[test]
    fn hashed_names_keep_the_extension() {
        assert_eq!(hashed_name("app.js", "abc"), "app.abc.js");
        assert_eq!(
            hashed_name("vendor/three/build/three.module.min.js", "abc"),
            "vendor/three/build/three.module.min.abc.js"
        );
        assert_eq!(
            hashed_name("vendor/three/LICENSE", "abc"),
            "vendor/three/LICENSE.abc"
        );
    }

    #[test]
    fn the_page_maps_every_module_to_its_hashed_url() {
        let site = build_site(vec![
            (
                "index.html".into(),
                b"<script type=\"importmap\">{{importmap}}</script>{{app}}".to_vec(),
            ),
            ("app.js".into(), b"import './api.js'".to_vec()),
            ("api.js".into(), b"export {}".to_vec()),
        ]);
        let html = String::from_utf8(site.index.body.clone()).unwrap();
        let hash = &sha256_hex(b"export {}")[..12];
        assert!(
            html.contains(&format!("\"/static/api.js\":\"/static/api.{hash}.js\"")),
            "{html}"
        );
        assert!(site.assets.contains_key(&format!("/static/api.{hash}.js")));
        let start = html.find('>').unwrap() + 1;
        let end = html.find("</script>").unwrap();
        let expected = format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(&html.as_bytes()[start..end]))
        );
        assert_eq!(site.import_map_hash, expected);
    }

    #[test]
    fn server_paths_are_not_the_clients() {
        for p in [
            "/v1",
            "/v1/nope",
            "/assets/x",
            "/healthz",
            "/readyz",
            "/metrics",
            "/__test/panic",
        ] {
            assert!(is_server_path(p), "{p}");
        }
        for p in ["/", "/chat/abc", "/login", "/verify-email", "/v1x"] {
            assert!(!is_server_path(p), "{p}");
        }
    }
}
