//! Builds the answer chain from `[llm]` settings: the configured providers,
//! in order, behind one [`Chain`] with a circuit breaker per provider.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bwenge_llm::{
    Anthropic, AnthropicConfig, BreakerConfig, Chain, Extractive, LanguageModel, OpenAiCompatible,
    OpenAiConfig,
};

use crate::config::{LlmProvider, LlmSettings};

/// The chain the personas answer through.
pub fn build(settings: &LlmSettings) -> anyhow::Result<Arc<dyn LanguageModel>> {
    let mut providers: Vec<Arc<dyn LanguageModel>> = Vec::new();
    for p in &settings.chain {
        match p {
            LlmProvider::Openai => {
                let e = &settings.openai;
                let cfg = OpenAiConfig {
                    base_url: e.base_url.trim_end_matches('/').to_owned(),
                    api_key: (!e.api_key.is_empty()).then(|| e.api_key.expose().to_owned()),
                    model: e.model.clone(),
                    context_window: e.context_window,
                    first_token_timeout: Duration::from_secs(e.first_token_timeout_secs),
                    total_timeout: Duration::from_secs(e.timeout_secs),
                    azure: e.azure,
                    ..OpenAiConfig::default()
                };
                providers.push(Arc::new(OpenAiCompatible::new(cfg).context(
                    "configuring the OpenAI-compatible provider ([llm.openai])",
                )?));
            }
            LlmProvider::Anthropic => {
                let e = &settings.anthropic;
                let cfg = AnthropicConfig {
                    base_url: e.base_url.trim_end_matches('/').to_owned(),
                    api_key: e.api_key.expose().to_owned(),
                    model: e.model.clone(),
                    context_window: e.context_window,
                    first_token_timeout: Duration::from_secs(e.first_token_timeout_secs),
                    total_timeout: Duration::from_secs(e.timeout_secs),
                    ..AnthropicConfig::default()
                };
                providers
                    .push(Arc::new(Anthropic::new(cfg).context(
                        "configuring the Anthropic provider ([llm.anthropic])",
                    )?));
            }
            LlmProvider::Extractive => providers.push(Arc::new(Extractive::new())),
        }
    }
    anyhow::ensure!(
        !providers.is_empty(),
        "llm.chain is empty: name at least one provider (\"extractive\" needs no network)"
    );
    Ok(Arc::new(Chain::new(
        providers,
        BreakerConfig {
            failure_threshold: settings.breaker_failures.max(1),
            open_for: Duration::from_secs(settings.breaker_open_secs),
        },
    )))
}
