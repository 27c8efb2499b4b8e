//! The values a KEK works on: the plaintext [`Dek`] (zeroized, never printed), the [`WrapContext`] that binds a
//! wrap to its row, and the [`WrappedDek`] that is stored.

use std::fmt;

use rand::RngCore;
use zeroize::Zeroizing;

/// A 256-bit data-encryption key in plaintext. Zeroized on drop; `Debug` prints `Dek([redacted])`.
pub struct Dek(Zeroizing<[u8; 32]>);

impl Dek {
    /// A DEK from bytes (the caller's copy should be zeroized by the caller).
    pub fn from_bytes(bytes: [u8; 32]) -> Dek {
        Dek(Zeroizing::new(bytes))
    }

    /// A new random DEK from the operating system's CSPRNG.
    pub fn generate() -> Dek {
        let mut key = Zeroizing::new([0u8; 32]);
        // ThreadRng: a ChaCha CSPRNG seeded and periodically reseeded from the OS.
        rand::rng().fill_bytes(&mut key[..]);
        Dek(key)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([redacted])")
    }
}

/// Ordered fields that bind a wrapped DEK to where it belongs (DESIGN.md §3). Encoded with a domain label and a
/// length before every name and value, so `{"ab": "c"}` and `{"a": "bc"}` encode differently.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WrapContext {
    fields: Vec<(String, Vec<u8>)>,
}

impl WrapContext {
    /// An empty context.
    pub fn new() -> Self {
        WrapContext::default()
    }

    /// Adds a field (order matters).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.fields.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// The fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The canonical encoding: `u32-BE len || "sesame-wrap-context/v1"`, then per field `u32-BE len || name ||
    /// u32-BE len || value`.
    pub fn encode(&self) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, bytes: &[u8]) {
            // Field lengths are far below 4 GiB (ids and scope names); saturating keeps the encoding total.
            let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(bytes);
        }
        let mut out = Vec::new();
        put(&mut out, b"sesame-wrap-context/v1");
        for (name, value) in &self.fields {
            put(&mut out, name.as_bytes());
            put(&mut out, value);
        }
        out
    }
}

impl fmt::Debug for WrapContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Context fields are ids and scope names, not secrets.
        f.debug_map()
            .entries(self.fields.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

/// A DEK wrapped by a KEK, as stored in `dek_wraps`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDek {
    /// The wrapped key bytes.
    pub ciphertext: Vec<u8>,
    /// The wrapping algorithm (for example `A256GCM`).
    pub wrap_alg: String,
    /// The exact key version (or key id) that wrapped it.
    pub kek_version: String,
    /// A binding tag, where the KMS takes no associated data.
    pub binding: Option<Vec<u8>>,
}

impl fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedDek")
            .field("ciphertext_len", &self.ciphertext.len())
            .field("wrap_alg", &self.wrap_alg)
            .field("kek_version", &self.kek_version)
            .field("binding", &self.binding.as_ref().map(Vec::len))
            .finish()
    }
}
