//! Network faults on a node's link, put on both ends of the node's veth pair with `tc`, so
//! that everything into and out of the node's pods (from this machine and from the other
//! nodes, which route through it) meets them.
//!
//! Only a rate limit for now, with the token bucket filter (`tbf`): it is in every kernel
//! that has traffic control, where `netem` (delay, loss) is an option that kernels built
//! for VMs often leave out.

use std::fmt::Write as _;

/// What a node's link does to its packets, each way. The default is a clean link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkFaults {
    /// The most bits per second the link carries, each way; `None` for no limit.
    pub rate_bits_per_second: Option<u64>,
}

impl LinkFaults {
    /// A clean link: no limit.
    pub fn new() -> Self {
        LinkFaults::default()
    }

    /// Carries at most `bits` bits per second, each way.
    pub fn rate_bits_per_second(mut self, bits: u64) -> Self {
        self.rate_bits_per_second = Some(bits);
        self
    }

    /// The `tc` commands that put these faults on `link` in place of any before; a clean
    /// link goes back to its default (none on a veth: deleting the root queue fails when
    /// there is none, so a plain `pfifo_fast` replaces whatever is there first).
    pub(super) fn tc_command(&self, link: &str) -> String {
        let mut command = format!("qdisc replace dev {link} root");
        match self.rate_bits_per_second {
            Some(bits) => {
                // A bucket of 10 ms of traffic (at least a few full packets), and a queue
                // of up to a second: a burst is slowed down, not mostly dropped.
                let burst = (bits / 8 / 100).max(16 * 1024);
                let _ = write!(command, " tbf rate {bits}bit burst {burst} latency 1s");
            }
            None => {
                let _ = write!(command, " pfifo_fast\nqdisc del dev {link} root");
            }
        }
        command.push('\n');
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_becomes_a_token_bucket_and_a_clean_link_the_default_queue() {
        let faults = LinkFaults::new().rate_bits_per_second(80_000_000);
        assert_eq!(
            faults.tc_command("kte3"),
            "qdisc replace dev kte3 root tbf rate 80000000bit burst 100000 latency 1s\n"
        );
        assert_eq!(
            LinkFaults::new()
                .rate_bits_per_second(1_000)
                .tc_command("eth0"),
            "qdisc replace dev eth0 root tbf rate 1000bit burst 16384 latency 1s\n"
        );
        assert_eq!(
            LinkFaults::new().tc_command("eth0"),
            "qdisc replace dev eth0 root pfifo_fast\nqdisc del dev eth0 root\n"
        );
    }
}
