//! Formats of what the healthcare domain accepts. Everything is bounded and
//! structural: there is no field where free text (or clinical content) fits.

use super::{ID_LEN_MAX, POINTER_BYTES_MAX, PSEUDONYM_LEN_MAX, PSEUDONYM_LEN_MIN};

fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A patient pseudonym: 8-64 characters of `A-Z a-z 0-9 _ -` with at least
/// one digit. The character set rules out names with spaces; the digit rules
/// out plain words and names (`JohnSmith`), while every usual token format
/// (UUID, ULID, hexadecimal HMAC) has digits. A random base64url token can
/// lack one (about 2% of 22-character tokens): the custodian draws again.
pub fn valid_pseudonym(s: &str) -> bool {
    (PSEUDONYM_LEN_MIN..=PSEUDONYM_LEN_MAX).contains(&s.len())
        && s.bytes().all(token_byte)
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// A record or consent id: 1-64 characters of `A-Z a-z 0-9 _ -`.
pub fn valid_id(s: &str) -> bool {
    (1..=ID_LEN_MAX).contains(&s.len()) && s.bytes().all(token_byte)
}

/// A SHA-256 digest in hexadecimal: exactly 64 lower-case hex digits (one
/// spelling per digest, so equal hashes compare equal as strings).
pub fn valid_content_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is an acceptable record pointer; see [`check_pointer`].
pub fn valid_pointer(s: &str) -> bool {
    check_pointer(s).is_ok()
}

/// RFC 3986 characters: unreserved, reserved and `%` (checked for two hex
/// digits after it). No white space, no control or non-ASCII characters
/// (an IRI must be percent-encoded), none of `"<>\^`{|}`.
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// A reverse-domain private scheme (RFC 7595 section 3.8), e.g.
/// `org.example.pacs`: at least two dot-separated labels, each starting with
/// a letter and made of lower-case letters, digits and `-`.
fn reverse_domain_scheme(scheme: &str) -> bool {
    let mut labels = 0usize;
    for label in scheme.split('.') {
        let mut bytes = label.bytes();
        match bytes.next() {
            Some(b) if b.is_ascii_lowercase() => {}
            _ => return false,
        }
        if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return false;
        }
        labels += 1;
    }
    labels >= 2
}

/// Checks a record pointer; the error says what is wrong.
///
/// Allowed: at most [`POINTER_BYTES_MAX`] bytes of RFC 3986 URI characters,
/// with one of these schemes (lower case):
/// - `https://host/...`: a host is required, user info (`user:pass@`) is
///   refused — credentials never go on a ledger;
/// - `urn:nid:nss` (e.g. `urn:uuid:...`, `urn:oid:...` for XDS documents);
/// - a reverse-domain private scheme (`org.example.pacs:...`).
///
/// Everything else is refused, in particular `http` (clear text), `data`
/// (which would put the content itself on the ledger), `file` and
/// `javascript`.
pub fn check_pointer(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > POINTER_BYTES_MAX {
        return Err("must be 1 to 2048 bytes");
    }
    let b = s.as_bytes();
    if !b.iter().all(|&c| uri_byte(c)) {
        return Err(
            "must contain only URI characters (no white space, control or non-ASCII characters)",
        );
    }
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err("has a % not followed by two hexadecimal digits");
            }
        }
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return Err("has no scheme");
    };
    match scheme {
        "https" => {
            let Some(after) = rest.strip_prefix("//") else {
                return Err("https pointers must be https://host/...");
            };
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            let authority = &after[..end];
            if authority.contains('@') {
                return Err("must not carry user information (credentials)");
            }
            let host = match authority.rsplit_once(':') {
                // An IPv6 literal contains colons; its port follows `]`.
                Some((h, port))
                    if !port.contains(']') && port.bytes().all(|c| c.is_ascii_digit()) =>
                {
                    h
                }
                _ => authority,
            };
            if host.is_empty() {
                return Err("https pointers need a host");
            }
            Ok(())
        }
        "urn" => match rest.split_once(':') {
            Some((nid, nss)) if !nid.is_empty() && !nss.is_empty() => Ok(()),
            _ => Err("urn pointers must be urn:namespace:name"),
        },
        _ if reverse_domain_scheme(scheme) => {
            if rest.is_empty() {
                Err("has nothing after its scheme")
            } else {
                Ok(())
            }
        }
        _ => Err("scheme must be https, urn or a reverse-domain private scheme (org.example.app)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_opaque_tokens() {
        for ok in [
            "pt000001",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "01HZX3K9Q7ZB0V4J5T8M2N6P1R",
            &"a1".repeat(32),
        ] {
            assert!(valid_pseudonym(ok), "{ok}");
        }
        for bad in [
            "",
            "pt00001",         // 7 characters
            "John Smith 1970", // spaces
            "JohnSmith",       // no digit: looks like a name
            "jean.dupont1",    // dot
            "müller123",       // non-ASCII
            &"a1".repeat(33),  // 66 characters
        ] {
            assert!(!valid_pseudonym(bad), "{bad}");
        }
    }

    #[test]
    fn content_hashes_are_lower_case_sha256_hex() {
        let h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(valid_content_sha256(h));
        assert!(!valid_content_sha256(&h.to_uppercase()));
        assert!(!valid_content_sha256(&h[..63]));
        assert!(!valid_content_sha256(&format!("{h}0")));
        assert!(!valid_content_sha256(&h.replace('e', "g")));
    }

    #[test]
    fn pointers() {
        for ok in [
            "https://ehr.example.org/fhir/DocumentReference/123",
            "https://pacs.example.org:8443/dicomweb/studies/1.2.840.113619",
            "https://[2001:db8::1]:443/doc/1",
            "https://ehr.example.org",
            "urn:uuid:3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "urn:oid:1.2.840.113619.2.55.3",
            "org.example.pacs:study/1.2.3",
            "https://ehr.example.org/doc%20name",
        ] {
            assert_eq!(check_pointer(ok), Ok(()), "{ok}");
        }
        let long = format!("https://ehr.example.org/{}", "a".repeat(POINTER_BYTES_MAX));
        for bad in [
            "",
            long.as_str(),
            "http://ehr.example.org/doc/1",
            "data:text/plain;base64,SGVsbG8=",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "HTTPS://ehr.example.org/doc",
            "https://ehr.example.org/doc 1",
            "https://ehr.example.org/doc\n1",
            "https://ehr.example.org/dö",
            "https://ehr.example.org/doc%2",
            "https://user:secret@ehr.example.org/doc",
            "https:///doc",
            "https://:443/doc",
            "https:ehr.example.org",
            "urn:uuid",
            "urn::x",
            "pacs:study/1",
            "org.example.pacs:",
            "Org.example:x",
            "ehr.example.org/doc",
            "https://ehr.example.org/<script>",
        ] {
            assert!(check_pointer(bad).is_err(), "{bad:?}");
        }
    }
}
