//! An actor whose methods take and return `kt::Blob`s, to check which way their bytes
//! travel.

use kt::Blob;
use kt::prelude::*;

use super::store::{digest, pattern};

/// Returns blobs made in shared memory or from plain bytes, and reads blob arguments.
#[kt::actor]
pub struct Bulk;

#[kt::actor]
impl Bulk {
    pub fn new() -> Self {
        Bulk
    }

    /// `len` bytes of `pattern(len, seed)`, written in place into shared memory.
    pub fn shared(&self, len: usize, seed: u8) -> Result<Blob, Error> {
        Blob::in_shared_memory(len, |buf| buf.copy_from_slice(&pattern(len, seed)))
    }

    /// `len` bytes of `pattern(len, seed)` from a plain vector.
    pub fn plain(&self, len: usize, seed: u8) -> Blob {
        Blob::from(pattern(len, seed))
    }

    /// `n` blobs of `len` bytes, blob `i` of seed `i`, between two plain numbers.
    pub fn many(&self, n: usize, len: usize) -> (u8, Vec<Blob>, u8) {
        let blobs = (0..n).map(|i| Blob::from(pattern(len, i as u8))).collect();
        (1, blobs, 2)
    }

    /// The length and digest of a blob argument.
    pub fn digest_of(&self, blob: Blob) -> (usize, u64) {
        (blob.len(), digest(&blob))
    }

    /// Calls `other.shared(len, seed)` from this process: whether the blob arrived as
    /// shared memory, and its digest.
    pub async fn fetch_from(
        &self,
        other: ActorRef<Bulk>,
        len: usize,
        seed: u8,
    ) -> Result<(bool, u64), Error> {
        let blob = other.shared(len, seed).await??;
        Ok((blob.is_shared(), digest(&blob)))
    }
}
