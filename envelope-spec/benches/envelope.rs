//! Envelope seal+open pairs beside bare AES-256-GCM seal+open of the same backend (aws-lc-rs), at 64 B, 1 KiB and
//! 64 KiB; and the envelope with a user-space CSPRNG (rand's ThreadRng) against the OS generator.
//!
//! Run: `cargo bench -p sesame-envelope --bench envelope -- --warm-up-time 1 --measurement-time 3`

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::RngCore;
use sesame_envelope::{KeyId, PreparedKey, open, seal};
use std::hint::black_box;

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
const AAD: &[u8] = b"\0\0\0\x16sesame/stack-secret/v1\0\0\0\x05org-1\0\0\0\x03web\0\0\0\x04prod";

fn bare_gcm_pair(key: &LessSafeKey, rng: &mut impl RngCore, plaintext: &[u8]) -> usize {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut buf)
        .unwrap();
    key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut buf)
        .unwrap()
        .len()
}

/// A generator that calls into the OS for every draw (what `seal` would cost without a user-space CSPRNG).
struct OsRng;
impl RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        aws_lc_rs::rand::fill(dst).unwrap();
    }
}
impl rand::CryptoRng for OsRng {}

fn pairs(c: &mut Criterion) {
    let dek = [0x42u8; 32];
    let prepared = PreparedKey::new(KeyId([1; 16]), &dek);
    let bare = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dek).unwrap());
    let mut group = c.benchmark_group("seal+open");
    for size in SIZES {
        let plaintext = vec![0xA5u8; size];
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("bare-aes256gcm", size), &plaintext, |b, p| {
            let mut rng = rand::rng();
            b.iter(|| bare_gcm_pair(&bare, &mut rng, black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("envelope-v1", size), &plaintext, |b, p| {
            let mut rng = rand::rng();
            b.iter(|| {
                let env = seal(&prepared, AAD, black_box(p), &mut rng).unwrap();
                open(&prepared, AAD, &env).unwrap().len()
            })
        });
        if size == 1024 {
            group.bench_with_input(BenchmarkId::new("envelope-v1-os-rng", size), &plaintext, |b, p| {
                b.iter(|| {
                    let env = seal(&prepared, AAD, black_box(p), &mut OsRng).unwrap();
                    open(&prepared, AAD, &env).unwrap().len()
                })
            });
        }
    }
    group.finish();
    c.bench_function("prepare-key", |b| {
        b.iter(|| PreparedKey::new(KeyId([1; 16]), black_box(&dek)))
    });
}

criterion_group!(benches, pairs);
criterion_main!(benches);
