//! Domain conditions: exact names, suffixes and keywords, all case-insensitive.
//!
//! Names are stored lower-case without a trailing dot. A query name is normalised the same way
//! into a stack buffer (no allocation for any valid DNS name), then looked up once per label:
//! `a.b.example.com` costs four hash look-ups against the suffix sets whatever their size.
//! Keywords go through one Aho-Corasick automaton per rule.

use std::collections::HashSet;

use aho_corasick::AhoCorasick;

/// The longest name normalised on the stack; longer ones (never valid in DNS) are copied.
const STACK_NAME: usize = 256;

/// A query name, lower-cased and without its trailing dot.
pub(crate) struct Name<'q> {
    buf: [u8; STACK_NAME],
    len: usize,
    long: Option<String>,
    raw: &'q str,
}

impl<'q> Name<'q> {
    pub(crate) fn new(raw: &'q str) -> Name<'q> {
        let trimmed = raw.strip_suffix('.').unwrap_or(raw);
        let mut name = Name {
            buf: [0; STACK_NAME],
            len: 0,
            long: None,
            raw,
        };
        if trimmed.len() <= STACK_NAME {
            name.buf[..trimmed.len()].copy_from_slice(trimmed.as_bytes());
            name.buf[..trimmed.len()].make_ascii_lowercase();
            name.len = trimmed.len();
        } else {
            name.long = Some(trimmed.to_ascii_lowercase());
        }
        name
    }

    pub(crate) fn as_str(&self) -> &str {
        match &self.long {
            Some(s) => s,
            // ASCII lower-casing of valid UTF-8 is valid UTF-8, so this never falls back.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or(self.raw),
        }
    }
}

/// Normalises one configured name; `what` names the kind for the error.
pub(crate) fn normalise(entry: &str, what: &str) -> Result<String, String> {
    let name = entry.trim().strip_suffix('.').unwrap_or(entry.trim());
    if name.is_empty() || name == "." {
        return Err(format!("empty {what}"));
    }
    if !name.is_ascii() {
        return Err(format!(
            "{entry:?} is not ASCII: write internationalised names in their xn-- (punycode) form"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_ascii_whitespace() || "/:@*?[]{}\\\"'".contains(*c))
    {
        let hint = if c == '*' {
            " (no wildcards: `domain_suffixes` matches a name and its subdomains)"
        } else {
            ""
        };
        return Err(format!("{entry:?}: {what} cannot contain {c:?}{hint}"));
    }
    if name.contains("..") {
        return Err(format!("{entry:?}: empty label"));
    }
    Ok(name.to_ascii_lowercase())
}

/// One rule's domain condition: it matches when any of its entries does.
#[derive(Debug, Default)]
pub(crate) struct DomainMatcher {
    exact: HashSet<Box<str>>,
    /// `example.com`: the name itself and every subdomain.
    name_or_sub: HashSet<Box<str>>,
    /// `.example.com`: subdomains only.
    sub_only: HashSet<Box<str>>,
    keywords: Option<AhoCorasick>,
}

impl DomainMatcher {
    pub(crate) fn add_exact(&mut self, name: String) {
        self.exact.insert(name.into());
    }

    /// `suffix` is normalised; a leading dot restricts it to subdomains.
    pub(crate) fn add_suffix(&mut self, suffix: String) {
        match suffix.strip_prefix('.') {
            Some(rest) => self.sub_only.insert(rest.into()),
            None => self.name_or_sub.insert(suffix.into()),
        };
    }

    pub(crate) fn set_keywords(&mut self, keywords: &[String]) -> Result<(), String> {
        if keywords.is_empty() {
            return Ok(());
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(keywords)
            .map_err(|e| e.to_string())?;
        self.keywords = Some(ac);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.name_or_sub.is_empty()
            && self.sub_only.is_empty()
            && self.keywords.is_none()
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        if self.exact.contains(name) || self.name_or_sub.contains(name) {
            return true;
        }
        if !self.name_or_sub.is_empty() || !self.sub_only.is_empty() {
            for (i, _) in name.match_indices('.') {
                let parent = &name[i + 1..];
                if self.name_or_sub.contains(parent) || self.sub_only.contains(parent) {
                    return true;
                }
            }
        }
        self.keywords.as_ref().is_some_and(|ac| ac.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(exact: &[&str], suffixes: &[&str], keywords: &[&str]) -> DomainMatcher {
        let mut m = DomainMatcher::default();
        for e in exact {
            m.add_exact(normalise(e, "domain").unwrap());
        }
        for s in suffixes {
            m.add_suffix(normalise(s, "suffix").unwrap());
        }
        let k: Vec<String> = keywords
            .iter()
            .map(|k| normalise(k, "keyword").unwrap())
            .collect();
        m.set_keywords(&k).unwrap();
        m
    }

    fn hit(m: &DomainMatcher, q: &str) -> bool {
        m.matches(Name::new(q).as_str())
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(Name::new("WWW.Example.COM.").as_str(), "www.example.com");
        assert_eq!(Name::new("example.com").as_str(), "example.com");
        let long = "a.".repeat(200) + "Example.com";
        assert_eq!(Name::new(&long).as_str(), long.to_ascii_lowercase());
        assert_eq!(normalise("Example.COM.", "domain").unwrap(), "example.com");
        assert_eq!(normalise(".Example.com", "suffix").unwrap(), ".example.com");
        assert!(normalise("", "domain").is_err());
        assert!(normalise(".", "domain").is_err());
        assert!(normalise("*.example.com", "domain")
            .unwrap_err()
            .contains("no wildcards"));
        assert!(normalise("bücher.example", "domain")
            .unwrap_err()
            .contains("punycode"));
        assert!(normalise("a b.example", "domain").is_err());
        assert!(normalise("a..example", "domain").is_err());
        assert!(normalise("example.com:443", "domain").is_err());
    }

    #[test]
    fn exact_names() {
        let m = matcher(&["example.com"], &[], &[]);
        assert!(hit(&m, "example.com"));
        assert!(hit(&m, "EXAMPLE.com."));
        assert!(!hit(&m, "www.example.com"));
        assert!(!hit(&m, "example.com.evil"));
        assert!(!hit(&m, "xexample.com"));
    }

    #[test]
    fn suffixes_respect_label_boundaries() {
        let m = matcher(&[], &["example.com"], &[]);
        assert!(hit(&m, "example.com"));
        assert!(hit(&m, "www.example.com"));
        assert!(hit(&m, "a.b.Example.Com."));
        assert!(!hit(&m, "badexample.com"));
        assert!(!hit(&m, "example.com.evil"));
        assert!(!hit(&m, "com"));

        let m = matcher(&[], &[".example.com"], &[]);
        assert!(!hit(&m, "example.com"), "leading dot: subdomains only");
        assert!(hit(&m, "www.example.com"));
        assert!(!hit(&m, "badexample.com"));

        let m = matcher(&[], &["ir"], &[]);
        assert!(hit(&m, "example.ir"));
        assert!(hit(&m, "ir"));
        assert!(!hit(&m, "example.iran"));
    }

    #[test]
    fn keywords_are_substrings() {
        let m = matcher(&[], &[], &["ads", "Track"]);
        assert!(hit(&m, "ads.example"));
        assert!(hit(&m, "myads.example"));
        assert!(hit(&m, "TRACKER.example"));
        assert!(!hit(&m, "example.com"));
    }

    #[test]
    fn entries_are_alternatives() {
        let m = matcher(&["a.example"], &["b.example"], &["zzz"]);
        assert!(hit(&m, "a.example"));
        assert!(hit(&m, "x.b.example"));
        assert!(hit(&m, "zzz.example"));
        assert!(!hit(&m, "c.example"));
        assert!(DomainMatcher::default().is_empty());
        assert!(!m.is_empty());
    }
}
