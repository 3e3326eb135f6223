//! Token counting for prompt budgets and locally counted usage.
//!
//! * [`TiktokenCounter`]: exact counts for OpenAI-family models with the
//!   `cl100k_base` or `o200k_base` encoding. The BPE ranks are compiled into
//!   the binary by `tiktoken-rs` (`include_str!`), so counting never touches
//!   the network; the first count of an encoding parses its table once
//!   (a few hundred milliseconds), which [`TiktokenCounter::for_model`] does
//!   up front.
//! * [`EstimateCounter`]: a documented estimate for every other model
//!   (Anthropic, Llama, Mistral, … whose tokenizers are not public or not
//!   shipped), deliberately erring on the high side so a prompt that the
//!   estimate says fits does fit.
//! * [`counter_for_model`] picks one from a model name.

use std::sync::Arc;

use tiktoken_rs::CoreBPE;

/// Counts tokens in text the way (or roughly the way) a model's tokenizer does.
pub trait TokenCounter: Send + Sync {
    /// Number of tokens in `text`.
    fn count(&self, text: &str) -> u32;

    /// Short name of the method, for logs ("o200k_base", "estimate").
    fn name(&self) -> &str;
}

/// Which tiktoken encoding a [`TiktokenCounter`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GPT-3.5, GPT-4, GPT-4 Turbo, embeddings.
    Cl100kBase,
    /// GPT-4o, GPT-4.1, GPT-5, o1/o3/o4.
    O200kBase,
}

impl Encoding {
    /// The encoding for an OpenAI model name: `gpt-4o*`, `chatgpt-4o*`,
    /// `gpt-4.1*`, `gpt-4.5*`, `gpt-5*`, `o1*`, `o3*`, `o4*` use `o200k_base`,
    /// everything else `cl100k_base`. A provider prefix (`openai/`) and a
    /// fine-tune prefix (`ft:`) are ignored.
    pub fn for_model(model: &str) -> Self {
        let m = model.trim().to_ascii_lowercase();
        let m = m.strip_prefix("ft:").unwrap_or(&m);
        let m = m.rsplit('/').next().unwrap_or(m);
        const O200K: &[&str] = &[
            "gpt-4o",
            "chatgpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "gpt-oss",
        ];
        if O200K.iter().any(|p| m.starts_with(p)) {
            Encoding::O200kBase
        } else {
            Encoding::Cl100kBase
        }
    }

    /// tiktoken's name for the encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }
}

/// Exact token counts with a tiktoken encoding (offline: the ranks are embedded).
#[derive(Clone)]
pub struct TiktokenCounter {
    encoding: Encoding,
    bpe: &'static CoreBPE,
}

impl std::fmt::Debug for TiktokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiktokenCounter")
            .field("encoding", &self.encoding)
            .finish()
    }
}

impl TiktokenCounter {
    /// A counter with the given encoding (loads the shared table on first use).
    pub fn new(encoding: Encoding) -> Self {
        let bpe = match encoding {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        };
        Self { encoding, bpe }
    }

    /// A counter with the encoding [`Encoding::for_model`] picks.
    pub fn for_model(model: &str) -> Self {
        Self::new(Encoding::for_model(model))
    }

    /// The encoding in use.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
}

impl TokenCounter for TiktokenCounter {
    fn count(&self, text: &str) -> u32 {
        // Ordinary encoding: special-token text typed by a student is plain text.
        u32::try_from(self.bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX)
    }

    fn name(&self) -> &str {
        self.encoding.as_str()
    }
}

/// A tokenizer-free estimate of token counts.
///
/// `max(ceil(weight / 4), words)`, where `words` is the number of
/// whitespace-separated words and `weight` sums the non-whitespace
/// characters: ASCII characters weigh 1, Latin letters with diacritics
/// (below U+0250: é, ç, ñ …) weigh 2, every other character (Cyrillic,
/// Arabic, CJK, emoji …) weighs 4.
///
/// Why: BPE tokenizers trained mostly on English average about four
/// characters per token (OpenAI's published rule of thumb), spaces being
/// absorbed into the following token, hence `chars / 4`; every word and
/// every stand-alone punctuation mark still costs at least one token,
/// hence the per-word floor; accented letters take two UTF-8 bytes and break
/// merges, and scripts a tokenizer saw little of fall back to about one
/// token per character. On clean English prose this is 0–40 % above
/// `cl100k_base` (long words tokenize better than four characters each), and
/// further above on Swahili or Kinyarwanda text, whose words split into
/// more pieces than English ones; over-counting is the safe direction for a
/// prompt budget, which is what the estimate is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EstimateCounter;

impl TokenCounter for EstimateCounter {
    fn count(&self, text: &str) -> u32 {
        let mut weight: u64 = 0;
        let mut words: u64 = 0;
        let mut in_word = false;
        for c in text.chars() {
            if c.is_whitespace() {
                in_word = false;
                continue;
            }
            if !in_word {
                words += 1;
                in_word = true;
            }
            weight += match c as u32 {
                0..=0x7f => 1,
                0x80..=0x24f => 2,
                _ => 4,
            };
        }
        u32::try_from(weight.div_ceil(4).max(words)).unwrap_or(u32::MAX)
    }

    fn name(&self) -> &str {
        "estimate"
    }
}

/// Whether `model` is an OpenAI model whose tokenizer tiktoken knows.
pub fn is_openai_family(model: &str) -> bool {
    let m = model.trim().to_ascii_lowercase();
    let m = m.strip_prefix("ft:").unwrap_or(&m);
    let m = m.strip_prefix("openai/").unwrap_or(m);
    [
        "gpt-3.5", "gpt-4", "gpt-5", "chatgpt-", "o1", "o3", "o4", "gpt-oss",
    ]
    .iter()
    .any(|p| m.starts_with(p))
}

/// The counter for a model: [`TiktokenCounter`] for the OpenAI family,
/// [`EstimateCounter`] for everything else.
pub fn counter_for_model(model: &str) -> Arc<dyn TokenCounter> {
    if is_openai_family(model) {
        Arc::new(TiktokenCounter::for_model(model))
    } else {
        Arc::new(EstimateCounter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_chosen_from_the_model_name() {
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "GPT-4.1-nano",
            "o1-preview",
            "o3-mini",
            "ft:gpt-4o-mini:org::id",
            "openai/gpt-5",
        ] {
            assert_eq!(Encoding::for_model(m), Encoding::O200kBase, "{m}");
        }
        for m in ["gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "llama3.1:8b"] {
            assert_eq!(Encoding::for_model(m), Encoding::Cl100kBase, "{m}");
        }
        assert!(is_openai_family("gpt-4o-mini"));
        assert!(!is_openai_family("llama3.1:8b"));
        assert!(!is_openai_family("claude-haiku-4-5"));
        assert_eq!(counter_for_model("gpt-4o").name(), "o200k_base");
        assert_eq!(counter_for_model("qwen2.5").name(), "estimate");
    }

    #[test]
    fn tiktoken_counts_offline_with_known_values() {
        // Well-known counts: "hello world" is 2 tokens in both encodings.
        let cl = TiktokenCounter::new(Encoding::Cl100kBase);
        let o2 = TiktokenCounter::new(Encoding::O200kBase);
        assert_eq!(cl.count("hello world"), 2);
        assert_eq!(o2.count("hello world"), 2);
        assert_eq!(cl.count(""), 0);
        // Special-token text is counted as ordinary text, not rejected.
        assert!(cl.count("<|endoftext|>") > 1);
        assert_eq!(cl.name(), "cl100k_base");
    }

    #[test]
    fn estimate_is_close_to_tiktoken_on_english_and_high_elsewhere() {
        let english = "Photosynthesis is the process by which green plants use sunlight, \
            water and carbon dioxide to make glucose and oxygen. It takes place mainly in \
            the leaves, inside small structures called chloroplasts, which contain the \
            green pigment chlorophyll.";
        let cl = TiktokenCounter::new(Encoding::Cl100kBase);
        let exact = f64::from(cl.count(english));
        let est = f64::from(EstimateCounter.count(english));
        let ratio = est / exact;
        assert!((1.0..=1.4).contains(&ratio), "ratio {ratio}");

        let swahili = "Usanisinuru ni mchakato ambao mimea ya kijani hutumia mwanga wa jua.";
        let est = EstimateCounter.count(swahili);
        assert!(est >= 13, "{est}");
        assert_eq!(EstimateCounter.count("a , b"), 3);
        assert_eq!(EstimateCounter.count("   "), 0);
        assert_eq!(EstimateCounter.count("水"), 1);
        assert_eq!(EstimateCounter.count("水水水水水"), 5);
    }
}
