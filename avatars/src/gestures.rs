//! Gestures: owns the fixed gesture vocabulary the tutor can perform, the
//! automatic matching of a model's animation clips to it, and the checking
//! and merging of a teacher's overrides.
//!
//! A gesture map has every gesture as a key; its value is the clip that
//! plays it, or `None` when the model has no suitable clip.
//!
//! Matching compares *normalised* clip names: only the part after the last
//! `|` (`"Armature|Wave.001"` → `"Wave.001"`), lowercased, trailing digits
//! and punctuation dropped (`"wave"`), then every non-alphanumeric removed
//! (`"Thumbs_Up"` → `"thumbsup"`). Candidates are ranked:
//!
//! 1. the clip's name is the gesture's own name (`"Waving"` for `waving`);
//! 2. the clip's name is one of the gesture's synonyms (`"Wave"`), an
//!    earlier synonym in [`synonyms`] beating a later one;
//! 3. one *word* of the clip's name (split at punctuation, spaces and
//!    lower→upper case changes) is the gesture's name or a synonym of at
//!    least three letters (`"Wave_Hand"`, `"StandingGreeting"`).
//!
//! Ties go to the clip that comes first in the file. One clip may serve
//! several gestures. `greeting` falls back to the clip chosen for `waving`,
//! and `explaining` to the clip chosen for `talking`.

use std::collections::BTreeMap;

use thiserror::Error;

/// Every gesture the tutor can perform, in a stable order.
pub const GESTURES: &[&str] = &[
    "idle",
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
];

/// Gestures that borrow another gesture's clip when none of their own matches.
const FALLBACKS: &[(&str, &str)] = &[("greeting", "waving"), ("explaining", "talking")];

/// Shortest synonym that may match a single word of a clip name (so that
/// `"no"` and `"hi"` only match whole names).
const MIN_WORD_MATCH_LEN: usize = 3;

/// The synonyms of `gesture` (normalised, best first), or `None` if it is not
/// in [`GESTURES`].
pub fn synonyms(gesture: &str) -> Option<&'static [&'static str]> {
    Some(match gesture {
        "idle" => &["idle", "rest", "breathing", "standing"],
        "talking" => &["talk", "talking", "speak", "speaking"],
        "thinking" => &["think", "thinking", "ponder", "hmm"],
        "happy" => &["thumbsup", "happy", "joy", "smile", "celebrate"],
        "sad" => &["sad", "cry"],
        "excited" => &["jump", "excited", "dance", "cheer"],
        "greeting" => &["greet", "greeting", "bow"],
        "explaining" => &["explain", "gesture", "present"],
        "pointing" => &["point", "pointing", "indicate"],
        "nodding" => &["yes", "nod", "nodding", "agree"],
        "shaking_head" => &["no", "shake", "shakehead", "headshake", "disagree"],
        "waving" => &["wave", "waving", "hello", "hi"],
        _ => return None,
    })
}

/// A teacher's gesture override that cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum GestureError {
    /// The key is not a gesture of the vocabulary.
    #[error("\"{gesture}\" is not a gesture; the gestures are: {}.", GESTURES.join(", "))]
    UnknownGesture {
        /// The key as given.
        gesture: String,
    },
    /// The clip is not one of the model's animations.
    #[error(
        "The model has no animation clip \"{clip}\" (chosen for the gesture \"{gesture}\"); its clips are: {}.",
        list_or_none(available)
    )]
    UnknownClip {
        /// The gesture it was chosen for.
        gesture: String,
        /// The clip name as given.
        clip: String,
        /// The model's clips, in file order.
        available: Vec<String>,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Normalises a clip name for matching (see the module docs).
pub fn normalize_clip_name(name: &str) -> String {
    let base = name.rsplit('|').next().unwrap_or(name);
    let trimmed = base.trim_end_matches(|c: char| c.is_ascii_digit() || !c.is_alphanumeric());
    trimmed
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Splits a clip name into lowercase words at non-alphanumerics and at
/// lower→upper case changes; digits are dropped.
fn words(name: &str) -> Vec<String> {
    let base = name.rsplit('|').next().unwrap_or(name);
    let mut out = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in base.chars() {
        if !c.is_alphabetic() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Matches a model's clips to every gesture (see the module docs).
pub fn match_clips(clips: &[String]) -> BTreeMap<String, Option<String>> {
    let names: Vec<(String, Vec<String>)> = clips
        .iter()
        .map(|c| (normalize_clip_name(c), words(c)))
        .collect();
    let mut map: BTreeMap<String, Option<String>> = GESTURES
        .iter()
        .map(|&g| ((*g).to_owned(), best_clip(g, clips, &names)))
        .collect();
    for (gesture, from) in FALLBACKS {
        let borrowed = map.get(*from).cloned().flatten();
        if let Some(slot @ None) = map.get_mut(*gesture) {
            *slot = borrowed;
        }
    }
    map
}

/// The best clip for `gesture`: lowest (tier, synonym rank, file position).
fn best_clip(gesture: &str, clips: &[String], names: &[(String, Vec<String>)]) -> Option<String> {
    let own: String = gesture.chars().filter(|c| c.is_alphanumeric()).collect();
    let synonyms = synonyms(gesture).unwrap_or_default();
    let mut best: Option<((usize, usize, usize), &String)> = None;
    for (position, (clip, (normalized, words))) in clips.iter().zip(names).enumerate() {
        let rank = if *normalized == own {
            Some((0, 0))
        } else if let Some(s) = synonyms.iter().position(|s| s == normalized) {
            Some((1, s))
        } else if words.contains(&own) {
            Some((2, 0))
        } else {
            synonyms
                .iter()
                .position(|s| s.len() >= MIN_WORD_MATCH_LEN && words.iter().any(|w| w == s))
                .map(|s| (2, s + 1))
        };
        if let Some((tier, synonym)) = rank {
            let key = (tier, synonym, position);
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, clip));
            }
        }
    }
    best.map(|(_, clip)| clip.clone())
}

/// Checks a teacher's overrides against the vocabulary and the model's
/// clips. `None` values (gesture switched off) are always allowed.
pub fn validate_overrides(
    overrides: &BTreeMap<String, Option<String>>,
    clips: &[String],
) -> Result<(), GestureError> {
    for (gesture, clip) in overrides {
        if !GESTURES.contains(&gesture.as_str()) {
            return Err(GestureError::UnknownGesture {
                gesture: gesture.clone(),
            });
        }
        if let Some(clip) = clip
            && !clips.contains(clip)
        {
            return Err(GestureError::UnknownClip {
                gesture: gesture.clone(),
                clip: clip.clone(),
                available: clips.to_vec(),
            });
        }
    }
    Ok(())
}

/// The automatic map with the overrides applied: an override's value (a
/// clip, or `None` to switch the gesture off) replaces the automatic one.
/// Keys outside the vocabulary are ignored; call [`validate_overrides`]
/// first to report them.
pub fn merge(
    auto: &BTreeMap<String, Option<String>>,
    overrides: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, Option<String>> {
    GESTURES
        .iter()
        .map(|&g| {
            let value = match overrides.get(g) {
                Some(chosen) => chosen.clone(),
                None => auto.get(g).cloned().flatten(),
            };
            (g.to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot_clips() -> Vec<String> {
        [
            "Dance", "Death", "Idle", "Jump", "No", "Punch", "Running", "Sitting", "Standing",
            "ThumbsUp", "Walking", "WalkJump", "Wave", "Yes",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    fn get<'a>(map: &'a BTreeMap<String, Option<String>>, g: &str) -> Option<&'a str> {
        map.get(g).and_then(|v| v.as_deref())
    }

    #[test]
    fn robot_clips_map_to_the_expected_gestures() {
        let map = match_clips(&robot_clips());
        assert_eq!(map.len(), GESTURES.len());
        for g in GESTURES {
            assert!(map.contains_key(*g), "{g} missing");
        }
        assert_eq!(get(&map, "waving"), Some("Wave"));
        assert_eq!(get(&map, "nodding"), Some("Yes"));
        assert_eq!(get(&map, "shaking_head"), Some("No"));
        assert_eq!(get(&map, "idle"), Some("Idle"));
        assert_eq!(get(&map, "happy"), Some("ThumbsUp"));
        assert_eq!(get(&map, "excited"), Some("Jump"));
        // No greeting clip: falls back to the waving clip.
        assert_eq!(get(&map, "greeting"), Some("Wave"));
        // Nothing for these (and "Punch" must not become pointing).
        for g in ["talking", "thinking", "sad", "explaining", "pointing"] {
            assert_eq!(get(&map, g), None, "{g}");
        }
    }

    #[test]
    fn normalisation_strips_prefixes_suffixes_and_punctuation() {
        assert_eq!(normalize_clip_name("Armature|Wave.001"), "wave");
        assert_eq!(normalize_clip_name("Armature|mixamo.com|Idle_02"), "idle");
        assert_eq!(normalize_clip_name("Thumbs_Up"), "thumbsup");
        assert_eq!(normalize_clip_name("Shake Head "), "shakehead");
        assert_eq!(normalize_clip_name("NOD-3"), "nod");
        assert_eq!(normalize_clip_name("123"), "");
        assert_eq!(normalize_clip_name(""), "");
        assert_eq!(words("StandingGreeting_01"), vec!["standing", "greeting"]);
        assert_eq!(words("Armature|HeadShake"), vec!["head", "shake"]);
        assert_eq!(words("IDLE loop"), vec!["idle", "loop"]);
    }

    #[test]
    fn exact_name_beats_synonym_and_synonym_order_counts() {
        let clips: Vec<String> = ["Hello", "Waving", "Wave"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let map = match_clips(&clips);
        assert_eq!(get(&map, "waving"), Some("Waving"));

        let clips: Vec<String> = ["Hi", "Hello", "Wave"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(get(&match_clips(&clips), "waving"), Some("Wave"));

        // Whole-name synonyms beat word matches; word matches work.
        let clips: Vec<String> = ["Sad Idle", "Idle_Breathing", "Armature|Talk.002"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let map = match_clips(&clips);
        assert_eq!(get(&map, "idle"), Some("Sad Idle"));
        assert_eq!(get(&map, "sad"), Some("Sad Idle"));
        assert_eq!(get(&map, "talking"), Some("Armature|Talk.002"));
        // Explaining falls back to the talking clip.
        assert_eq!(get(&map, "explaining"), Some("Armature|Talk.002"));
        // Own explaining clip wins over the fallback.
        let clips: Vec<String> = ["Talk", "Present"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(get(&match_clips(&clips), "explaining"), Some("Present"));
    }

    #[test]
    fn short_synonyms_only_match_whole_names() {
        let clips: Vec<String> = ["Nothing", "Hit_No_Block", "Chief"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let map = match_clips(&clips);
        assert_eq!(get(&map, "shaking_head"), None);
        assert_eq!(get(&map, "waving"), None);
        assert!(match_clips(&[]).values().all(Option::is_none));
    }

    #[test]
    fn overrides_are_validated() {
        let clips = robot_clips();
        let mut ok = BTreeMap::new();
        ok.insert("pointing".to_owned(), Some("Punch".to_owned()));
        ok.insert("waving".to_owned(), None);
        assert_eq!(validate_overrides(&ok, &clips), Ok(()));

        let mut unknown = BTreeMap::new();
        unknown.insert("flying".to_owned(), Some("Jump".to_owned()));
        let err = validate_overrides(&unknown, &clips).expect_err("unknown gesture");
        assert!(matches!(err, GestureError::UnknownGesture { .. }));
        let message = err.to_string();
        assert!(message.contains("\"flying\""), "{message}");
        assert!(message.contains("shaking_head"), "{message}");

        let mut missing = BTreeMap::new();
        missing.insert("sad".to_owned(), Some("Cry".to_owned()));
        let err = validate_overrides(&missing, &clips).expect_err("unknown clip");
        let message = err.to_string();
        assert!(
            message.contains("\"Cry\"") && message.contains("\"sad\""),
            "{message}"
        );
        assert!(message.contains("ThumbsUp"), "{message}");
        assert!(
            validate_overrides(&missing, &[])
                .expect_err("no clips")
                .to_string()
                .contains("none")
        );
    }

    #[test]
    fn merge_applies_overrides_over_auto() {
        let clips = robot_clips();
        let auto = match_clips(&clips);
        let mut overrides = BTreeMap::new();
        overrides.insert("pointing".to_owned(), Some("Punch".to_owned()));
        overrides.insert("waving".to_owned(), None);
        overrides.insert("not_a_gesture".to_owned(), Some("Dance".to_owned()));
        let merged = merge(&auto, &overrides);
        assert_eq!(merged.len(), GESTURES.len());
        assert_eq!(get(&merged, "pointing"), Some("Punch"));
        assert_eq!(get(&merged, "waving"), None);
        assert_eq!(get(&merged, "nodding"), Some("Yes"));
        assert!(!merged.contains_key("not_a_gesture"));
        // An incomplete auto map still yields every gesture.
        assert_eq!(
            merge(&BTreeMap::new(), &BTreeMap::new()).len(),
            GESTURES.len()
        );
    }
}
