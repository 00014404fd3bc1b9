//! Registers this crate as kt-core's [`HandleTransport`]: a handle written into a message
//! becomes the address of its actor on this process's node, and an address read from a
//! message becomes a route to that node.

use kt_core::ErasedActor;
use kt_core::handle_wire::{HandleAddress, HandleTransport, TransportRegistration};

use super::Node;

struct QuicHandles;

impl HandleTransport for QuicHandles {
    fn export(&self, actor: &ErasedActor) -> kt_core::Result<HandleAddress> {
        Node::global()?.export(actor)
    }

    fn import(&self, address: HandleAddress) -> kt_core::Result<ErasedActor> {
        Node::global()?.import(address)
    }
}

inventory::submit! {
    TransportRegistration { transport: || &QuicHandles }
}
