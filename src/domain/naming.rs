//! Names and label values the controller derives from tenants' input: pure.
//!
//! Every derived name must be valid for its kind whatever the input (an
//! instance may be called `shop.v2`, 253 characters long), and two different
//! inputs must never derive the same name: each name ends with a hash of the
//! full input.

use sha2::{Digest, Sha256};

/// Label put on everything the controller creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "computenest-controller";

/// The first `len` hex digits of the SHA-256 of `input`.
pub fn short_hash(input: &str, len: usize) -> String {
    let digest = hex::encode(Sha256::digest(input.as_bytes()));
    digest[..len.min(digest.len())].to_string()
}

/// `s` as a fragment of a DNS label: lower-case letters, digits and single
/// dashes, at most `max` characters, no dash at either end. May be empty.
pub fn label_fragment(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        if out.len() == max {
            break;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// `s` as a label value: at most 63 characters of `[A-Za-z0-9._-]`, starting
/// and ending with a letter or digit (Kubernetes' rule). Object names are
/// already of that alphabet; truncation may leave a `.` or `-` at the end.
pub fn label_value(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(63)
        .collect();
    kept.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Joins fragments with `-`, skipping empty ones.
pub fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("-")
}

/// Whether `s` is a valid label value.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Whether `s` is a valid DNS label (a namespace name): at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fragments_and_values() {
        assert_eq!(label_fragment("shop.v2", 24), "shop-v2");
        assert_eq!(label_fragment("a..b--c.", 24), "a-b-c");
        assert_eq!(label_fragment("-x-", 24), "x");
        assert_eq!(label_fragment("abcdef-ghi", 7), "abcdef");
        assert_eq!(label_fragment("...", 10), "");
        assert_eq!(
            label_value(&format!("{}.x", "a".repeat(62))),
            "a".repeat(62)
        );
        assert_eq!(label_value("shop.v2"), "shop.v2");
        assert_eq!(join(&["cn", "", "b"]), "cn-b");
    }

    proptest! {
        #[test]
        fn derived_names_are_always_valid(s in "[a-z0-9.\\-]{0,253}", max in 1usize..40) {
            let f = label_fragment(&s, max);
            prop_assert!(f.is_empty() || is_dns_label(&f), "{f:?}");
            prop_assert!(f.len() <= max);
            prop_assert!(is_label_value(&label_value(&s)), "{:?}", label_value(&s));
        }
    }
}
