//! Sentences: a passage cut into sentences. Blank lines and bullet lines
//! separate; lines broken mid-sentence (PDF text) are joined; short
//! unpunctuated lines followed by a capitalised line are headings; a
//! sentence ends at `.`/`!`/`?`/`…` followed by whitespace and not by a
//! lower-case word, and not after an abbreviation, an initial or a list
//! number. Pure functions over strings.

const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "eg", "ie", "fig", "figs", "eq", "eqs", "no", "nos", "vol", "vols", "p", "pp",
    "ch", "chap", "sec", "tab", "dr", "mr", "mrs", "ms", "prof", "st", "vs", "cf", "approx", "al",
    "inc", "ltd", "jr", "sr", "dept", "mt", "ca", "resp", "ex", "env", "mme", "mlle", "av", "apr",
    "j.-c", "k.m", "n.k", "nk", "op", "ed", "eds", "min", "max", "gen", "col", "art", "viz",
];

/// Splits a passage into sentences.
pub(super) fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for segment in segments(text) {
        split_segment(&segment, &mut out);
    }
    out.retain(|s| s.chars().any(char::is_alphanumeric));
    out
}

fn is_bullet(line: &str) -> bool {
    let t = line.trim_start();
    if t.starts_with(['-', '•', '*', '–', '—', '▪', '◦']) {
        return true;
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && digits < 4 && {
        let rest = &t[digits..];
        (rest.starts_with(". ") || rest.starts_with(") ")) && rest.len() > 2
    }
}

pub(super) fn ends_sentence(line: &str) -> bool {
    line.trim_end()
        .trim_end_matches(['"', '\'', ')', ']', '»', '”', '’'])
        .ends_with(['.', '!', '?', '…', ':', ';'])
}

/// Paragraphs, bullet items and headings as separate segments; broken
/// lines joined.
fn segments(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let lines: Vec<&str> = para
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut cur = String::new();
        for (i, line) in lines.iter().enumerate() {
            let next_starts_upper = lines
                .get(i + 1)
                .and_then(|l| l.chars().next())
                .is_some_and(char::is_uppercase);
            if is_bullet(line) && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            let item = if is_bullet(line) {
                line.trim_start_matches(['-', '•', '*', '–', '—', '▪', '◦'])
                    .trim_start()
            } else {
                line
            };
            cur.push_str(item);
            let heading = cur == *item
                && !ends_sentence(line)
                && line.split_whitespace().count() < 8
                && next_starts_upper;
            if heading {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

fn split_segment(seg: &str, out: &mut Vec<String>) {
    let chars: Vec<(usize, char)> = seg.char_indices().collect();
    let mut start = 0usize; // byte offset of the current sentence
    let mut i = 0usize;
    while i < chars.len() {
        let (_, c) = chars[i];
        if !matches!(c, '.' | '!' | '?' | '…' | '。') {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len()
            && matches!(
                chars[j].1,
                '.' | '!' | '?' | '…' | '"' | '\'' | ')' | ']' | '»' | '”' | '’'
            )
        {
            j += 1;
        }
        if j < chars.len() && !chars[j].1.is_whitespace() {
            i = j;
            continue;
        }
        let mut k = j;
        while k < chars.len() && chars[k].1.is_whitespace() {
            k += 1;
        }
        let end_byte = chars.get(j).map_or(seg.len(), |&(b, _)| b);
        if k < chars.len() {
            let next = chars[k].1;
            // A lower-case word, a closing quote or bracket, or more
            // punctuation: the sentence goes on ("approx. three", "« Oui ! » dit-il").
            if next.is_lowercase() || matches!(next, '»' | '”' | '’' | ')' | ']' | ',' | ';' | ':')
            {
                i = j;
                continue;
            }
            if c == '.' && j == i + 1 {
                let word_start = seg[start..chars[i].0]
                    .rfind(char::is_whitespace)
                    .map_or(start, |p| start + p + 1);
                let token = seg[word_start..chars[i].0]
                    .trim_start_matches(['(', '"', '\'', '«', '“'])
                    .to_lowercase();
                let is_abbrev = ABBREVIATIONS.contains(&token.as_str());
                let is_initial = token.chars().count() == 1
                    && seg[word_start..]
                        .chars()
                        .next()
                        .is_some_and(char::is_uppercase);
                let is_list_number = !token.is_empty()
                    && token.chars().all(|c| c.is_ascii_digit())
                    && seg[start..word_start].trim().is_empty();
                if is_abbrev || is_initial || is_list_number {
                    i = j;
                    continue;
                }
            }
        }
        let sentence = seg[start..end_byte].trim();
        if !sentence.is_empty() {
            out.push(sentence.to_owned());
        }
        start = chars.get(k).map_or(seg.len(), |&(b, _)| b);
        i = k;
    }
    let rest = seg[start.min(seg.len())..].trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_splitting_handles_abbreviations_decimals_and_layout() {
        let text = "Water boils at 100 °C. It boils at about 3.5 degrees lower on \
                    a mountain, e.g. on Mt. Kenya. See Fig. 2 for the curve! Dr. Amani \
                    measured it, cf. Table 1. J. K. Nyerere spoke. Ends here";
        assert_eq!(
            split_sentences(text),
            vec![
                "Water boils at 100 °C.",
                "It boils at about 3.5 degrees lower on a mountain, e.g. on Mt. Kenya.",
                "See Fig. 2 for the curve!",
                "Dr. Amani measured it, cf. Table 1.",
                "J. K. Nyerere spoke.",
                "Ends here",
            ]
        );
        let layout = "Photosynthesis\nPlants make food from\nlight and water.\n\n\
                      - Roots take up water.\n- Leaves take in carbon dioxide.\n\
                      1. First step. 2. Second step.";
        assert_eq!(
            split_sentences(layout),
            vec![
                "Photosynthesis",
                "Plants make food from light and water.",
                "Roots take up water.",
                "Leaves take in carbon dioxide.",
                "1. First step.",
                "2. Second step.",
            ]
        );
        assert_eq!(
            split_sentences("Il est là… Puis « Bonjour ! » dit-il. Fin."),
            vec!["Il est là…", "Puis « Bonjour ! » dit-il.", "Fin."]
        );
        assert!(split_sentences("  ...  ").is_empty());
    }
}
