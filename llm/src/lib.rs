//! The LanguageModel port of Bwenge: how a persona actor gets an answer to a
//! student's question, grounded in retrieved passages, streamed.
//!
//! The server does retrieval, safety checks, citation verification and
//! caching; this crate owns the rest:
//!
//! * [`types`]: the port itself — [`AnswerRequest`], [`StreamEvent`],
//!   [`LlmError`], the [`LanguageModel`] trait, the [`Gesture`] /
//!   [`Emotion`] animation vocabularies.
//! * [`prompt`]: the system prompt and messages ([`build_messages`]) fitted
//!   to a [`TokenBudget`], and the [`AnimationTagFilter`] that strips the
//!   model's `[[animation …]]` line from streamed text.
//! * [`tokens`]: [`TokenCounter`]s — exact [`TiktokenCounter`] (embedded
//!   BPE tables, offline) and the documented [`EstimateCounter`].
//! * [`sse`]: the Server-Sent Events decoder both HTTP providers share.
//! * [`openai`]: [`OpenAiCompatible`] (OpenAI, Azure, Ollama, vLLM, llama.cpp).
//! * [`anthropic`]: [`Anthropic`] (Messages API).
//! * [`extractive`]: [`Extractive`], the offline default that answers with
//!   cited sentences of the passages.
//! * [`chain`]: [`Chain`], ordered fallback with per-provider circuit
//!   breakers and metrics.
//! * [`i18n`]: the fixed sentences ("not covered", refusals, greetings) in
//!   English, French, Swahili and Kinyarwanda.
//! * `testing` (feature `testing`): local OpenAI/Anthropic protocol stub
//!   servers and a scripted in-process model for tests and benches.

pub mod anthropic;
pub mod chain;
pub mod extractive;
pub mod i18n;
pub mod openai;
pub mod prompt;
pub mod sse;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tokens;
pub mod types;
mod wire;

pub use anthropic::{Anthropic, AnthropicConfig};
pub use chain::{BreakerConfig, BreakerState, Chain, ProviderStatus};
pub use extractive::{Extractive, ExtractiveAnswer, ExtractiveKind};
pub use i18n::Lang;
pub use openai::{OpenAiCompatible, OpenAiConfig};
pub use prompt::{AnimationTagFilter, Prompt, TokenBudget, build_messages};
pub use tokens::{EstimateCounter, TiktokenCounter, TokenCounter, counter_for_model};
pub use types::{
    Animation, AnswerRequest, Emotion, EventStream, Gesture, LanguageModel, LlmError, Passage,
    Role, StreamEvent, Turn, Usage,
};
