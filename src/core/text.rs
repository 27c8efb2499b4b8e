//! Free text a user can store — display names, descriptions, tag values, retraction reasons, KEK URIs — and the
//! text of request paths: every such string has a length limit and holds no control characters (a line break and a
//! tab are allowed in multi-line fields). Names (organizations, projects, environments, teams, logins, tags) are
//! checked more strictly by [`crate::core::keys::Name`].

/// Longest display name of a user, in characters.
pub const MAX_DISPLAY_NAME: usize = 256;
/// Longest description of a team or token, in characters.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest name of an environment tag (a free-form label, unlike revision tags), in characters.
pub const MAX_ENV_TAG_NAME: usize = 100;
/// Longest value of an environment tag, in characters.
pub const MAX_TAG_VALUE: usize = 1024;
/// Longest reason given for retracting a revision, in characters.
pub const MAX_REASON: usize = 1024;
/// Longest KEK URI, in characters.
pub const MAX_KEK_URI: usize = 2048;

/// Whether a field may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// No control character at all.
    Single,
    /// Line feeds, carriage returns and tabs allowed; no other control character.
    Multi,
}

/// Why a string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Longer than its field allows.
    #[error("{field} is too long: at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    /// Holds a control character (NUL included).
    #[error("{field} must not contain control characters (such as NUL) {allowed}")]
    Control { field: &'static str, allowed: &'static str },
}

/// Checks `value` for the field `field`: at most `max` characters, and no control characters beyond what `lines`
/// allows.
pub fn check(field: &'static str, value: &str, max: usize, lines: Lines) -> Result<(), TextError> {
    // Bytes bound characters from above: the cheap test first, the count only for long strings.
    if value.len() > max && value.chars().count() > max {
        return Err(TextError::TooLong { field, max });
    }
    let allowed = |c: char| lines == Lines::Multi && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(TextError::Control {
            field,
            allowed: match lines {
                Lines::Single => "",
                Lines::Multi => "other than line breaks and tabs",
            },
        });
    }
    Ok(())
}

/// Whether a raw (percent-encoded) URL path or query holds a control character once decoded — `%00`, `%0A`, `%7F`,
/// a C1 control such as `%C2%85` — or raw.
pub fn escaped_has_control(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    // Printable ASCII with no escape in it (nearly every real path) holds no control character.
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'%') {
        return false;
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(*h), hex(*l))
        {
            decoded.push(h << 4 | l);
            i += 3;
            continue;
        }
        decoded.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).chars().any(char::is_control)
}

/// Whether a JSON text holds a NUL character, raw or escaped as `\u0000` (an escaped backslash followed by `u0000`
/// is text, not a NUL). No stored or looked-up string may hold one.
pub fn json_has_nul(json: &[u8]) -> bool {
    // Only NULs and backslashes matter: jump between them (memchr scans a vector at a time).
    let mut i = 0;
    while let Some(found) = memchr::memchr2(0, b'\\', &json[i..]) {
        let at = i + found;
        if json[at] == 0 {
            return true;
        }
        if json.get(at + 1) == Some(&0) || json.get(at + 1) == Some(&b'u') && json.get(at + 2..at + 6) == Some(b"0000")
        {
            return true;
        }
        // Skip the escaped character (a backslash escaping a backslash is text, not the start of an escape).
        i = at + 2;
        if i >= json.len() {
            break;
        }
    }
    false
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(check("d", &"é".repeat(10), 10, Lines::Single).is_ok());
        assert_eq!(
            check("d", &"é".repeat(11), 10, Lines::Single),
            Err(TextError::TooLong { field: "d", max: 10 })
        );
        assert!(check("d", "", 10, Lines::Single).is_ok());
        assert!(check("d", &"x".repeat(1024), MAX_DESCRIPTION, Lines::Multi).is_ok());
        assert!(check("d", &"x".repeat(1025), MAX_DESCRIPTION, Lines::Multi).is_err());
    }

    #[test]
    fn control_characters_are_refused_and_line_breaks_only_where_allowed() {
        for bad in ["a\0b", "\u{1}", "a\u{7f}", "\u{85}", "\u{9f}x", "\u{1b}[31m"] {
            assert!(
                matches!(check("f", bad, 100, Lines::Multi), Err(TextError::Control { .. })),
                "{bad:?}"
            );
            assert!(
                matches!(check("f", bad, 100, Lines::Single), Err(TextError::Control { .. })),
                "{bad:?}"
            );
        }
        for multi in ["line 1\nline 2", "a\tb", "a\r\nb"] {
            assert!(check("f", multi, 100, Lines::Multi).is_ok());
            assert!(check("f", multi, 100, Lines::Single).is_err());
        }
        assert!(check("f", "ünïcödé ✓ 🔑", 100, Lines::Single).is_ok());
        let msg = check("description", "a\0", 10, Lines::Single).unwrap_err().to_string();
        assert!(msg.contains("description") && msg.contains("NUL"), "{msg}");
    }

    #[test]
    fn nul_is_found_in_json_in_every_form() {
        let bad: [&[u8]; 5] = [
            br#"{"a":"\u0000"}"#,
            br#"["x\u0000y"]"#,
            b"{\"a\":\"\0\"}",
            br#"{"\u0000":1}"#,
            br#"{"a":"\"\u00000"}"#,
        ];
        for json in bad {
            assert!(json_has_nul(json), "{}", String::from_utf8_lossy(json));
        }
        let good: [&[u8]; 4] = [
            br#"{"a":"\\u0000"}"#,
            br#"{"a":"\u0001"}"#,
            br#"{"a":"u0000"}"#,
            br#"{"a":"\\\\u0000"}"#,
        ];
        for json in good {
            assert!(!json_has_nul(json), "{}", String::from_utf8_lossy(json));
        }
    }

    /// The definition, one byte at a time: a raw NUL anywhere, or `\u0000` where the backslash starts an escape.
    fn has_nul_bytewise(json: &[u8]) -> bool {
        let mut i = 0;
        while i < json.len() {
            match json[i] {
                0 => return true,
                b'\\' if json.get(i + 1) == Some(&0) => return true,
                b'\\' if json.get(i + 1..i + 6) == Some(b"u0000") => return true,
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        false
    }

    #[test]
    fn the_nul_scan_agrees_with_the_bytewise_definition_on_every_short_text() {
        // Every text of up to 7 bytes over the bytes that matter (and one that does not).
        let alphabet = [0u8, b'\\', b'u', b'0', b'a'];
        let mut text = Vec::new();
        for len in 0..=7u32 {
            for mut n in 0..5usize.pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(alphabet[n % 5]);
                    n /= 5;
                }
                assert_eq!(json_has_nul(&text), has_nul_bytewise(&text), "{text:?}");
            }
        }
        // Long texts, where the vector scan takes whole blocks.
        let mut long = vec![b'a'; 300];
        assert!(!json_has_nul(&long));
        long[299] = 0;
        assert!(json_has_nul(&long));
        long[299] = b'a';
        long[250..256].copy_from_slice(b"\\u0000");
        assert!(json_has_nul(&long));
    }

    #[test]
    fn every_ascii_character_in_a_path_is_judged_as_char_is_control_judges_it() {
        for b in 0..=0x7fu8 {
            let raw = format!("/a{}b", b as char);
            assert_eq!(escaped_has_control(&raw), (b as char).is_control(), "{b:#x}");
            let escaped = format!("/a%{b:02X}b");
            assert_eq!(escaped_has_control(&escaped), (b as char).is_control(), "{escaped}");
        }
    }

    #[test]
    fn escaped_control_characters_are_found_in_every_form() {
        for bad in [
            "/a/%00/b", "/a%0a", "/a%0D", "%7f", "/x%C2%85", "/x%c2%9f", "/a\u{1}b", "%1B", "%09",
        ] {
            assert!(escaped_has_control(bad), "{bad}");
        }
        for good in [
            "/api/esc/environments/acme/p/e",
            "/a%20b",
            "/%E2%9C%93",
            "/100%",
            "/%zz",
            "/%2",
            "/a%2Fb",
            "/%C3%A9",
        ] {
            assert!(!escaped_has_control(good), "{good}");
        }
    }
}
