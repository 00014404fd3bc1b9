//! An actor that uses the data store from inside its own process, and helpers to check
//! what arrived and how.

use kt::prelude::*;
use kt::store::{Dtype, TensorSet, Traffic, Version};

/// An actor that puts and gets values from inside its own process.
#[kt::actor]
pub struct Keeper;

#[kt::actor]
impl Keeper {
    pub fn new() -> Self {
        Keeper
    }

    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Puts `len` bytes, byte `i` being `(i + seed) % 251`, with the step as metadata.
    pub async fn put_pattern(
        &self,
        key: String,
        len: usize,
        seed: u8,
        step: u64,
        keep_last: Option<usize>,
    ) -> Result<Version, Error> {
        let mut put = kt::store::put(key, pattern(len, seed)).meta("step", step);
        if let Some(n) = keep_last {
            put = put.keep_last(n);
        }
        put.await
    }

    /// Puts a two-tensor set.
    pub async fn put_weights(&self, key: String, scale: f32) -> Result<Version, Error> {
        let set = TensorSet::new()
            .add_f32(
                "layer.w",
                &[2, 2],
                &[scale, 2.0 * scale, 3.0 * scale, 4.0 * scale],
            )?
            .add("mask", Dtype::U8, &[3], vec![1, 0, 1])?;
        kt::store::put_tensors(key, set).await
    }

    /// Gets the newest version of `key`: its version and the digest of its bytes.
    pub async fn get_digest(&self, key: String) -> Result<(Version, u64), Error> {
        let entry = kt::store::get(&key).await?;
        Ok((entry.version(), digest(entry.bytes())))
    }

    /// Gets the newest version of `key`: its version, the digest of its bytes, and how
    /// this process's traffic grew meanwhile (which path the bytes took).
    pub async fn get_traced(&self, key: String) -> Result<(Version, u64, Traffic), Error> {
        let before = kt::store::traffic_of(&key);
        let entry = kt::store::get(&key).await?;
        Ok((entry.version(), digest(entry.bytes()), grown(&key, before)))
    }

    /// What this process's store holds against its budget.
    pub fn usage(&self) -> kt::store::Usage {
        kt::store::usage()
    }

    /// This process's store traffic for `key` so far.
    pub fn traffic_of(&self, key: String) -> Traffic {
        kt::store::traffic_of(&key)
    }

    /// Waits for a version newer than `after`: its version, step and digest.
    pub async fn wait_newer(
        &self,
        key: String,
        after: Version,
    ) -> Result<(Version, Option<String>, u64), Error> {
        let entry = kt::store::wait_newer(key, after).await?;
        let step = entry.info().meta("step").map(String::from);
        Ok((entry.version(), step, digest(entry.bytes())))
    }
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i + seed as usize) % 251) as u8)
        .collect()
}

pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |acc, (i, b)| {
        acc.wrapping_mul(31).wrapping_add(u64::from(*b) ^ i as u64)
    })
}

/// True when `ptr` lies in a mapping of one of the store's memfds in this process.
pub fn in_a_store_memfd(ptr: *const u8) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let at = ptr as usize;
    maps.lines().any(|line| {
        let Some((range, rest)) = line.split_once(' ') else {
            return false;
        };
        let Some((start, end)) = range.split_once('-') else {
            return false;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            return false;
        };
        (start..end).contains(&at) && rest.contains("memfd:kt-store")
    })
}

/// How this process's store traffic for `key` grew since `before`.
pub fn grown(key: &str, before: Traffic) -> Traffic {
    let now = kt::store::traffic_of(key);
    Traffic {
        mapped_from_this_host: now.mapped_from_this_host - before.mapped_from_this_host,
        passed_on_this_host: now.passed_on_this_host - before.passed_on_this_host,
        received_over_quic: now.received_over_quic - before.received_over_quic,
        sent_over_quic: now.sent_over_quic - before.sent_over_quic,
        sources_lost_mid_copy: now.sources_lost_mid_copy - before.sources_lost_mid_copy,
    }
}
