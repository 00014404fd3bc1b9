//! Pod IP blocks: each emulator gives its pods addresses from a block that no other
//! emulator on the machine uses at the same time (tests in parallel processes each start
//! their own): `127.B.C.1` to `127.B.C.253` on loopback, or the block's `/24` of
//! `198.18.0.0/15` in a node namespace (see [`crate::network`]).
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
    /// Claims the first free block from `first` up to `last`, trying `127.0.1`,
    /// `127.0.2`, ... in order.
    pub fn claim(first: [u8; 2], last: u16) -> std::io::Result<Self> {
        let start = u16::from_be_bytes(first).max(1);
        let mut last_error = None;
        for n in start..=last {
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

    /// The block's number (`B × 256 + C`).
    pub fn index(&self) -> u16 {
        u16::from_be_bytes(self.prefix)
    }

    /// Loopback pod address `n` (1..=253) of the block.
    pub fn loopback_address(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.prefix[0], self.prefix[1], n)
    }
}

#[cfg(test)]
mod tests {
    use super::IpBlock;

    #[test]
    fn blocks_are_exclusive() {
        let a = IpBlock::claim([0, 200], u16::MAX).expect("a block");
        let b = IpBlock::claim([0, 200], u16::MAX).expect("another block");
        assert_ne!(a.index(), b.index());
        assert_ne!(a.loopback_address(1), b.loopback_address(1));
    }
}
