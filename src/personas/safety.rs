//! Safety checks on a question, before any retrieval or model call: the
//! categories always refused on a children's platform, the teacher's
//! `blocked_topics`, and greetings (answered without the material).
//!
//! Matching is on normalised words (lower case, letters and digits), with
//! phrases matched as whole-word sequences, so "Essex" never matches "sex"
//! and a biology class can still ask about "sex chromosomes" (only explicit
//! phrases are listed).

use bwenge_search::analyze_query;

/// Why a question is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// One of the always-refused categories.
    Unsafe(Category),
    /// A topic the teacher blocked for this persona.
    Blocked(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    SelfHarm,
    Sexual,
    Weapons,
    Drugs,
    Hate,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::SelfHarm => "self_harm",
            Category::Sexual => "sexual",
            Category::Weapons => "weapons",
            Category::Drugs => "drugs",
            Category::Hate => "hate",
        }
    }
}

/// Phrases (as word sequences) per category. Kept short and explicit: a
/// false refusal of a real school question is a failure too.
const ALWAYS_REFUSED: &[(Category, &[&str])] = &[
    (
        Category::SelfHarm,
        &[
            "kill myself",
            "killing myself",
            "suicide",
            "suicidal",
            "self harm",
            "hurt myself",
            "harm myself",
            "cut myself",
            "end my life",
            "want to die",
        ],
    ),
    (
        Category::Sexual,
        &[
            "porn",
            "porno",
            "pornography",
            "nude",
            "nudes",
            "naked pictures",
            "naked photos",
            "have sex",
            "having sex",
            "sexting",
            "sexy",
        ],
    ),
    (
        Category::Weapons,
        &[
            "make a bomb",
            "build a bomb",
            "make bombs",
            "make explosives",
            "build explosives",
            "make a gun",
            "build a gun",
            "buy a gun",
            "how to kill",
            "kill someone",
            "poison someone",
            "hurt someone",
        ],
    ),
    (
        Category::Drugs,
        &[
            "cocaine",
            "heroin",
            "meth",
            "methamphetamine",
            "get high",
            "buy drugs",
            "sell drugs",
            "smoke weed",
            "marijuana",
        ],
    ),
    (
        Category::Hate,
        &[
            "racist joke",
            "racist jokes",
            "hate speech",
            "ethnic cleansing is good",
        ],
    ),
];

const GREETINGS: &[&str] = &[
    "hello",
    "hi",
    "hey",
    "hiya",
    "good morning",
    "good afternoon",
    "good evening",
    "greetings",
    "bonjour",
    "salut",
    "bonsoir",
    "muraho",
    "mwaramutse",
    "mwiriwe",
    "amakuru",
    "habari",
    "jambo",
    "hujambo",
    "mambo",
    "salaam",
];

/// Lower-cased words of `text` (letters and digits; everything else splits).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn contains_phrase(words: &[String], phrase: &str) -> bool {
    let p: Vec<&str> = phrase.split(' ').collect();
    words
        .windows(p.len())
        .any(|w| w.iter().zip(&p).all(|(a, b)| a == b))
}

/// The refusal this question calls for, if any.
pub fn check(question: &str, blocked_topics: &[String]) -> Option<Refusal> {
    let w = words(question);
    for (category, phrases) in ALWAYS_REFUSED {
        if phrases.iter().any(|p| contains_phrase(&w, p)) {
            return Some(Refusal::Unsafe(*category));
        }
    }
    let terms = analyze_query(question);
    for topic in blocked_topics {
        let topic_terms = analyze_query(topic);
        if !topic_terms.is_empty() && topic_terms.iter().all(|t| terms.contains(t)) {
            return Some(Refusal::Blocked(topic.clone()));
        }
    }
    None
}

/// True when the question is only a greeting (perhaps with the persona's
/// name, or "how are you"), with nothing to look up.
pub fn is_greeting(question: &str, persona_name: &str) -> bool {
    let mut w = words(question);
    let name = words(persona_name);
    w.retain(|x| !name.contains(x));
    if w.is_empty() || w.len() > 6 {
        return false;
    }
    let mut rest = w.as_slice();
    let mut greeted = false;
    'outer: while !rest.is_empty() {
        for g in GREETINGS {
            let parts: Vec<&str> = g.split(' ').collect();
            if rest.len() >= parts.len() && rest.iter().zip(&parts).all(|(a, b)| a == b) {
                rest = &rest[parts.len()..];
                greeted = true;
                continue 'outer;
            }
        }
        // Small talk that may follow a greeting.
        if greeted
            && [
                "how", "are", "you", "there", "everyone", "teacher", "sir", "madam", "miss",
            ]
            .contains(&rest[0].as_str())
        {
            rest = &rest[1..];
            continue;
        }
        return false;
    }
    greeted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_refused_phrases_match_whole_words_only() {
        assert_eq!(
            check("how do I make a bomb at home", &[]),
            Some(Refusal::Unsafe(Category::Weapons))
        );
        assert_eq!(
            check("I want to kill myself", &[]),
            Some(Refusal::Unsafe(Category::SelfHarm))
        );
        assert_eq!(check("What is the population of Essex?", &[]), None);
        assert_eq!(check("Explain sex chromosomes in humans", &[]), None);
        assert_eq!(
            check("What is an explosive reaction in chemistry?", &[]),
            None
        );
    }

    #[test]
    fn blocked_topics_match_on_stems() {
        let blocked = vec!["politics".to_owned(), "football clubs".to_owned()];
        assert_eq!(
            check("Which political party is the best?", &blocked),
            Some(Refusal::Blocked("politics".to_owned()))
        );
        assert_eq!(
            check("Tell me about politics in Rwanda", &blocked),
            Some(Refusal::Blocked("politics".to_owned()))
        );
        assert_eq!(
            check("Which football club has the most fans?", &blocked),
            Some(Refusal::Blocked("football clubs".to_owned()))
        );
        assert_eq!(check("How does lift work on a wing?", &blocked), None);
    }

    #[test]
    fn greetings_are_recognised_and_questions_are_not() {
        assert!(is_greeting("Hello!", "Ada"));
        assert!(is_greeting("hi Ada, how are you?", "Ada"));
        assert!(is_greeting("Good morning teacher", "Ada"));
        assert!(is_greeting("Muraho", "Ada"));
        assert!(!is_greeting("hello, what is lift?", "Ada"));
        assert!(!is_greeting("What is a boundary layer?", "Ada"));
        assert!(!is_greeting("", "Ada"));
    }
}
