//! The encoding of associated data: a label and fields, each length-prefixed, so that no two different field
//! lists encode to the same bytes (`["ab", "c"]` and `["a", "bc"]` differ), whatever the fields contain.

/// Encodes `label` and `fields` as `u32-BE(len) || bytes` for the label and then for each field, in order.
///
/// Callers pass the result as the `aad` of [`crate::seal`] and [`crate::open`]. The label names the kind of content
/// (for example `sesame/stack-secret/v1`), so that associated data of one kind can never equal another's.
pub fn context(label: &str, fields: &[&[u8]]) -> Vec<u8> {
    let len = 4 + label.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    for part in std::iter::once(label.as_bytes()).chain(fields.iter().copied()) {
        // A field longer than 4 GiB cannot occur in memory we were handed for associated data; saturate rather than
        // wrap so even then two lengths can never alias silently into a short one.
        let n = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_boundaries_matter() {
        assert_ne!(context("l", &[b"ab", b"c"]), context("l", &[b"a", b"bc"]));
        assert_ne!(context("l", &[b""]), context("l", &[]));
        assert_ne!(context("a", &[]), context("b", &[]));
        assert_eq!(context("l", &[b"x"]), b"\0\0\0\x01l\0\0\0\x01x".to_vec());
    }
}
