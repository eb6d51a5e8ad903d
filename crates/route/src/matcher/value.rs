//! Compiled `StringMatcher`s and regexes, shared by header and query
//! matchers (and by rewrites, for the regex part).

use regex::Regex;
use strait_model::{StringMatch, StringPattern};

use crate::RouteError;

/// A compiled `StringMatcher`. Case-insensitive variants hold the pattern
/// lower-cased and compare ASCII case-insensitively, as Envoy does.
#[derive(Debug, Clone)]
pub(crate) enum ValueMatcher {
    Exact(Box<str>, bool),
    Prefix(Box<str>, bool),
    Suffix(Box<str>, bool),
    Contains(Box<str>, bool),
    /// Anchored at both ends: Envoy's regexes match the whole value.
    Regex(Regex),
}

impl ValueMatcher {
    pub(crate) fn compile(
        config: &StringMatch,
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        let ic = config.ignore_case;
        let text = |s: &str| -> Box<str> {
            if ic {
                s.to_ascii_lowercase().into()
            } else {
                s.into()
            }
        };
        Ok(match &config.pattern {
            StringPattern::Exact(s) => Self::Exact(text(s), ic),
            StringPattern::Prefix(s) => Self::Prefix(text(s), ic),
            StringPattern::Suffix(s) => Self::Suffix(text(s), ic),
            StringPattern::Contains(s) => Self::Contains(text(s), ic),
            StringPattern::Regex(pattern) => Self::Regex(full_match_regex(pattern, at)?),
        })
    }

    /// Pure; does not allocate.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let v = value.as_bytes();
        let eq = |a: &[u8], b: &[u8], ic: bool| {
            if ic {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            Self::Exact(p, ic) => eq(v, p.as_bytes(), *ic),
            Self::Prefix(p, ic) => v
                .get(..p.len())
                .is_some_and(|head| eq(head, p.as_bytes(), *ic)),
            Self::Suffix(p, ic) => v
                .len()
                .checked_sub(p.len())
                .is_some_and(|start| eq(&v[start..], p.as_bytes(), *ic)),
            Self::Contains(p, ic) => {
                let p = p.as_bytes();
                p.is_empty() || v.windows(p.len()).any(|w| eq(w, p, *ic))
            }
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// Compiles `pattern` so that it must match a whole input, as Envoy's
/// `safe_regex` does everywhere it matches (paths, headers, query values).
pub(crate) fn full_match_regex(
    pattern: &str,
    at: &dyn Fn() -> String,
) -> Result<Regex, RouteError> {
    regex(&format!(r"\A(?:{pattern})\z"), pattern, at)
}

/// Compiles `pattern` as written (for rewrites, which replace every match).
pub(crate) fn search_regex(pattern: &str, at: &dyn Fn() -> String) -> Result<Regex, RouteError> {
    regex(pattern, pattern, at)
}

fn regex(source: &str, pattern: &str, at: &dyn Fn() -> String) -> Result<Regex, RouteError> {
    Regex::new(source).map_err(|e| RouteError::InvalidRegex {
        at: at(),
        pattern: pattern.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: StringPattern, ignore_case: bool) -> ValueMatcher {
        ValueMatcher::compile(
            &StringMatch {
                pattern,
                ignore_case,
            },
            &|| "t".to_owned(),
        )
        .expect("compiles")
    }

    #[test]
    fn string_matchers() {
        use StringPattern::*;
        let s = |v: &str| v.to_owned();
        let cases: &[(StringPattern, bool, &str, bool)] = &[
            (Exact(s("abc")), false, "abc", true),
            (Exact(s("abc")), false, "ABC", false),
            (Exact(s("abc")), true, "ABC", true),
            (Exact(s("")), false, "", true),
            (Exact(s("")), false, "x", false),
            (Prefix(s("abcd")), false, "abcdxyz", true),
            (Prefix(s("abcd")), false, "abcxyz", false),
            (Prefix(s("ABcd")), true, "abCDxyz", true),
            (Prefix(s("abcd")), false, "abc", false),
            (Suffix(s("abcd")), false, "xyzabcd", true),
            (Suffix(s("abcd")), false, "xyzbcd", false),
            (Suffix(s("abcd")), true, "XYZABCD", true),
            (Suffix(s("abcd")), false, "bcd", false),
            (Contains(s("abcd")), false, "xyzabcdpqr", true),
            (Contains(s("abcd")), false, "xyzbcdpqr", false),
            (Contains(s("aBcD")), true, "xyzAbCdpqr", true),
            (Contains(s("abcd")), false, "xyzAbCdpqr", false),
            // Envoy's regexes match the whole value.
            (Regex(s(r"\d{3}")), false, "123", true),
            (Regex(s(r"\d{3}")), false, "1234", false),
            (Regex(s(r"v\d")), false, "xv1", false),
            (Regex(s("a|b")), false, "b", true),
            (Regex(s("a|b")), false, "ab", false),
            // ignore_case has no effect on regexes.
            (Regex(s("abc")), true, "ABC", false),
            (Regex(s("(?i)abc")), false, "ABC", true),
            (Exact(s("é")), true, "É", false),
        ];
        for (pattern, ic, value, want) in cases {
            assert_eq!(
                m(pattern.clone(), *ic).matches(value),
                *want,
                "{pattern:?} ic={ic} {value:?}"
            );
        }
    }

    #[test]
    fn bad_regex_names_where() {
        let err = full_match_regex("(", &|| "here".to_owned()).expect_err("invalid");
        assert!(
            matches!(&err, RouteError::InvalidRegex { at, pattern, .. } if at == "here" && pattern == "(")
        );
    }
}
