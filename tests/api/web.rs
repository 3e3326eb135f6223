//! The web client through the real server: its files (hashed, cached,
//! compressed, fenced by a strict CSP), the message catalogues, and, in a
//! real headless Chromium (see `browser.rs`), a school's whole day: a
//! teacher registers, uploads material and watches it become ready,
//! invites a student and creates a tutor; the student accepts the
//! invitation from the mail file, asks, sees the streamed cited answer and
//! the avatar's clip; the network is cut mid-answer and restored (nothing
//! lost, nothing doubled); a reload keeps the conversation; keyboard only;
//! axe-core finds no serious violation. Screenshots of the main pages, on a
//! phone and a laptop, land in `target/web-screenshots/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::helpers::{Backend, Member, PASSWORD, TestApp, email, spawn_app};

/// First load budget (gzip, before the 3D library), from the issue.
const FIRST_LOAD_BUDGET: usize = 150 * 1024;

const MATERIAL: &str = "Photosynthesis\n\n\
Plants make their food by photosynthesis. The green pigment chlorophyll absorbs red and blue \
light and reflects green light, which is why leaves look green. Chlorophyll sits in the \
chloroplasts of leaf cells.\n\n\
Stomata are small openings on the underside of leaves. Stomata let carbon dioxide in and \
oxygen and water vapour out.\n";

async fn gz_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The import map's URLs, read from the page.
fn import_map(html: &str) -> BTreeMap<String, String> {
    let start =
        html.find("<script type=\"importmap\">").unwrap() + "<script type=\"importmap\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    let v: Value = serde_json::from_str(&html[start..end]).unwrap();
    v["imports"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn attr_values(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &html[i + prefix.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

#[actix_web::test]
async fn static_files_are_hashed_cached_compressed_and_fenced() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();

    let res = gz_get(&app, "/").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert_eq!(header(&res, "cache-control"), "no-cache");
    assert_eq!(header(&res, "content-encoding"), "gzip");
    assert!(header(&res, "vary").contains("Accept-Encoding"));
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    let csp = header(&res, "content-security-policy").to_owned();
    for part in [
        "default-src 'self'",
        "script-src 'self' 'sha256-",
        "style-src 'self';",
        "img-src 'self' blob: data:",
        "connect-src 'self' ws://127.0.0.1:",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "CSP lacks {part}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("http"),
        "{csp}"
    );
    let index_gzip = res.bytes().await.unwrap().len();

    // Uncompressed for a client that does not take gzip.
    let plain = app
        .client
        .get(app.url("/"))
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&plain, "content-encoding"), "");
    let html = plain.text().await.unwrap();
    assert!(html.contains("<main id=\"main\""));

    // The inline import map is exactly what the CSP hash allows.
    let map = import_map(&html);
    {
        use base64::Engine;
        use sha2::Digest;
        let start = html.find("<script type=\"importmap\">").unwrap() + 25;
        let end = start + html[start..].find("</script>").unwrap();
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(&html.as_bytes()[start..end]));
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
        // No other inline script.
        assert_eq!(html.matches("<script").count(), 2, "{html}");
    }
    assert!(map.contains_key("three"));
    assert!(map.contains_key("/static/app.js"));

    // Every hashed file: immutable, compressed, the right type; its plain
    // name answers too, but is revalidated.
    for (plain_url, hashed) in &map {
        let res = gz_get(&app, hashed).await;
        assert_eq!(res.status(), 200, "{hashed}");
        assert_eq!(
            header(&res, "cache-control"),
            "public, max-age=31536000, immutable",
            "{hashed}"
        );
        assert!(
            header(&res, "content-type").starts_with("text/javascript"),
            "{hashed}"
        );
        assert_eq!(header(&res, "content-encoding"), "gzip", "{hashed}");
        assert!(header(&res, "vary").contains("Accept-Encoding"));
        assert!(!header(&res, "etag").is_empty());
        let file = hashed.rsplit('/').next().unwrap();
        let parts: Vec<&str> = file.split('.').collect();
        assert!(
            parts.len() >= 3 && parts[parts.len() - 2].len() == 12,
            "{hashed}"
        );
        if plain_url.starts_with('/') {
            let res = gz_get(&app, plain_url).await;
            assert_eq!(res.status(), 200, "{plain_url}");
            assert_eq!(header(&res, "cache-control"), "no-cache");
        }
    }
    // Brotli where the client takes it (browsers over HTTPS): the same bytes,
    // fewer of them than gzip.
    for url in ["/", map["/static/app.js"].as_str(), map["three"].as_str()] {
        let identity = app
            .client
            .get(app.url(url))
            .header("accept-encoding", "identity")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let gz = gz_get(&app, url).await.bytes().await.unwrap().len();
        let res = app
            .client
            .get(app.url(url))
            .header("accept-encoding", "gzip, deflate, br")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&res, "content-encoding"), "br", "{url}");
        let br = res.bytes().await.unwrap();
        let mut unpacked = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut unpacked).unwrap();
        assert_eq!(unpacked, identity, "{url}");
        assert!(br.len() < gz, "{url}: br {} vs gzip {gz}", br.len());
    }
    // Revalidation of the page is a 304.
    let etag = header(&gz_get(&app, "/").await, "etag").to_owned();
    let res = app
        .client
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);

    // The client's routes all get the page; the server's keep their meaning.
    for path in [
        "/login",
        "/register",
        "/chat/6f1c1a52-7e55-4a53-9c1b-1b6f0e1f0f00",
        "/accept-invitation?token=abc",
        "/verify-email?token=abc",
        "/reset-password?token=abc",
        "/material",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            header(&res, "content-type").starts_with("text/html"),
            "{path}"
        );
    }
    for path in [
        "/v1/nope",
        "/v1",
        "/static/nope.js",
        "/static/app.000000000000.js",
        "/favicon.ico",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 404, "{path}");
        assert!(
            header(&res, "content-type").starts_with("application/problem+json"),
            "{path}"
        );
    }
    let res = app.client.post(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
    let res = app.get("/v1/openapi.json").await;
    assert_eq!(res.status(), 200);

    // The first load: the page, its stylesheet and its preloaded modules,
    // compressed. The 3D library is not among them.
    let css = attr_values(&html, "rel=\"stylesheet\" href=\"");
    let preload = attr_values(&html, "rel=\"modulepreload\" href=\"");
    assert!(
        !preload
            .iter()
            .any(|p| p.contains("three") || p.contains("avatar")),
        "{preload:?}"
    );
    let mut total = index_gzip;
    for url in css.iter().chain(preload.iter()) {
        total += gz_get(&app, url).await.bytes().await.unwrap().len();
    }
    eprintln!(
        "first load over HTTP: {total} bytes gzip ({} files)",
        1 + css.len() + preload.len()
    );
    assert!(total <= FIRST_LOAD_BUDGET, "first load is {total} bytes");
}

/// Parses a catalogue file (`"key": "text",` lines) into its keys.
fn catalogue_keys(code: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("web/i18n/{code}.js"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

fn js_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            if !p.ends_with("vendor") && !p.ends_with("i18n") {
                js_files(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "js") {
            out.push(p);
        }
    }
}

/// Every key the code uses is in the English catalogue; the other
/// catalogues hold no unknown key; the translations still missing are
/// listed (they fall back to English).
#[test]
fn translations_fall_back_to_english_and_missing_ones_are_listed() {
    let en = catalogue_keys("en");
    assert!(en.len() > 100);
    let mut files = Vec::new();
    js_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("web"),
        &mut files,
    );
    let mut used = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices("t('") {
            let rest = &text[i + 3..];
            let key = &rest[..rest.find('\'').unwrap()];
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            used.insert(key.to_owned());
        }
    }
    let unknown: Vec<_> = used.iter().filter(|k| !en.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "keys used but not in en.js: {unknown:?}"
    );
    for code in ["fr", "rw", "sw"] {
        let keys = catalogue_keys(code);
        let extra: Vec<_> = keys.difference(&en).collect();
        assert!(
            extra.is_empty(),
            "{code}.js has keys en.js lacks: {extra:?}"
        );
        let missing: Vec<_> = en.difference(&keys).collect();
        eprintln!(
            "{code}: {} of {} strings translated; missing (English shown): {missing:?}",
            keys.len(),
            en.len()
        );
    }
}

// ---------------------------------------------------------------------------
// In the browser.

async fn axe(page: &mut Page, what: &str) {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("web/vendor/axe-core/axe.min.js"),
    )
    .unwrap();
    if page.eval("typeof window.axe").await != "object" {
        page.eval(&format!("{source};\n'loaded'")).await;
    }
    let result = page
        .eval(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
               .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))",
        )
        .await;
    let serious: Vec<&Value> = result
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
        .collect();
    if !result.as_array().unwrap().is_empty() {
        eprintln!("axe on {what}: {result}");
    }
    assert!(serious.is_empty(), "axe on {what}: {serious:?}");
}

async fn shots(page: &mut Page, name: &str) {
    page.viewport(390, 844, true).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    page.screenshot(&format!("{name}-phone")).await;
    page.viewport(1366, 768, false).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    page.screenshot(&format!("{name}-laptop")).await;
}

/// Fills a form control by selector.
async fn fill(page: &mut Page, selector: &str, value: &str) {
    page.eval(&format!(
        "(() => {{ const el = document.querySelector({selector:?}); el.focus(); el.value = {value:?};
            el.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()"
    ))
    .await;
}

async fn click(page: &mut Page, selector: &str) {
    page.wait_for(
        &format!("document.querySelector({selector:?})"),
        20,
        selector,
    )
    .await;
    page.eval(&format!(
        "document.querySelector({selector:?}).click(), true"
    ))
    .await;
}

fn no_csp_problems(page: &Page) {
    let problems: Vec<String> = page
        .problems()
        .into_iter()
        .filter(|p| p.contains("Content Security Policy") || p.contains("Refused to"))
        .collect();
    assert!(problems.is_empty(), "CSP violations: {problems:?}");
}

/// The robot of the repository's test fixtures.
fn robot_model() -> Vec<u8> {
    crate::avatars::robot()
}

/// Counts of the conversation's shown items, and whether any seq repeats.
async fn conversation(page: &mut Page) -> Value {
    page.eval(
        "(() => { const seqs = [...document.querySelectorAll('#log li[data-seq]')].map(li => li.dataset.seq);
            return {shown: seqs.length, unique: new Set(seqs).size,
              user: document.querySelectorAll('#log li.mine[data-seq]').length,
              answers: document.querySelectorAll('#log li.theirs[data-seq]').length,
              pending: document.querySelectorAll('#log li.pending').length,
              streaming: document.querySelectorAll('#log li.streaming').length}; })()",
    )
    .await
}

/// Clicks a citation chip and returns the tab it opened, loaded: the chip's
/// signed link, with no token of its own.
async fn open_citation(browser: &Browser, page: &mut Page, chip: &str) -> Page {
    click(page, chip).await;
    let href = page
        .wait_for(
            &format!("document.querySelector(\"{chip}\").dataset.href"),
            20,
            "the citation's link",
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        href.starts_with("/v1/knowledge/") && href.contains("&sig="),
        "{href}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let tabs = browser.tabs().await;
        if let Some(tab) = tabs
            .iter()
            .find(|t| t["url"].as_str().is_some_and(|u| u.ends_with(&href)))
        {
            let mut opened = Browser::attach(tab).await;
            opened
                .wait_for("document.readyState === 'complete'", 20, "the cited file")
                .await;
            return opened;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tab opened {href}: {tabs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn ask_in_page(page: &mut Page, text: &str) {
    fill(page, "#question", text).await;
    page.press("Enter", 0).await;
}

#[actix_web::test]
async fn a_school_day_in_the_browser() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let base = app.url("");
    let mut page = browser.new_page().await;
    page.viewport(1366, 768, false).await;

    // First visit, from an empty cache: everything it takes to sign in.
    let started = Instant::now();
    page.goto(&format!("{base}/")).await;
    page.wait_for(
        "location.pathname === '/login' && document.querySelector('#login-email')",
        20,
        "the sign-in page",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let first_load = page.bytes_received();
    eprintln!(
        "first load in the browser: {first_load} bytes on the wire, {:?} to the sign-in form",
        started.elapsed()
    );
    assert!(
        first_load as usize <= FIRST_LOAD_BUDGET,
        "first load {first_load}"
    );
    let three_loaded = page
        .eval("performance.getEntriesByType('resource').some(e => e.name.includes('three'))")
        .await;
    assert_eq!(three_loaded, false, "three.js loaded on the sign-in page");
    axe(&mut page, "sign-in").await;
    shots(&mut page, "login").await;

    // A teacher registers the school in the page.
    click(&mut page, "a[href='/register']").await;
    page.wait_for(
        "document.querySelector('input[name=organization_name]')",
        10,
        "the registration form",
    )
    .await;
    axe(&mut page, "registration").await;
    shots(&mut page, "register").await;
    let teacher_email = email("web-teacher");
    fill(
        &mut page,
        "input[name=organization_name]",
        "Lycée de Kigali",
    )
    .await;
    fill(&mut page, "input[name=full_name]", "Tina Teacher").await;
    fill(&mut page, "input[name=email]", &teacher_email).await;
    fill(&mut page, "input[name=password]", PASSWORD).await;
    click(&mut page, "form button[type=submit]").await;
    page.wait_for(
        "location.pathname === '/material' && document.querySelector('#drop')",
        20,
        "the material page",
    )
    .await;

    // Uploads material (a text file and a PDF when the system has one) and
    // watches it reach ready; an unsupported file is refused clearly.
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("photosynthesis.txt");
    std::fs::write(&txt, MATERIAL).unwrap();
    let bad = dir.path().join("noise.bin");
    std::fs::write(&bad, [0u8, 159, 146, 150, 0, 1, 2, 3, 255, 254, 0, 0, 7, 7]).unwrap();
    let mut files: Vec<&Path> = vec![&bad];
    let pdf = Path::new("/usr/share/doc/expeyes-doc-en/expeyes-17-manual.pdf");
    let pdf_ok = pdf.is_file();
    if pdf_ok {
        files.push(pdf);
    }
    // The text is dragged onto the page; the rest picked with the input.
    page.drop_files("#drop", &[&txt]).await;
    page.set_files("#files", &files).await;
    page.wait_for(
        "[...document.querySelectorAll('#sources tr[data-status=ready]')].some(tr => tr.textContent.includes('photosynthesis'))",
        120,
        "the text material to be ready",
    )
    .await;
    let refused = page
        .wait_for(
            "document.querySelector('#uploads li.failed')?.dataset.error",
            30,
            "the refusal",
        )
        .await;
    assert_eq!(refused, "415");
    let pdf_id = if pdf_ok {
        page.wait_for(
            "document.querySelectorAll('#sources tr[data-status=ready]').length >= 2",
            300,
            "the PDF to be ready",
        )
        .await;
        let id = page
            .eval("[...document.querySelectorAll('#sources tr')].find(tr => !tr.textContent.includes('photosynthesis') && tr.dataset.status === 'ready')?.dataset.id")
            .await;
        Some(id.as_str().expect("the PDF's row").to_owned())
    } else {
        None
    };
    axe(&mut page, "material").await;
    shots(&mut page, "material").await;

    // A tutor, created in the page.
    click(&mut page, "a[href='/personas']").await;
    page.wait_for(
        "document.querySelector('a[href=\"/personas/new\"]')",
        10,
        "the personas page",
    )
    .await;
    click(&mut page, "a[href='/personas/new']").await;
    page.wait_for(
        "document.querySelector('.persona-form input[name=name]')",
        10,
        "the persona form",
    )
    .await;
    fill(&mut page, ".persona-form input[name=name]", "Biology tutor").await;
    fill(&mut page, ".persona-form input[name=subject]", "Biology").await;
    click(&mut page, ".persona-form button[type=submit]").await;
    let persona_id = page
        .wait_for(
            "location.pathname.match(/^\\/personas\\/([0-9a-f-]{36})$/)?.[1]",
            20,
            "the saved persona",
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    // Its avatar: the robot, uploaded through the API.
    let teacher_token = page
        .eval("JSON.parse(localStorage.getItem('bwenge.auth')).access_token")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let teacher = Member {
        id: String::new(),
        org_id: String::new(),
        email: teacher_email.clone(),
        password: PASSWORD.into(),
        access: teacher_token.clone(),
        refresh: String::new(),
    };
    let robot = robot_model();
    let res = crate::avatars::post_model(
        &app,
        &teacher,
        "/v1/models",
        Some(("RobotExpressive.glb", robot)),
        &[("persona_id", &persona_id)],
    )
    .await;
    assert_eq!(res.status(), 201);
    let model: Value = res.json().await.unwrap();
    assert_eq!(model["persona_id"], persona_id.as_str());
    // Every gesture but idle waves, so the answer's gesture shows for sure.
    let gestures: serde_json::Map<String, Value> = [
        "talking",
        "thinking",
        "happy",
        "sad",
        "excited",
        "greeting",
        "explaining",
        "pointing",
        "nodding",
        "shaking_head",
        "waving",
    ]
    .iter()
    .map(|g| ((*g).to_owned(), json!("Wave")))
    .collect();
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{persona_id}"),
            &teacher_token,
        )
        .json(&json!({ "gestures": gestures }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    page.reload().await;
    page.wait_for(
        "document.querySelector('select[name=\"gesture-waving\"]')",
        20,
        "the gesture table",
    )
    .await;
    // The 3D preview plays the clip chosen for a gesture.
    if page
        .eval("(() => { const c = document.createElement('canvas'); return !!(c.getContext('webgl2') || c.getContext('webgl')); })()")
        .await
        == Value::Bool(true)
    {
        page.wait_for("document.querySelector('#preview canvas')", 60, "the 3D preview")
            .await;
        assert_eq!(
            page.eval("document.querySelector('select[name=\"gesture-waving\"]').value").await,
            "Wave"
        );
        click(&mut page, "select[name='gesture-waving'] ~ button, tr:has(select[name='gesture-waving']) button").await;
        page.wait_for("(document.body.dataset.avatarPlayed || '').split(' ').includes('Wave')", 20, "the previewed clip")
            .await;
    }
    axe(&mut page, "persona").await;
    shots(&mut page, "persona").await;

    // The teacher invites a student from the members page.
    let student_email = email("web-student");
    click(&mut page, "a[href='/members']").await;
    page.wait_for(
        "document.querySelector('#members tbody tr')",
        10,
        "the members list",
    )
    .await;
    let before = app.mails_to(&student_email).len();
    fill(&mut page, "form.inline input[name=email]", &student_email).await;
    click(&mut page, "form.inline button[type=submit]").await;
    let token = app.mail_token(&student_email, before).await;
    axe(&mut page, "members").await;
    shots(&mut page, "members").await;
    click(&mut page, "#signout").await;
    page.wait_for("location.pathname === '/login'", 10, "signed out")
        .await;

    // The student opens the link from the mail and joins.
    let mail = app.mails_to(&student_email).pop().unwrap();
    let link_start = mail
        .find("/accept-invitation?token=")
        .expect("the invitation link");
    assert!(mail[link_start..].contains(&token));
    page.goto(&format!("{base}/accept-invitation?token={token}"))
        .await;
    page.wait_for(
        "document.querySelector('input[name=full_name]')",
        10,
        "the invitation form",
    )
    .await;
    axe(&mut page, "invitation").await;
    fill(&mut page, "input[name=full_name]", "Sam Student").await;
    fill(&mut page, "input[name=password]", PASSWORD).await;
    click(&mut page, "form button[type=submit]").await;
    page.wait_for(
        "location.pathname === '/chat' && document.querySelector('a[href^=\"/chat/\"]')",
        20,
        "the tutors",
    )
    .await;
    shots(&mut page, "pick").await;
    click(&mut page, &format!("a[href='/chat/{persona_id}']")).await;
    page.wait_for(
        "document.body.dataset.chat === 'online'",
        20,
        "the chat socket",
    )
    .await;

    // Asks; the answer streams in, cited, and the avatar gestures.
    let webgl = page
        .eval("(() => { const c = document.createElement('canvas'); return !!(c.getContext('webgl2') || c.getContext('webgl')); })()")
        .await
        == Value::Bool(true);
    ask_in_page(&mut page, "What does chlorophyll absorb?").await;
    page.wait_for(
        "document.querySelector('#log li.theirs[data-seq] .chip')",
        60,
        "a cited answer",
    )
    .await;
    let answer = page
        .eval("document.querySelector('#log li.theirs[data-seq] .text').textContent")
        .await;
    assert!(
        answer
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("chlorophyll"),
        "{answer}"
    );
    let chip = page
        .eval("document.querySelector('#log li.theirs .chip').textContent")
        .await;
    assert!(chip.as_str().unwrap().contains("photosynthesis"), "{chip}");
    let live = page
        .eval("document.querySelector('#log-region').getAttribute('aria-live')")
        .await;
    assert_eq!(live, "polite");
    if webgl {
        page.wait_for("document.body.dataset.avatar === 'ready'", 60, "the avatar")
            .await;
        let canvas = page
            .eval("(() => { const c = document.querySelector('#avatar canvas'); return c && {w: c.width, h: c.height, cw: c.clientWidth, ch: c.clientHeight, hidden: document.hidden}; })()")
            .await;
        eprintln!("avatar canvas: {canvas}");
        let gesture = page
            .eval("JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.startsWith('bwenge.chat.')))).events.filter(e => e.role !== 'user').pop().animation.gesture")
            .await;
        let token = page
            .eval("JSON.parse(localStorage.getItem('bwenge.auth')).access_token")
            .await;
        let avatar: Value = app
            .authed(
                Method::GET,
                &format!("/v1/personas/{persona_id}/avatar"),
                token.as_str().unwrap(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let idle = avatar["gestures"]["idle"].as_str().unwrap().to_owned();
        let expected = avatar["gestures"][gesture.as_str().unwrap()]
            .as_str()
            .map_or(idle.clone(), str::to_owned);
        page.wait_for(
            &format!(
                "(document.body.dataset.avatarPlayed || '').split(' ').includes({expected:?})"
            ),
            20,
            "the gesture's clip",
        )
        .await;
        assert_eq!(
            expected, "Wave",
            "gesture {gesture}, avatar {}",
            avatar["gestures"]
        );
        eprintln!("avatar: answer gesture {gesture} played clip {expected}");
        page.wait_for(
            &format!("document.body.dataset.avatarClip === {idle:?}"),
            30,
            "idle again",
        )
        .await;
    } else {
        eprintln!("no WebGL in this Chromium: the avatar is skipped, text chat works without it");
        assert_eq!(
            page.eval("document.body.dataset.avatar").await,
            "unavailable"
        );
    }
    axe(&mut page, "chat").await;
    shots(&mut page, "chat").await;
    // The citation opens the original in a new tab, through a signed link.
    let mut opened = open_citation(&browser, &mut page, "#log li.theirs .chip").await;
    assert_eq!(opened.eval("document.contentType").await, "text/plain");
    assert!(
        opened
            .eval("document.body.innerText")
            .await
            .as_str()
            .unwrap()
            .contains("chlorophyll")
    );
    browser.close_other_tabs(&page).await;
    // A PDF opens in the browser's viewer at the cited page.
    if let Some(pdf_id) = &pdf_id {
        page.eval(&format!(
            "import('/static/pages/chat.js').then((m) => {{ \
               const chips = m.citationChips([{{n: 1, source_id: '{pdf_id}', \
                 source_title: 'ExpEYES manual', page: 3, quote: ''}}]); \
               chips.id = 'pdf-chip'; document.querySelector('#main').append(chips); }}), true"
        ))
        .await;
        page.wait_for(
            "document.querySelector('#pdf-chip .chip')",
            10,
            "the PDF chip",
        )
        .await;
        let mut opened = open_citation(&browser, &mut page, "#pdf-chip .chip").await;
        assert_eq!(opened.eval("document.contentType").await, "application/pdf");
        let href = opened.eval("location.href").await;
        assert!(href.as_str().unwrap().ends_with("#page=3"), "{href}");
        page.eval("document.querySelector('#pdf-chip').remove(), true")
            .await;
        browser.close_other_tabs(&page).await;
    }

    // The network is cut while an answer is on its way, and a question is
    // typed while offline; when it returns, everything arrives once.
    ask_in_page(&mut page, "What do stomata do?").await;
    page.network(true, 0.0, -1.0).await;
    page.eval("window.bwengeChat && window.bwengeChat.ws && window.bwengeChat.ws.close(), true")
        .await;
    page.wait_for(
        "!document.querySelector('#banner').hidden",
        10,
        "the offline banner",
    )
    .await;
    ask_in_page(&mut page, "Why are leaves green?").await;
    page.wait_for(
        "document.querySelectorAll('#log li.pending').length >= 1",
        5,
        "the queued question",
    )
    .await;
    shots(&mut page, "chat-offline").await;
    let queued = page
        .eval("JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.startsWith('bwenge.chat.')))).outbox.length")
        .await;
    assert!(queued.as_u64().unwrap() >= 1, "{queued}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    page.network(false, 0.0, -1.0).await;
    page.wait_for(
        "document.querySelectorAll('#log li.theirs[data-seq]').length === 3 && !document.querySelector('#log li.pending') && document.body.dataset.chat === 'online'",
        60,
        "every answer after the network returned",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let c = conversation(&mut page).await;
    assert_eq!(c["shown"], 6, "{c}");
    assert_eq!(c["unique"], 6, "{c}");
    assert_eq!(c["user"], 3, "{c}");
    assert_eq!(c["answers"], 3, "{c}");
    assert_eq!(c["streaming"], 0, "{c}");
    assert!(page.eval("document.querySelector('#banner').hidden").await == Value::Bool(true));

    // The server holds each question once.
    let session_id = page.eval("document.body.dataset.session").await;
    let student_token = page
        .eval("JSON.parse(localStorage.getItem('bwenge.auth')).access_token")
        .await;
    let session: Value = app
        .authed(
            Method::GET,
            &format!("/v1/chat/sessions/{}", session_id.as_str().unwrap()),
            student_token.as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = session["events"].as_array().unwrap();
    let questions: Vec<&str> = events
        .iter()
        .filter(|e| e["role"] == "user")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(questions.len(), 3, "{questions:?}");
    assert_eq!(events.len(), 6, "{session}");

    // A reload keeps the conversation, once.
    page.reload().await;
    page.wait_for(
        "document.body.dataset.chat === 'online'",
        20,
        "the chat again",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let c = conversation(&mut page).await;
    assert_eq!(c["shown"], 6, "{c}");
    assert_eq!(c["unique"], 6, "{c}");

    // History lists the session; a language switch translates the shell.
    click(&mut page, "a[href='/history']").await;
    page.wait_for("document.querySelector('#sessions a')", 10, "the history")
        .await;
    shots(&mut page, "history").await;
    page.eval("(() => { const s = document.querySelector('#lang'); s.value = 'fr'; s.dispatchEvent(new Event('change')); return true; })()")
        .await;
    page.wait_for("document.documentElement.lang === 'fr' && document.querySelector('h1').textContent === 'Conversations passées'", 10, "French")
        .await;
    page.eval("(() => { const s = document.querySelector('#lang'); s.value = 'en'; s.dispatchEvent(new Event('change')); return true; })()")
        .await;

    no_csp_problems(&page);
}

/// Sets up a school through the API: admin, ready material, a tutor, and a
/// student who accepted an invitation.
async fn school(app: &TestApp) -> (Member, Member, String) {
    let admin = app.register("Keyboard School", &email("kb-admin")).await;
    crate::knowledge::upload_and_wait(
        app,
        &admin,
        "photosynthesis.txt",
        MATERIAL.as_bytes().to_vec(),
    )
    .await;
    let res = app
        .authed(Method::POST, "/v1/personas", &admin.access)
        .json(&json!({"name": "Biology tutor", "subject": "Biology"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let persona: Value = res.json().await.unwrap();
    let student = app
        .invite_and_accept(&admin, &email("kb-student"), "student")
        .await;
    (admin, student, persona["id"].as_str().unwrap().to_owned())
}

#[actix_web::test]
async fn keyboard_only_sign_in_and_ask_on_a_slow_link() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let (_admin, student, persona_id) = school(&app).await;
    let mut page = browser.new_page().await;
    page.viewport(390, 844, true).await;
    // The issue's throttled profile: 1.6 Mbps, 300 ms round trip.
    page.network(false, 300.0, 1_600_000.0 / 8.0).await;
    let started = Instant::now();
    page.goto(&app.url("/login")).await;
    page.wait_for(
        "document.querySelector('#login-email')",
        30,
        "the sign-in form",
    )
    .await;

    page.tab_to("#login-email", 10).await;
    page.insert_text(&student.email).await;
    page.press("Tab", 0).await;
    page.tab_to("#login-password", 3).await;
    page.insert_text(PASSWORD).await;
    page.press("Enter", 0).await;
    page.wait_for(
        "location.pathname === '/chat' && document.querySelector('main a[href^=\"/chat/\"]')",
        30,
        "the tutors",
    )
    .await;
    page.tab_to(&format!("a[href='/chat/{persona_id}']"), 20)
        .await;
    page.press("Enter", 0).await;
    page.wait_for("document.body.dataset.chat === 'online'", 30, "the chat")
        .await;
    page.tab_to("#question", 20).await;
    // The focus is visible where it is.
    let outline = page
        .eval("getComputedStyle(document.activeElement).outlineStyle")
        .await;
    assert_ne!(outline, "none", "no visible focus on the question");
    page.insert_text("What does chlorophyll absorb?").await;
    page.press("Enter", 0).await;
    page.wait_for(
        "document.querySelector('#log li.mine')",
        10,
        "the question shown",
    )
    .await;
    let to_ask = started.elapsed();
    page.wait_for(
        "document.querySelector('#log li.theirs[data-seq] .chip')",
        60,
        "the answer",
    )
    .await;
    eprintln!(
        "throttled 1.6 Mbps / 300 ms: signed in and asked in {to_ask:?}, answered after {:?}",
        started.elapsed()
    );
    // The chips are reachable by keyboard too.
    page.tab_to("#log li.theirs .chip", 30).await;
    no_csp_problems(&page);
}

/// The links in the mails open the client's pages, which finish the job:
/// email verification, and a password reset asked for in the page.
#[actix_web::test]
async fn mail_links_open_the_clients_pages() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let admin_email = email("links-admin");
    app.register("Links School", &admin_email).await;
    let mut page = browser.new_page().await;

    // Verification, from the registration's mail.
    let token = app.mail_token(&admin_email, 0).await;
    let mail = app.mails_to(&admin_email).pop().unwrap();
    assert!(mail.contains("/verify-email?token="), "{mail}");
    page.goto(&app.url(&format!("/verify-email?token={token}")))
        .await;
    page.wait_for(
        "document.querySelector('main [role=status]')?.textContent.includes('confirmed')",
        20,
        "the confirmation",
    )
    .await;
    let me: Value = app
        .login(&admin_email, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email_verified"], true, "{me}");

    // A reset asked for in the page, finished from the mail's link.
    let before = app.mails_to(&admin_email).len();
    page.goto(&app.url("/reset-password")).await;
    page.wait_for(
        "document.querySelector('input[name=email]')",
        10,
        "the reset form",
    )
    .await;
    fill(&mut page, "input[name=email]", &admin_email).await;
    click(&mut page, "form button[type=submit]").await;
    page.wait_for(
        "!document.querySelector('.alert.ok')?.hidden",
        10,
        "the reset acknowledged",
    )
    .await;
    let token = app.mail_token(&admin_email, before).await;
    assert!(
        app.mails_to(&admin_email)
            .pop()
            .unwrap()
            .contains("/reset-password?token=")
    );
    page.goto(&app.url(&format!("/reset-password?token={token}")))
        .await;
    page.wait_for(
        "document.querySelector('input[name=new_password]')",
        10,
        "the new password form",
    )
    .await;
    axe(&mut page, "password reset").await;
    let new_password = "a brand new passphrase 42";
    fill(&mut page, "input[name=new_password]", new_password).await;
    click(&mut page, "form button[type=submit]").await;
    page.wait_for(
        "document.querySelector('.alert.ok') && !document.querySelector('.alert.ok').hidden",
        10,
        "the reset done",
    )
    .await;
    assert_eq!(app.login(&admin_email, PASSWORD).await.status(), 401);

    // And the new password signs in, in the page.
    page.goto(&app.url("/login")).await;
    page.wait_for(
        "document.querySelector('#login-email')",
        10,
        "the sign-in form",
    )
    .await;
    fill(&mut page, "#login-email", &admin_email).await;
    fill(&mut page, "#login-password", new_password).await;
    click(&mut page, "form button[type=submit]").await;
    page.wait_for(
        "location.pathname === '/material'",
        20,
        "the signed-in home",
    )
    .await;
    // A token refresh keeps the session going, and sign-out ends it.
    page.eval("import('/static/api.js').then(m => m.refresh(true)).then(() => true)")
        .await;
    page.reload().await;
    page.wait_for(
        "location.pathname === '/material' && document.querySelector('#signout')",
        20,
        "still signed in",
    )
    .await;
    click(&mut page, "#signout").await;
    page.wait_for(
        "location.pathname === '/login' && !localStorage.getItem('bwenge.auth')",
        10,
        "signed out",
    )
    .await;
    no_csp_problems(&page);
}

/// Signs `who` in through the sign-in page.
async fn sign_in(page: &mut Page, app: &TestApp, who: &Member) {
    page.goto(&app.url("/login")).await;
    page.wait_for(
        "document.querySelector('#login-email')",
        20,
        "the sign-in form",
    )
    .await;
    fill(page, "#login-email", &who.email).await;
    fill(page, "#login-password", PASSWORD).await;
    click(page, "form button[type=submit]").await;
    page.wait_for("location.pathname !== '/login'", 20, "signed in")
        .await;
}

/// The staff's own pages, on real data: analytics drawn from the reports,
/// the live classroom following a student's question as it is asked, and
/// the subscription paid by mobile money through the provider's fake.
#[actix_web::test]
async fn staff_see_analytics_the_live_class_and_pay_for_a_plan() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let (app, _fakes) = crate::billing::app_with_fakes(Backend::Sqlite)
        .await
        .unwrap();
    let (admin, student, persona_id) = school(&app).await;
    // Two questions over HTTP: one the material covers, one it does not.
    for q in [
        "What does chlorophyll absorb?",
        "Who won the 1998 football world cup?",
    ] {
        let res = crate::personas::ask(&app, &student, &persona_id, q).await;
        assert_eq!(res.status(), 200);
    }
    // The recorder writes in the background: wait until the report has them.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o: Value = app
            .authed(Method::GET, "/v1/analytics/overview", &admin.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if o["questions"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{o}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let mut page = browser.new_page().await;
    sign_in(&mut page, &app, &admin).await;

    // Analytics: the figures, a chart of the days, the student, the gap.
    click(&mut page, "a[href='/analytics']").await;
    page.wait_for(
        "document.querySelector('#overview')?.dataset.questions === '2'",
        20,
        "the overview",
    )
    .await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let bar = page
        .wait_for(
            &format!(
                "document.querySelector('#by-day-chart [data-date=\"{today}\"]')?.dataset.questions"
            ),
            10,
            "today's bar",
        )
        .await;
    assert_eq!(bar, "2");
    page.wait_for(
        &format!(
            "document.querySelector('#students tr[data-user-id=\"{}\"]')",
            student.id
        ),
        10,
        "the student's row",
    )
    .await;
    let gap = page
        .wait_for(
            "document.querySelector('#gaps li.gap')?.textContent",
            10,
            "a knowledge gap",
        )
        .await;
    assert!(gap.as_str().unwrap().contains("football"), "{gap}");
    axe(&mut page, "analytics").await;
    shots(&mut page, "analytics").await;
    // The student's own page, from their row.
    click(
        &mut page,
        &format!("#students tr[data-user-id=\"{}\"] a", student.id),
    )
    .await;
    page.wait_for(
        "document.querySelector('#student-figures')?.dataset.questions === '2'",
        20,
        "the student's page",
    )
    .await;
    let recent = page
        .eval("document.querySelectorAll('#recent-questions li').length")
        .await;
    assert_eq!(recent, 2);

    // The live classroom: the student comes online and asks; the teacher
    // sees both as they happen, and the answer's outcome.
    click(&mut page, "a[href='/classroom']").await;
    page.wait_for(
        "document.querySelector('#classroom-status')?.dataset.state === 'live'",
        20,
        "the live classroom",
    )
    .await;
    let mut ws = crate::chat::Ws::connect(&app, &student).await;
    ws.start(&persona_id).await;
    ws.send(json!({"type": "message", "client_id": "live-1", "text": "How do leaves make sugar?"}))
        .await;
    page.wait_for(
        &format!(
            "document.querySelector('#online li[data-user-id=\"{}\"]')",
            student.id
        ),
        20,
        "the student online",
    )
    .await;
    let state = page
        .wait_for(
            "(() => { const li = [...document.querySelectorAll('#feed li.feed-item')].find(li => li.textContent.includes('make sugar')); return li && li.dataset.state !== 'waiting' ? li.dataset.state : null; })()",
            30,
            "the question and its answer in the feed",
        )
        .await;
    assert!(state == "answered" || state == "not_covered", "{state}");
    axe(&mut page, "classroom").await;
    shots(&mut page, "classroom").await;
    drop(ws);
    page.wait_for(
        &format!(
            "!document.querySelector('#online li[data-user-id=\"{}\"]')",
            student.id
        ),
        30,
        "the student gone offline",
    )
    .await;

    // The subscription: usage counted, a plan paid for by MTN MoMo.
    click(&mut page, "a[href='/billing']").await;
    page.wait_for(
        "document.querySelector('#subscription')?.dataset.plan === 'free'",
        20,
        "the subscription",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelector('#usage-questions').dataset.used")
            .await,
        "3"
    );
    page.eval("(() => { const s = document.querySelector('#method-basic'); s.value = 'mtn_momo'; s.dispatchEvent(new Event('change')); return true; })()")
        .await;
    // A number that is no phone number is caught before anything is sent.
    fill(&mut page, "#phone-basic", "12").await;
    click(&mut page, "#checkout-basic button[type=submit]").await;
    page.wait_for(
        "document.querySelector('#phone-basic').getAttribute('aria-invalid') === 'true'",
        10,
        "the phone refused",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelector('#payment-status')?.dataset.status ?? null")
            .await,
        Value::Null
    );
    fill(&mut page, "#phone-basic", "+250 788 123 456").await;
    click(&mut page, "#checkout-basic button[type=submit]").await;
    page.wait_for(
        "document.querySelector('#payment-status')?.dataset.status === 'succeeded'",
        60,
        "the payment confirmed by the provider",
    )
    .await;
    page.wait_for(
        "document.querySelector('#subscription')?.dataset.plan === 'basic'",
        20,
        "the plan changed",
    )
    .await;
    let row = page
        .eval("document.querySelector('#payments tbody tr')?.dataset.status")
        .await;
    assert_eq!(row, "succeeded");
    axe(&mut page, "billing").await;
    shots(&mut page, "billing").await;
    no_csp_problems(&page);
}
