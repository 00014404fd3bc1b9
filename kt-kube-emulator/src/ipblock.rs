//! Pod IP blocks: each emulator gives its pods addresses `127.B.C.1` to `127.B.C.253` from a
//! block `127.B.C.0/24` that no other emulator on the machine uses at the same time (tests
//! in parallel processes each start their own).
//!
//! A block is claimed by listening on `127.B.C.254:CLAIM_PORT` for the emulator's lifetime:
//! the kernel makes that exclusive across processes and releases it when the process dies,
//! so no lock files can go stale.

use std::net::{Ipv4Addr, TcpListener};

/// The port whose listener on `.254` marks a block as taken.
const CLAIM_PORT: u16 = 47_011;

/// A claimed block; dropping it releases the block.
#[derive(Debug)]
pub(crate) struct IpBlock {
    prefix: [u8; 2],
    _claim: TcpListener,
}

impl IpBlock {
    /// Claims the first free block, trying `127.0.1`, `127.0.2`, ... in order.
    pub fn claim(first: [u8; 2]) -> std::io::Result<Self> {
        let start = u16::from_be_bytes(first).max(1);
        let mut last_error = None;
        for n in start..=u16::MAX {
            let prefix = n.to_be_bytes();
            let claim_address = Ipv4Addr::new(127, prefix[0], prefix[1], 254);
            match TcpListener::bind((claim_address, CLAIM_PORT)) {
                Ok(listener) => {
                    return Ok(IpBlock {
                        prefix,
                        _claim: listener,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no free pod IP block")))
    }

    /// Pod address `n` (1..=253) of the block.
    pub fn address(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.prefix[0], self.prefix[1], n)
    }

    /// The first address of the block not in `taken`, if any is left.
    pub fn free(&self, taken: &[String]) -> Option<Ipv4Addr> {
        (1..=253)
            .map(|n| self.address(n))
            .find(|ip| !taken.iter().any(|t| *t == ip.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::IpBlock;

    #[test]
    fn blocks_are_exclusive() {
        let a = IpBlock::claim([0, 200]).expect("a block");
        let b = IpBlock::claim([0, 200]).expect("another block");
        assert_ne!(a.address(1), b.address(1));
        let first = a.free(&[a.address(1).to_string()]).expect("free");
        assert_eq!(first, a.address(2));
    }
}
