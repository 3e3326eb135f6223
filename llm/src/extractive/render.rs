//! Writing: the chosen sentences as the answer's text — a per-language
//! lead-in, each sentence with its passage's `[n]` — the passages cited, the
//! animation (pointing when a figure or table is cited), and the text cut
//! into streamed pieces.

use super::score::Sentence;
use crate::i18n::Lang;
use crate::types::{Animation, Emotion, Gesture};

const FIGURE_WORDS: &[&str] = &[
    "figure",
    "figures",
    "fig",
    "figs",
    "table",
    "tables",
    "diagram",
    "diagrams",
    "chart",
    "charts",
    "graph",
    "graphs",
    "illustration",
    "illustrations",
    "tableau",
    "tableaux",
    "schema",
    "schemas",
    "diagramme",
    "diagrammes",
    "graphique",
    "graphiques",
    "picha",
    "jedwali",
    "mchoro",
    "michoro",
    "ishusho",
    "imbonerahamwe",
    "igishushanyo",
    "ibishushanyo",
];

/// The answer's text for the `chosen` sentences (in that order) and the
/// passage numbers cited, in order of first citation.
pub(super) fn write(lang: Lang, sentences: &[Sentence], chosen: &[usize]) -> (String, Vec<usize>) {
    let (one, many) = lead_ins(lang);
    let lead = if chosen.len() == 1 { one } else { many };
    let mut text = String::from(lead);
    let mut cited = Vec::new();
    for &idx in chosen {
        let s = &sentences[idx];
        text.push(' ');
        text.push_str(&with_marker(&s.text, s.n));
        if !cited.contains(&s.n) {
            cited.push(s.n);
        }
    }
    (text, cited)
}

/// Pointing when a chosen sentence mentions a figure, table or diagram;
/// explaining otherwise.
pub(super) fn animation(sentences: &[Sentence], chosen: &[usize]) -> Animation {
    let points = chosen.iter().any(|&i| {
        sentences[i]
            .words
            .iter()
            .any(|w| FIGURE_WORDS.contains(&w.as_str()))
    });
    if points {
        Animation::new(Gesture::Pointing, Emotion::Neutral)
    } else {
        Animation::new(Gesture::Explaining, Emotion::Neutral)
    }
}

fn lead_ins(lang: Lang) -> (&'static str, &'static str) {
    match lang {
        Lang::En => ("In short:", "Here is what your course material says:"),
        Lang::Fr => ("En bref :", "Voici ce que dit ton support de cours :"),
        Lang::Sw => (
            "Kwa ufupi:",
            "Hivi ndivyo maelezo ya somo lako yanavyosema:",
        ),
        Lang::Rw => ("Muri make:", "Dore ibyo isomo ryawe rivuga:"),
    }
}

/// Puts ` [n]` before the sentence's final punctuation (or after it, with a
/// full stop added, when it has none).
fn with_marker(sentence: &str, n: usize) -> String {
    let s = sentence.trim();
    let body = s.trim_end_matches(['.', '!', '?', '…', ':', ';']);
    let punct = &s[body.len()..];
    let punct = if punct.is_empty() || punct.starts_with([':', ';']) {
        "."
    } else {
        punct
    };
    format!("{} [{n}]{punct}", body.trim_end())
}

/// Splits text into pieces of `n` words, each keeping the whitespace that
/// follows it, so the pieces concatenate to the text.
pub(super) fn word_groups(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut words = 0;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if in_word {
                words += 1;
                in_word = false;
            }
        } else {
            if !in_word && words >= n {
                out.push(std::mem::take(&mut cur));
                words = 0;
            }
            in_word = true;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_go_before_final_punctuation() {
        assert_eq!(with_marker("Plants grow.", 2), "Plants grow [2].");
        assert_eq!(with_marker("Why?", 1), "Why [1]?");
        assert_eq!(with_marker("A list:", 1), "A list [1].");
        assert_eq!(with_marker("No stop", 3), "No stop [3].");
        assert_eq!(word_groups("a b  c d e", 2), vec!["a b  ", "c d ", "e"]);
        assert_eq!(word_groups("a b  c d e", 2).concat(), "a b  c d e");
    }
}
