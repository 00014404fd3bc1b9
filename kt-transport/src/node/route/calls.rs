//! How a route puts one call on its stream: a method index (the method named once per
//! stream), a call id, the arguments as they are, and the call registered as pending.

use bytes::BytesMut;
use kt_core::{Accepted, EncodedReply, Error};

use super::state::RouteState;
use crate::node::writer::OrderedWriter;
use crate::wire::call::{CALL_HEADER, MAX_METHODS_PER_STREAM, write_call, write_method};

/// What a route's stream remembers about the calls it carries.
#[derive(Default)]
pub(super) struct CallTable {
    /// The names of the methods defined on this stream, by index.
    methods: Vec<Box<str>>,
    /// The id of the next call.
    next_call: u64,
}

impl CallTable {
    /// The index of `method` on this stream, defining it (a `Method` frame in `buf`) on
    /// first use.
    fn method_index(&mut self, method: &str, buf: &mut BytesMut) -> Result<u16, Error> {
        if let Some(index) = self.methods.iter().position(|m| **m == *method) {
            // At most MAX_METHODS_PER_STREAM entries: fits.
            return Ok(index as u16);
        }
        if self.methods.len() >= MAX_METHODS_PER_STREAM {
            return Err(Error::Protocol {
                message: format!(
                    "more than {MAX_METHODS_PER_STREAM} distinct methods called on one actor"
                ),
            });
        }
        let index = self.methods.len() as u16;
        write_method(buf, index, method)?;
        self.methods.push(method.into());
        Ok(index)
    }
}

/// Appends one call to the route's stream (written at once when the stream is idle),
/// registered with `state` before its bytes can reach the actor.
pub(super) fn send_call(
    writer: &OrderedWriter<CallTable>,
    state: &RouteState,
    method: &str,
    args: &[u8],
    reply: EncodedReply,
) -> Accepted {
    let Some(mut appender) = writer.append() else {
        reply.fail(state.gone());
        return Accepted::Now;
    };
    let (buf, table) = appender.parts(CALL_HEADER + args.len());
    let index = match table.method_index(method, buf) {
        Ok(index) => index,
        Err(error) => {
            drop(appender);
            reply.fail(error);
            return Accepted::Now;
        }
    };
    table.next_call += 1;
    let call_id = table.next_call;
    if let Err(reply) = state.register(call_id, reply) {
        drop(appender);
        reply.fail(state.gone());
        return Accepted::Now;
    }
    if let Err(error) = write_call(buf, call_id, index, args) {
        drop(appender);
        state.fail_call(call_id, error);
        return Accepted::Now;
    }
    appender.pace()
}
