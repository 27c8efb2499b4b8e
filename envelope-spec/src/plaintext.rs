//! [`Plaintext`]: what [`crate::open`] returns — bytes that are wiped when dropped.
//!
//! `zeroize::Zeroizing<Vec<u8>>` wipes element by element with volatile writes, which at 64 KiB costs as much as
//! the AES-GCM decryption itself; `zeroize::zeroize_bytes` does one optimized fill followed by an optimization
//! barrier, with the same guarantee. This type uses the latter.

use std::fmt;
use std::ops::Deref;

/// Decrypted bytes, zeroized on drop. `Debug` prints only the length.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    pub(crate) fn zeroed(len: usize) -> Plaintext {
        Plaintext(vec![0; len])
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// A copy of the bytes in a `Zeroizing` vector, for callers that keep them.
    pub fn to_zeroizing_vec(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(self.0.clone())
    }
}

impl Deref for Plaintext {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        // The Vec never reallocated (it was allocated at its final length), so this wipes every copy we made.
        zeroize::zeroize_bytes(&mut self.0);
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext([redacted; {} bytes])", self.0.len())
    }
}
