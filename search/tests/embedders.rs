//! Embedders: the HTTP client against a local server speaking the
//! OpenAI embeddings protocol, and the local MiniLM model when its files are
//! available (`BWENGE_TEST_MODEL_DIR`, see `scripts/fetch-model.sh`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bwenge_search::embed::cosine;
use bwenge_search::{
    EmbedError, Embedder, HashingEmbedder, HttpEmbedder, HttpEmbedderConfig, LocalEmbedder,
    LocalEmbedderConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- test server

/// One request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method_path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

type Handler = Arc<dyn Fn(&Seen) -> Option<(u16, String, Vec<u8>)> + Send + Sync>;

/// A minimal HTTP/1.1 server on 127.0.0.1: reads each request whole, answers
/// with the handler's (status, content type, body) and closes. `None` from
/// the handler means "never answer" (for timeouts).
async fn serve(handler: Handler) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            let seen = Arc::clone(&seen2);
            tokio::spawn(async move { handle(sock, handler, seen).await });
        }
    });
    (format!("http://{addr}"), seen)
}

async fn handle(mut sock: TcpStream, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let mut authorization = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = v.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + content_length {
        let n = sock.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut parts = request_line.split(' ');
    let method_path = format!(
        "{} {}",
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("")
    );
    let req = Seen {
        method_path,
        authorization,
        body: buf[head_end..head_end + content_length].to_vec(),
    };
    seen.lock().unwrap().push(req.clone());
    let Some((status, content_type, body)) = handler(&req) else {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(&body).await;
    let _ = sock.shutdown().await;
}

/// An OpenAI-compatible answer: input i → vector [i+1, 2, 0, ...] (not
/// normalised), listed in reverse order to check re-ordering by `index`.
fn fake_embeddings(req: &Seen, dim: usize) -> Option<(u16, String, Vec<u8>)> {
    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let inputs = v["input"].as_array().unwrap();
    let mut data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mut e = vec![0.0f32; dim];
            e[0] = (i + 1) as f32;
            e[1] = 2.0;
            serde_json::json!({"object": "embedding", "index": i, "embedding": e})
        })
        .collect();
    data.reverse();
    let body = serde_json::json!({"object": "list", "model": v["model"], "data": data});
    Some((
        200,
        "application/json".into(),
        serde_json::to_vec(&body).unwrap(),
    ))
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text number {i}")).collect()
}

// ------------------------------------------------------------------ HTTP embedder

#[tokio::test]
async fn http_embedder_speaks_the_openai_protocol() {
    let (base, seen) = serve(Arc::new(|req: &Seen| fake_embeddings(req, 8))).await;
    let mut config = HttpEmbedderConfig::new(format!("{base}/"), "tiny-embed", 8);
    config.api_key = Some("sk-test".into());
    config.max_batch = 2;
    let e = HttpEmbedder::new(config).unwrap();
    assert_eq!(e.id(), "http:tiny-embed");
    assert_eq!(e.dim(), 8);
    let out = e.embed(&texts(3)).await.unwrap();
    assert_eq!(out.len(), 3);
    // Batches of 2 and 1: the third text is the first of its batch.
    let expect = |a: f32| {
        let n = (a * a + 4.0).sqrt();
        (a / n, 2.0 / n)
    };
    for (v, a) in out.iter().zip([1.0, 2.0, 1.0]) {
        let (x, y) = expect(a);
        assert!((v[0] - x).abs() < 1e-6 && (v[1] - y).abs() < 1e-6, "{v:?}");
        assert!(v[2..].iter().all(|z| *z == 0.0));
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "split into batches of max_batch");
    assert_eq!(seen[0].method_path, "POST /v1/embeddings");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["model"], "tiny-embed");
    assert_eq!(
        body["input"],
        serde_json::json!(["text number 0", "text number 1"])
    );
    assert!(e.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn http_embedder_without_key_sends_no_authorization() {
    let (base, seen) = serve(Arc::new(|req: &Seen| fake_embeddings(req, 4))).await;
    let e = HttpEmbedder::new(HttpEmbedderConfig::new(base, "m", 4)).unwrap();
    e.embed(&texts(1)).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].authorization, None);
}

#[tokio::test]
async fn http_embedder_reports_error_status() {
    let (base, _) = serve(Arc::new(|_: &Seen| {
        Some((
            503,
            "application/json".into(),
            br#"{"error":{"message":"overloaded"}}"#.to_vec(),
        ))
    }))
    .await;
    let e = HttpEmbedder::new(HttpEmbedderConfig::new(base, "m", 4)).unwrap();
    match e.embed(&texts(2)).await {
        Err(EmbedError::Status { status: 503, body }) => assert!(body.contains("overloaded")),
        other => panic!("expected a 503 error, got {other:?}"),
    }
}

#[tokio::test]
async fn http_embedder_rejects_malformed_answers() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"<html>oops</html>".to_vec()),
        ("no data", br#"{"object":"list"}"#.to_vec()),
        (
            "too few",
            br#"{"data":[{"index":0,"embedding":[1,0,0,0]}]}"#.to_vec(),
        ),
        (
            "repeated index",
            br#"{"data":[{"index":0,"embedding":[1,0,0,0]},{"index":0,"embedding":[1,0,0,0]}]}"#
                .to_vec(),
        ),
        (
            "index out of range",
            br#"{"data":[{"index":0,"embedding":[1,0,0,0]},{"index":5,"embedding":[1,0,0,0]}]}"#
                .to_vec(),
        ),
        (
            "zero vector",
            br#"{"data":[{"index":0,"embedding":[0,0,0,0]},{"index":1,"embedding":[1,0,0,0]}]}"#
                .to_vec(),
        ),
        (
            "string values",
            br#"{"data":[{"index":0,"embedding":["a"]}]}"#.to_vec(),
        ),
    ];
    for (name, body) in cases {
        let body = Arc::new(body);
        let (base, _) = serve(Arc::new(move |_: &Seen| {
            Some((200, "application/json".into(), body.as_ref().clone()))
        }))
        .await;
        let e = HttpEmbedder::new(HttpEmbedderConfig::new(base, "m", 4)).unwrap();
        match e.embed(&texts(2)).await {
            Err(EmbedError::Protocol(_)) => {}
            other => panic!("{name}: expected a protocol error, got {other:?}"),
        }
    }
    // Wrong length is its own error.
    let (base, _) = serve(Arc::new(|req: &Seen| fake_embeddings(req, 3))).await;
    let e = HttpEmbedder::new(HttpEmbedderConfig::new(base, "m", 4)).unwrap();
    assert!(matches!(
        e.embed(&texts(1)).await,
        Err(EmbedError::Dimension {
            expected: 4,
            got: 3
        })
    ));
}

#[tokio::test]
async fn http_embedder_unreachable_and_timeout() {
    // A port that was just free: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = HttpEmbedder::new(HttpEmbedderConfig::new(
        format!("http://127.0.0.1:{port}"),
        "m",
        4,
    ))
    .unwrap();
    assert!(matches!(
        e.embed(&texts(1)).await,
        Err(EmbedError::Transport(_))
    ));

    let (base, _) = serve(Arc::new(|_: &Seen| None)).await;
    let mut config = HttpEmbedderConfig::new(base, "m", 4);
    config.timeout = Duration::from_millis(300);
    let e = HttpEmbedder::new(config).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        e.embed(&texts(1)).await,
        Err(EmbedError::Transport(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

// -------------------------------------------------------------- hashing embedder

#[tokio::test]
async fn hashing_embedder_through_the_trait() {
    let e: Box<dyn Embedder> = Box::new(HashingEmbedder::default());
    assert_eq!(e.id(), "hashing:384");
    let out = e
        .embed(&["wing flutter".to_owned(), "wing flutter".to_owned()])
        .await
        .unwrap();
    assert_eq!(out[0], out[1]);
    assert_eq!(out[0].len(), 384);
}

// ------------------------------------------------------------------- local model

/// The model directory, or `None` (with a note) when the test should skip.
fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("BWENGE_TEST_MODEL_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => {
            if std::env::var("BWENGE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("BWENGE_TEST_MODEL_DIR is unset but BWENGE_TEST_REQUIRE_SERVICES=1");
            }
            eprintln!(
                "note: skipping a local-model test: set BWENGE_TEST_MODEL_DIR \
                 (scripts/fetch-model.sh fetches the files)"
            );
            None
        }
    }
}

/// The local model with exact f32 products (the reference values below are
/// exact); [`local_embedder_on_the_matrix_unit_keeps_the_vectors_close`]
/// holds the bfloat16 products to them.
fn local(dir: PathBuf) -> LocalEmbedder {
    let mut config = LocalEmbedderConfig::new(dir);
    config.matrix_tiles = false;
    LocalEmbedder::load_blocking(config).unwrap()
}

/// Reference values from an independent float64 numpy implementation of the
/// same model (BERT forward, mean pooling, normalisation) on the same files;
/// "Hello, world!" also matches the values sentence-transformers publishes.
const REF_TEXTS: [&str; 4] = [
    "The cat sits on the mat.",
    "A cat is sitting on a rug.",
    "Quarterly tax filing deadlines for small businesses.",
    "Hello, world!",
];
const REF_FIRST8: [[f32; 8]; 4] = [
    [
        0.134177, -0.0329, -0.024804, 0.041439, -0.036348, 0.041814, 0.031217, 0.037202,
    ],
    [
        0.10013, -0.019275, 0.017466, 0.055746, -0.07266, 0.040779, 0.030093, 0.040514,
    ],
    [
        0.034175, 0.023278, 0.031419, 0.006021, -0.001253, 0.003679, -0.040871, 0.023173,
    ],
    [
        -0.038177, 0.032911, -0.005459, 0.01437, -0.040291, -0.116532, 0.031688, 0.001912,
    ],
];
const REF_COS: [[f32; 4]; 4] = [
    [1.0, 0.768879, -0.000322, -0.045208],
    [0.768879, 1.0, 0.063066, -0.060355],
    [-0.000322, 0.063066, 1.0, 0.053641],
    [-0.045208, -0.060355, 0.053641, 1.0],
];

#[test]
fn local_embedder_matches_reference_values() {
    let Some(dir) = model_dir() else { return };
    let e = local(dir);
    assert_eq!(e.dim(), 384);
    assert_eq!(e.id(), "local:all-MiniLM-L6-v2");
    let texts: Vec<String> = REF_TEXTS.iter().map(|s| s.to_string()).collect();
    let out = e.embed_blocking(&texts).unwrap();
    for (i, v) in out.iter().enumerate() {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        for (a, b) in v.iter().zip(REF_FIRST8[i]) {
            assert!(
                (a - b).abs() < 2e-4,
                "text {i}: {:?} vs {:?}",
                &v[..8],
                REF_FIRST8[i]
            );
        }
        for (j, w) in out.iter().enumerate() {
            assert!((cosine(v, w) - REF_COS[i][j]).abs() < 5e-4, "cos({i},{j})");
        }
    }
}

/// A few short texts (a question) go through the encoder written for short
/// inputs; batches with a long text through candle's. Both give the
/// reference values.
#[test]
fn local_embedder_short_and_batched_paths_agree() {
    let Some(dir) = model_dir() else { return };
    let e = local(dir);
    let mut batch: Vec<String> = REF_TEXTS.iter().map(|s| s.to_string()).collect();
    batch.push("hypersonic heat transfer at a blunt leading edge ".repeat(20));
    let batched = e.embed_blocking(&batch).unwrap();
    for (i, text) in REF_TEXTS.iter().enumerate() {
        let alone = e.embed_blocking(&[text.to_string()]).unwrap();
        let drift = alone[0]
            .iter()
            .zip(&batched[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(drift < 1e-4, "text {i}: the two paths differ by {drift}");
        for (a, b) in batched[i].iter().zip(REF_FIRST8[i]) {
            assert!((a - b).abs() < 2e-4, "text {i} batched: {a} vs {b}");
        }
    }
}

/// Documents' passages go through the short-input encoder's panels where
/// the CPU has AVX-512, or AVX2 with FMA (unpadded, several passages a
/// pass); they get the vectors candle's padded batches give, whatever their
/// length, the 256-token cut included.
#[test]
fn local_embedder_documents_get_the_vectors_candle_gives() {
    let Some(dir) = model_dir() else { return };
    let own = local(dir.clone());
    let mut config = LocalEmbedderConfig::new(dir);
    config.candle_for_documents = true;
    let candle = LocalEmbedder::load_blocking(config).unwrap();
    let sentences = [
        "The boundary layer thickens downstream of the leading edge.",
        "Connect the sensor between IN1 and ground, then read the voltage.",
        "A PT100 changes its resistance by 0.385 ohm per degree.",
        "Students measured the period of the pendulum ten times.",
        "The function returns the number of error bits in e.",
    ];
    let mut texts: Vec<String> = (0..14)
        .map(|i| {
            (0..1 + 4 * i)
                .map(|j| sentences[(i + j) % sentences.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    texts.push(String::new());
    texts.push("supersonic flow over a thin airfoil ".repeat(200));
    let got = own.embed_blocking(&texts).unwrap();
    let want = candle.embed_blocking(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let drift = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            drift < 1e-4,
            "passage {i}: the two encoders differ by {drift}"
        );
    }
}

/// Where the CPU has a matrix unit (AMX), the default runs the products
/// there in bfloat16: every vector stays within cosine 0.999 of the exact
/// one, questions and documents alike, the reference similarities within
/// 0.01, and what is closest stays closest.
#[test]
fn local_embedder_on_the_matrix_unit_keeps_the_vectors_close() {
    let Some(dir) = model_dir() else { return };
    let tiled = LocalEmbedder::load_blocking(LocalEmbedderConfig::new(dir.clone())).unwrap();
    if tiled.products() != "amx-bf16" {
        eprintln!(
            "note: skipping the matrix-unit comparison: the products run on {} here \
             (no AMX with bfloat16)",
            tiled.products()
        );
        return;
    }
    let exact = local(dir);
    assert_eq!(exact.products(), "avx512");
    let mut texts: Vec<String> = REF_TEXTS.iter().map(|s| s.to_string()).collect();
    texts.push("Connect the sensor between IN1 and ground, then read the voltage. ".repeat(12));
    texts.push("supersonic flow over a thin airfoil ".repeat(200));
    texts.push(String::new());
    let (t, e) = (
        tiled.embed_blocking(&texts).unwrap(),
        exact.embed_blocking(&texts).unwrap(),
    );
    for (i, (a, b)) in t.iter().zip(&e).enumerate() {
        if texts[i].is_empty() {
            continue;
        }
        let c = cosine(a, b);
        assert!(c > 0.999, "text {i}: cosine {c} to the exact vector");
    }
    for i in 0..REF_TEXTS.len() {
        for j in 0..REF_TEXTS.len() {
            let c = cosine(&t[i], &t[j]);
            assert!((c - REF_COS[i][j]).abs() < 0.01, "cos({i},{j}) {c}");
        }
    }
    assert!(cosine(&t[0], &t[1]) > cosine(&t[0], &t[2]) + 0.5);
}

#[test]
fn local_embedder_paraphrase_is_closer_than_unrelated() {
    let Some(dir) = model_dir() else { return };
    let e = local(dir);
    let t = |s: &str| s.to_owned();
    let out = e
        .embed_blocking(&[
            t("How do plants turn sunlight into food?"),
            t("Photosynthesis is how green plants make sugar from light."),
            t("The football match ended in a draw after extra time."),
            t("What causes the lift force on an aircraft wing?"),
            t("Why does air flowing over a wing push an airplane up?"),
        ])
        .unwrap();
    assert!(cosine(&out[0], &out[1]) > cosine(&out[0], &out[2]) + 0.3);
    assert!(cosine(&out[3], &out[4]) > cosine(&out[3], &out[2]) + 0.3);
    assert!(cosine(&out[3], &out[4]) > cosine(&out[3], &out[0]));
}

#[test]
fn local_embedder_batching_and_truncation_do_not_change_vectors() {
    let Some(dir) = model_dir() else { return };
    let e = local(dir);
    let long = "supersonic flow over a thin airfoil ".repeat(2000); // ≫ 256 tokens
    let short = "boundary layer".to_owned();
    let alone = e.embed_blocking(std::slice::from_ref(&short)).unwrap();
    let mixed = e
        .embed_blocking(&[long.clone(), short.clone(), String::new()])
        .unwrap();
    assert_eq!(mixed.len(), 3);
    let drift: f32 = alone[0]
        .iter()
        .zip(&mixed[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(drift < 1e-4, "padding changed a vector by {drift}");
    // Truncated to 256 tokens: same as a text that is already only its start.
    let start = "supersonic flow over a thin airfoil ".repeat(60);
    let trunc = e.embed_blocking(&[start]).unwrap();
    assert!(cosine(&trunc[0], &mixed[0]) > 0.999);
}

/// A student's question is embedded while a teacher's document is (one
/// forward pass at a time for documents): it does not wait for the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_embedder_question_does_not_wait_behind_a_document() {
    let Some(dir) = model_dir() else { return };
    let mut config = LocalEmbedderConfig::new(dir);
    config.allow_download = false;
    config.max_concurrency = 1;
    let e = Arc::new(LocalEmbedder::load(config).await.unwrap());
    let chunks: Vec<String> = (0..128)
        .map(|i| {
            format!(
                "chunk {i}: {}",
                "the shock wave stands ahead of the blunt body ".repeat(40)
            )
        })
        .collect();
    let doc = {
        let e = Arc::clone(&e);
        tokio::spawn(async move { e.embed(&chunks).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !doc.is_finished(),
        "the document batch should still be running"
    );
    let q = e
        .embed(&["what is a shock wave?".to_owned()])
        .await
        .unwrap();
    assert_eq!(q[0].len(), 384);
    assert!(
        !doc.is_finished(),
        "the question waited for the document's batches"
    );
    assert_eq!(doc.await.unwrap().unwrap().len(), 128);
}

#[tokio::test]
async fn local_embedder_async_runs_on_the_blocking_pool() {
    let Some(dir) = model_dir() else { return };
    let mut config = LocalEmbedderConfig::new(dir);
    config.allow_download = false;
    let e: Arc<dyn Embedder> = Arc::new(LocalEmbedder::load(config).await.unwrap());
    let a = Arc::clone(&e);
    let b = Arc::clone(&e);
    let (x, y) = tokio::join!(
        async move { a.embed(&["wing".to_owned()]).await },
        async move { b.embed(&["wing".to_owned(), "tail".to_owned()]).await },
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(cosine(&x[0], &y[0]) > 0.9999);
    assert_eq!(y.len(), 2);
}

#[tokio::test]
async fn local_embedder_missing_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LocalEmbedderConfig::new(dir.path().join("model"));
    config.allow_download = false;
    let err = LocalEmbedder::load(config.clone()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, EmbedError::ModelUnavailable { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("model.safetensors") && msg.contains("fetch-model.sh"),
        "{msg}"
    );

    // Downloads allowed but nothing answers (as without internet): a clear
    // error naming the URL, nothing left half-written.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    config.allow_download = true;
    config.download_base_url = format!("http://127.0.0.1:{port}/sentence-transformers");
    let err = LocalEmbedder::load(config.clone()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, EmbedError::ModelUnavailable { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("download"),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(&config.model_dir).unwrap().collect();
    assert!(left.is_empty(), "partial files left: {left:?}");

    // A server that answers 404.
    let (base, _) = serve(Arc::new(|_: &Seen| {
        Some((404, "text/plain".into(), b"no".to_vec()))
    }))
    .await;
    config.download_base_url = base;
    let msg = LocalEmbedder::load(config).await.unwrap_err().to_string();
    assert!(msg.contains("404"), "{msg}");
}

#[tokio::test]
async fn local_embedder_downloads_missing_files() {
    let Some(src) = model_dir() else { return };
    let src = Arc::new(src);
    let (base, seen) = serve(Arc::new(move |req: &Seen| {
        let name = req
            .method_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        match std::fs::read(src.join(&name)) {
            Ok(bytes) => Some((200, "application/octet-stream".into(), bytes)),
            Err(_) => Some((404, "text/plain".into(), Vec::new())),
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = LocalEmbedderConfig::new(dir.path().join("m"));
    config.download_base_url = format!("{base}/resolve/main");
    let e = LocalEmbedder::load(config.clone()).await.unwrap();
    assert_eq!(e.embed(&["x".to_owned()]).await.unwrap()[0].len(), 384);
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.method_path.clone())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(paths.iter().all(|p| p.starts_with("GET /resolve/main/")));
    // Second load: everything is there, nothing is fetched.
    LocalEmbedder::load(config).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// Questions asked at the same moment are embedded together (one pass of
/// the short-input encoder for all of them), and each gets exactly the
/// vector it gets alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn questions_asked_together_get_the_vectors_they_get_alone() {
    let Some(dir) = model_dir() else { return };
    let mut config = LocalEmbedderConfig::new(dir);
    config.allow_download = false;
    let e = Arc::new(LocalEmbedder::load(config).await.unwrap());
    let questions: Vec<String> = (0..24)
        .map(|i| format!("why does the sensor read {i} volts when the lamp is off"))
        .chain(["what is a wing".to_owned(), "".to_owned()])
        .collect();
    let alone: Vec<Vec<f32>> = questions
        .iter()
        .map(|q| e.embed_blocking(std::slice::from_ref(q)).unwrap().remove(0))
        .collect();
    let asked: Vec<_> = questions
        .iter()
        .map(|q| {
            let e = Arc::clone(&e);
            let q = q.clone();
            tokio::spawn(async move { e.embed(&[q]).await.unwrap().remove(0) })
        })
        .collect();
    let mut together = Vec::new();
    for a in asked {
        together.push(a.await.unwrap());
    }
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a.len(), 384);
        let diff = a
            .iter()
            .zip(t)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "question {i} differs by {diff}");
    }
    // Different questions still get different vectors.
    assert!(cosine(&together[0], &together[24]) < 0.9);
}
