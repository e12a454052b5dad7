//! Text analysis for keyword search: folding, tokens, stems and trigrams.
//!
//! Every function here is a pure function of its input, so a post analysed
//! when it is added gives the same terms when it is removed, on every node.

use rust_stemmers::{Algorithm, Stemmer};

/// Longest token kept, in characters: longer runs (hashes, URLs glued
/// together, keyboard mashing) are cut, so one token costs bounded work.
pub const TOKEN_CHARS_MAX: usize = 40;

/// Lowercases and folds diacritics: `ä` -> `a`, `ß` -> `ss`, `é` -> `e`,
/// `æ` -> `ae`, full-width Latin letters to ASCII. A query typed without
/// umlauts ("Schlussel") then meets a post written with them ("Schlüssel").
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        for lower in c.to_lowercase() {
            push_folded(&mut out, lower);
        }
    }
    out
}

fn push_folded(out: &mut String, c: char) {
    let mapped = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'ď' | 'đ' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ğ' => 'g',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
        'ł' | 'ľ' => 'l',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ŕ' | 'ř' => 'r',
        'ś' | 'š' | 'ş' => 's',
        'ť' | 'ţ' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'ý' | 'ÿ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        'ß' => return out.push_str("ss"),
        'æ' => return out.push_str("ae"),
        'œ' => return out.push_str("oe"),
        // Full-width ASCII (U+FF01..=U+FF5E), already lowercased above.
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        other => other,
    };
    out.push(mapped);
}

/// Splits folded text into words: runs of letters and digits, each cut at
/// [`TOKEN_CHARS_MAX`] characters.
pub fn tokens(folded: &str) -> impl Iterator<Item = &str> {
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| match t.char_indices().nth(TOKEN_CHARS_MAX) {
            Some((at, _)) => &t[..at],
            None => t,
        })
}

/// Frequent German and English words that say nothing about a post
/// (folded forms). Sorted, for a binary search.
const STOP_WORDS: [&str; 95] = [
    "a", "ab", "about", "alle", "als", "am", "an", "and", "any", "are", "as", "at", "auch", "auf",
    "aus", "be", "bei", "bin", "bis", "bitte", "but", "by", "can", "da", "das", "dass", "dem",
    "den", "der", "des", "die", "do", "du", "ein", "eine", "einem", "einen", "einer", "es", "for",
    "from", "fur", "gibt", "habe", "haben", "has", "hat", "have", "i", "ich", "if", "im", "in",
    "is", "ist", "it", "ja", "kann", "me", "mein", "meine", "mir", "mit", "my", "nach", "noch",
    "of", "on", "or", "our", "please", "sie", "sind", "so", "some", "that", "the", "this", "to",
    "und", "uns", "unser", "up", "vom", "von", "was", "we", "wer", "wie", "wir", "with", "you",
    "zu", "zum", "zur",
];

pub fn is_stop_word(token: &str) -> bool {
    STOP_WORDS.binary_search(&token).is_ok()
}

/// Which stemmers a text's words go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Language {
    German,
    English,
    /// Unknown: both stems are kept.
    Both,
}

/// Marker words for [`guess_language`] (folded; no overlap between lists).
const GERMAN_MARKERS: [&str; 24] = [
    "auch", "auf", "bitte", "das", "dem", "den", "der", "die", "ein", "eine", "einen", "fur",
    "habe", "hat", "ich", "ist", "mit", "nicht", "noch", "sind", "und", "von", "wer", "wir",
];
const ENGLISH_MARKERS: [&str; 24] = [
    "a", "and", "any", "are", "can", "for", "from", "has", "have", "i", "is", "it", "my", "not",
    "of", "our", "please", "that", "the", "this", "to", "we", "who", "with",
];

/// A cheap guess from function words: whichever language has more markers
/// among the tokens, or [`Language::Both`] on a tie (short queries).
pub fn guess_language<'a>(tokens: impl Iterator<Item = &'a str>) -> Language {
    let (mut de, mut en) = (0usize, 0usize);
    for t in tokens {
        de += usize::from(GERMAN_MARKERS.contains(&t));
        en += usize::from(ENGLISH_MARKERS.contains(&t));
    }
    match de.cmp(&en) {
        std::cmp::Ordering::Greater => Language::German,
        std::cmp::Ordering::Less => Language::English,
        std::cmp::Ordering::Equal => Language::Both,
    }
}

/// The German and English Snowball stemmers (a stemmer is a function
/// pointer: cheap to hold, but not `Debug`).
pub struct Stemmers {
    german: Stemmer,
    english: Stemmer,
}

impl std::fmt::Debug for Stemmers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stemmers { german, english }")
    }
}

impl Default for Stemmers {
    fn default() -> Self {
        Stemmers {
            german: Stemmer::create(Algorithm::German),
            english: Stemmer::create(Algorithm::English),
        }
    }
}

impl Clone for Stemmers {
    fn clone(&self) -> Self {
        Stemmers::default()
    }
}

impl Stemmers {
    /// The distinct stems of one folded token for `lang` (one or two).
    pub fn stems(&self, token: &str, lang: Language) -> Stems {
        let de = || self.german.stem(token).into_owned();
        let en = || self.english.stem(token).into_owned();
        match lang {
            Language::German => Stems::One(de()),
            Language::English => Stems::One(en()),
            Language::Both => {
                let (d, e) = (de(), en());
                if d == e {
                    Stems::One(d)
                } else {
                    Stems::Two(d, e)
                }
            }
        }
    }
}

/// One or two stems of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stems {
    One(String),
    Two(String, String),
}

impl Stems {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (a, b) = match self {
            Stems::One(a) => (a.as_str(), None),
            Stems::Two(a, b) => (a.as_str(), Some(b.as_str())),
        };
        std::iter::once(a).chain(b)
    }
}

/// A character trigram packed into an integer (three 21-bit code points).
pub type Trigram = u64;

/// The trigrams of a stem, in order, repeats included. A stem shorter than
/// three characters has none: its word term alone carries it.
pub fn trigrams(stem: &str, out: &mut Vec<Trigram>) {
    let chars: Vec<u64> = stem.chars().map(|c| u64::from(u32::from(c))).collect();
    for w in chars.windows(3) {
        out.push((w[0] << 42) | (w[1] << 21) | w[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn folding_maps_umlauts_sharp_s_and_full_width() {
        assert_eq!(
            fold("Schlüssel GRÜßE Ærø Ｌｅｉｔｅｒ"),
            "schlussel grusse aero leiter"
        );
    }

    #[test]
    fn tokens_split_on_punctuation_and_are_capped() {
        let long = "x".repeat(100);
        let text = format!("gas-leak, 3rd floor! {long}");
        let t: Vec<&str> = tokens(&text).collect();
        assert_eq!(&t[..4], &["gas", "leak", "3rd", "floor"]);
        assert_eq!(t[4].chars().count(), TOKEN_CHARS_MAX);
    }
}
