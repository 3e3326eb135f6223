//! The Cranfield collection's files (`../shared/data/cranfield`), parsed.

use std::collections::HashMap;

/// One abstract.
pub struct Doc {
    pub id: u32,
    pub title: String,
    pub text: String,
}

/// `.I` records with `.T` title and `.W` abstract (`.A`, `.B` ignored).
pub fn parse_docs(raw: &str) -> Vec<Doc> {
    let mut docs = Vec::new();
    for rec in raw.split("\n.I ").map(|r| r.trim_start_matches(".I ")) {
        let mut lines = rec.lines();
        let Some(id) = lines.next().and_then(|l| l.trim().parse::<u32>().ok()) else {
            continue;
        };
        let (mut title, mut text, mut field) = (String::new(), String::new(), "");
        for line in lines {
            if line.starts_with('.') && line.len() == 2 {
                field = line;
                continue;
            }
            let target = match field {
                ".T" => &mut title,
                ".W" => &mut text,
                _ => continue,
            };
            target.push_str(line.trim());
            target.push(' ');
        }
        docs.push(Doc {
            id,
            title: title.trim().to_owned(),
            text: text.trim().to_owned(),
        });
    }
    docs
}

/// Query texts in file order: position i (from 1) is query number i of cranqrel.
pub fn parse_queries(raw: &str) -> Vec<String> {
    raw.split("\n.I ")
        .filter_map(|rec| {
            let (_, text) = rec.split_once("\n.W")?;
            Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// query number → (doc id → gain): 5 - code for codes 1-4, 0 for -1.
pub fn parse_qrels(raw: &str) -> HashMap<u32, HashMap<u32, f64>> {
    let mut out: HashMap<u32, HashMap<u32, f64>> = HashMap::new();
    for line in raw.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [q, d, code] = f[..] else { continue };
        let (Ok(q), Ok(d), Ok(code)) = (q.parse::<u32>(), d.parse::<u32>(), code.parse::<i32>())
        else {
            continue;
        };
        let gain = if (1..=4).contains(&code) {
            f64::from(5 - code)
        } else {
            0.0
        };
        out.entry(q).or_default().insert(d, gain);
    }
    out
}
