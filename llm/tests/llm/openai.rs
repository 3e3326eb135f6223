//! OpenAiCompatible against the OpenAI-protocol stub.

use std::time::{Duration, Instant, SystemTime};

use bwenge_llm::testing::{StubBehaviour, StubServer};
use bwenge_llm::{
    Animation, Emotion, Gesture, LanguageModel, LlmError, OpenAiCompatible, OpenAiConfig,
    StreamEvent, TiktokenCounter, TokenCounter, Usage,
};

use crate::common::{
    assert_complete, assert_failed, closed_port, collect, deltas, prompt_words, request, shown_text,
};

const ANSWER: &str = "Photosynthesis makes glucose from sunlight [1]. Chlorophyll absorbs \
                      light [2].\n[[animation gesture=explaining emotion=neutral]]";
const SHOWN: &str =
    "Photosynthesis makes glucose from sunlight [1]. Chlorophyll absorbs light [2].";

async fn server(b: StubBehaviour) -> StubServer {
    StubServer::openai(b).await.expect("stub server")
}

fn provider(cfg: OpenAiConfig) -> OpenAiCompatible {
    OpenAiCompatible::new(cfg).expect("provider")
}

#[tokio::test]
async fn happy_path_streams_deltas_then_done_with_reported_usage() {
    let srv = server(StubBehaviour::Stream {
        text: ANSWER.into(),
        chunks: 9,
        chunk_delay: Duration::from_millis(5),
    })
    .await;
    let p = provider(srv.openai_config("gpt-4o-mini"));
    assert_eq!(p.name(), "openai:gpt-4o-mini");
    let req = request("What is photosynthesis?");
    let events = collect(p.stream(&req).await.expect("stream")).await;
    assert_complete(&events);
    assert!(deltas(&events) >= 5, "{events:?}");
    assert_eq!(shown_text(&events), SHOWN);

    let rec = srv.last_request().expect("request recorded");
    assert_eq!(srv.request_count(), 1);
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path, "/v1/chat/completions");
    assert_eq!(rec.header("authorization"), Some("Bearer sk-stub"));
    assert!(
        rec.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    assert_eq!(rec.body["model"], "gpt-4o-mini");
    assert_eq!(rec.body["stream"], true);
    assert_eq!(rec.body["stream_options"]["include_usage"], true);
    assert_eq!(rec.body["max_tokens"], 200);
    let system = rec.system_prompt().expect("system prompt");
    assert!(system.contains("Mwalimu Amani"));
    assert!(system.contains("<passage n="), "{system}");
    assert!(system.contains("[[animation gesture=<gesture> emotion=<emotion>]]"));
    let user = rec.last_user_message().expect("user message");
    assert!(user.contains("<passage n=\"1\" source=\"Biology Book\" page=\"12\">"));
    assert!(user.ends_with("Student's question: What is photosynthesis?"));
    assert_eq!(rec.body["messages"].as_array().map(Vec::len), Some(4));

    let Some(Ok(StreamEvent::Done {
        provider,
        usage,
        animation,
    })) = events.last()
    else {
        panic!("no Done");
    };
    assert_eq!(provider, "openai:gpt-4o-mini");
    assert_eq!(
        *usage,
        Usage {
            prompt_tokens: prompt_words(&rec.body),
            completion_tokens: u32::try_from(ANSWER.split_whitespace().count()).expect("small"),
        }
    );
    assert_eq!(
        *animation,
        Some(Animation::new(Gesture::Explaining, Emotion::Neutral))
    );
}

#[tokio::test]
async fn usage_is_counted_locally_when_the_server_sends_none() {
    let srv = server(StubBehaviour::stream(ANSWER, 4)).await;
    srv.report_usage(false);
    let p = provider(srv.openai_config("gpt-4o-mini"));
    let req = request("What is photosynthesis?");
    let events = collect(p.stream(&req).await.expect("stream")).await;
    assert_complete(&events);
    let (prompt, _) = p.request_body(&req);
    let Some(Ok(StreamEvent::Done { usage, .. })) = events.last() else {
        panic!("no Done");
    };
    assert_eq!(usage.prompt_tokens, prompt.prompt_tokens);
    assert_eq!(
        usage.completion_tokens,
        TiktokenCounter::for_model("gpt-4o-mini").count(ANSWER)
    );
}

#[tokio::test]
async fn chunk_boundaries_split_sse_lines_and_utf8_characters() {
    let text = "Ça coûte 5 € — 水 😀 «ok» [1].\n[[animation gesture=happy emotion=encouraging]]";
    let srv = server(StubBehaviour::stream(text, 6)).await;
    let p = provider(srv.openai_config("gpt-4o-mini"));
    for size in [1, 2, 3, 7, 64] {
        srv.fragment_writes(Some(size));
        let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
        assert_complete(&events);
        assert_eq!(
            shown_text(&events),
            "Ça coûte 5 € — 水 😀 «ok» [1].",
            "size {size}"
        );
        assert!(matches!(
            events.last(),
            Some(Ok(StreamEvent::Done { animation: Some(a), .. }))
                if *a == Animation::new(Gesture::Happy, Emotion::Encouraging)
        ));
    }
}

#[tokio::test]
async fn raw_event_stream_with_comments_crlf_and_multiline_data() {
    let body = ": keep-alive\r\n\r\n\
        data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n\
        data: {\"choices\":[{\"delta\":\r\n\
        data: {\"content\":\"Hel\"}}]}\r\n\r\n\
        : another comment\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"lo [1].\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3}}\r\r\
        data: [DONE]\r\n\r\n";
    let srv = server(StubBehaviour::Raw {
        body: body.as_bytes().to_vec(),
        write_size: 5,
        delay: Duration::from_millis(1),
    })
    .await;
    let p = provider(srv.openai_config("gpt-4o-mini"));
    let events = collect(p.stream(&request("Hi?")).await.expect("stream")).await;
    assert_complete(&events);
    assert_eq!(shown_text(&events), "Hello [1].");
    assert!(matches!(
        events.last(),
        Some(Ok(StreamEvent::Done { usage, animation: None, .. }))
            if *usage == Usage { prompt_tokens: 11, completion_tokens: 3 }
    ));
}

#[tokio::test]
async fn rate_limit_maps_to_rate_limited_with_retry_after() {
    let srv = server(StubBehaviour::rate_limited(7)).await;
    let p = provider(srv.openai_config("gpt-4o-mini"));
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected an error");
    };
    assert_eq!(
        err,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(err.is_transient());

    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    srv.set_behaviour(StubBehaviour::Status {
        code: 429,
        retry_after: Some(at),
    });
    let Err(LlmError::RateLimited {
        retry_after: Some(d),
    }) = p.stream(&request("Why?")).await
    else {
        panic!("expected a rate limit with a delay");
    };
    assert!(
        d > Duration::from_secs(27) && d <= Duration::from_secs(30),
        "{d:?}"
    );
}

#[tokio::test]
async fn statuses_map_to_errors() {
    let srv = server(StubBehaviour::status(500)).await;
    let p = provider(srv.openai_config("gpt-4o-mini"));
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected an error");
    };
    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("500") && m.contains("server had an error")),
        "{err:?}"
    );
    assert!(err.is_transient());
    for (code, check) in [
        (
            503u16,
            (|e: &LlmError| matches!(e, LlmError::Unavailable(_))) as fn(&LlmError) -> bool,
        ),
        (401, |e| matches!(e, LlmError::Config(_))),
        (404, |e| matches!(e, LlmError::Config(_))),
        (400, |e| matches!(e, LlmError::BadResponse(_))),
    ] {
        srv.set_behaviour(StubBehaviour::status(code));
        let Err(err) = p.stream(&request("Why?")).await else {
            panic!("expected an error for {code}");
        };
        assert!(check(&err), "{code}: {err:?}");
        if code != 503 {
            assert!(!err.is_transient(), "{code}");
        }
    }
}

#[tokio::test]
async fn slow_first_token_times_out() {
    let srv = server(StubBehaviour::Slow {
        first_byte_after: Duration::from_secs(3),
        text: "Too late.".into(),
    })
    .await;
    let p = provider(OpenAiConfig {
        first_token_timeout: Duration::from_millis(300),
        ..srv.openai_config("gpt-4o-mini")
    });
    let started = Instant::now();
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected a timeout");
    };
    assert_eq!(err, LlmError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(srv.request_count(), 1);
}

#[tokio::test]
async fn silence_between_chunks_times_out_without_done() {
    let srv = server(StubBehaviour::Stream {
        text: "one two three four".into(),
        chunks: 4,
        chunk_delay: Duration::from_millis(600),
    })
    .await;
    let p = provider(OpenAiConfig {
        idle_timeout: Duration::from_millis(200),
        ..srv.openai_config("gpt-4o-mini")
    });
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    assert!(deltas(&events) >= 1, "{events:?}");
    assert_eq!(assert_failed(&events), LlmError::Timeout);
}

#[tokio::test]
async fn a_stream_dying_midway_is_an_error_never_done() {
    let srv = server(StubBehaviour::DieMidway {
        text: "Photosynthesis is the process by which plants make food [1].".into(),
        after_chunks: 4,
    })
    .await;
    let p = provider(srv.openai_config("gpt-4o-mini"));
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    assert!(deltas(&events) >= 1, "{events:?}");
    let err = assert_failed(&events);
    assert!(matches!(err, LlmError::BadResponse(_)), "{err:?}");

    // A clean end of the HTTP body without `data: [DONE]` is no better.
    srv.set_behaviour(StubBehaviour::EndWithoutMarker {
        text: "Photosynthesis is the process".into(),
        after_chunks: 2,
    });
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    let err = assert_failed(&events);
    assert!(
        matches!(&err, LlmError::BadResponse(m) if m.contains("[DONE]")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_error_object_in_the_stream_ends_it() {
    let srv = server(StubBehaviour::ErrorEvent {
        text: "Photosynthesis is".into(),
        after_chunks: 2,
    })
    .await;
    let p = provider(srv.openai_config("gpt-4o-mini"));
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    let err = assert_failed(&events);
    assert!(matches!(err, LlmError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn azure_sends_api_key_header_and_api_version() {
    let srv = server(StubBehaviour::stream("Hi [1].", 2)).await;
    let p = provider(OpenAiConfig {
        azure: true,
        api_version: Some("2024-10-21".into()),
        ..srv.openai_config("gpt-4o")
    });
    assert_eq!(p.name(), "azure:gpt-4o");
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    assert_complete(&events);
    let rec = srv.last_request().expect("request");
    assert_eq!(rec.path, "/v1/chat/completions?api-version=2024-10-21");
    assert_eq!(rec.header("api-key"), Some("sk-stub"));
    assert_eq!(rec.header("authorization"), None);
}

#[tokio::test]
async fn keyless_local_servers_and_connection_refused() {
    let srv = server(StubBehaviour::echo()).await;
    let p = provider(OpenAiConfig {
        api_key: None,
        name: Some("ollama".into()),
        ..srv.openai_config("llama3.1:8b")
    });
    let events = collect(
        p.stream(&request("What is photosynthesis?"))
            .await
            .expect("stream"),
    )
    .await;
    assert_complete(&events);
    assert_eq!(shown_text(&events), "Plants need sunlight to grow [1].");
    assert!(matches!(
        events.last(),
        Some(Ok(StreamEvent::Done { provider, animation: Some(_), .. })) if provider == "ollama"
    ));
    assert_eq!(
        srv.last_request()
            .and_then(|r| r.header("authorization").map(str::to_owned)),
        None
    );

    let port = closed_port().await;
    let p = provider(OpenAiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        ..srv.openai_config("gpt-4o-mini")
    });
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected an error");
    };
    assert!(matches!(err, LlmError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_stub_really_fragments_the_body() {
    use futures_util::StreamExt;
    let srv = server(StubBehaviour::stream("Ça 水 😀", 1)).await;
    srv.fragment_writes(Some(1));
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", srv.base_url()))
        .json(&serde_json::json!({"model": "m", "messages": []}))
        .send()
        .await
        .expect("response");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream; charset=utf-8")
    );
    let pieces: Vec<_> = resp.bytes_stream().collect().await;
    let total: usize = pieces
        .iter()
        .map(|p| p.as_ref().map_or(0, |b| b.len()))
        .sum();
    // Mostly one-byte reads: lines and multi-byte characters arrive split.
    assert!(
        pieces.len() * 2 > total,
        "{} pieces for {total} bytes",
        pieces.len()
    );
    assert!(pieces.iter().all(Result::is_ok));
}
