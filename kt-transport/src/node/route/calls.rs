//! How a route puts one call on its stream: a method index (the method named once per
//! stream), a call id, the arguments as they are, and the call registered as pending —
//! or parked on the caller's side while the actor's mailbox bound is used up (rule B1).
//!
//! A route has credit for as many unanswered calls as the actor can hold: its mailbox
//! capacity plus the calls it runs at once. A call past the credit is encoded but kept
//! back, in order, and written when a reply frees room; its `Call::sent()` resolves
//! then. So a producer that awaits `sent()` is paced by the actor exactly as in one
//! process, and calls on the wire never exceed what the actor can take. Past the
//! parking bound a call is refused with `Error::Overloaded`.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};
use kt_core::backend::{Accepted, WaitingLine};
use kt_core::{Error, parking_limit};
use std::sync::atomic::Ordering;

use super::pending::Slot;
use super::state::RouteState;
use crate::node::writer::{Appender, HoldsBack, OrderedWriter};
use crate::wire::call::{
    CALL_HEADER, MAX_METHODS_PER_STREAM, write_call, write_method, write_release,
};

/// What a route's stream remembers about the calls it carries.
pub(super) struct CallTable {
    /// The names of the methods defined on this stream, by index.
    methods: Vec<Box<str>>,
    /// The id of the last call.
    last_call: u64,
    /// How many unanswered calls may be on the wire (rule B1).
    credit: usize,
    /// Frames kept back behind calls past the credit, in order.
    parked: VecDeque<Parked>,
    /// The bytes of the parked calls, one after another in `parked`'s order: one buffer
    /// rather than an allocation per parked call.
    parked_bytes: BytesMut,
    /// How many of `parked` are calls (registered as pending).
    parked_calls: usize,
    /// The parked calls' `sent()`: one line for all of them, admitted as they are
    /// written.
    line: WaitingLine,
}

/// A frame kept back on the caller's side.
enum Parked {
    /// A call past the credit: its frame is the next `len` bytes of `parked_bytes`.
    Call { len: usize },
    /// A `Release` made after parked calls: it must not overtake them (rule L1).
    Release,
}

impl HoldsBack for CallTable {
    fn holds_back(&self) -> bool {
        !self.parked.is_empty()
    }
}

impl CallTable {
    /// A table allowing `credit` unanswered calls on the wire.
    pub(super) fn new(credit: usize) -> Self {
        CallTable {
            methods: Vec::new(),
            last_call: 0,
            credit: credit.max(1),
            parked: VecDeque::new(),
            parked_bytes: BytesMut::new(),
            parked_calls: 0,
            line: WaitingLine::new(),
        }
    }

    /// Changes the credit (the backend learned the actor's mailbox capacity).
    pub(super) fn set_credit(&mut self, credit: usize) {
        self.credit = credit.max(1);
    }

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

/// Unanswered calls on the wire: pending ones that are not parked.
fn on_the_wire(state: &RouteState, table: &CallTable) -> usize {
    state.pending_count().saturating_sub(table.parked_calls)
}

/// Appends one call to the route's stream (written at once when the stream is idle), or
/// parks it past the credit; it is registered with `state` (as `slot`) before its bytes
/// can reach the actor. Returns its id, or the slot back with the reason it was refused.
pub(super) fn send_call(
    writer: &OrderedWriter<CallTable>,
    state: &RouteState,
    method: &str,
    args: &[u8],
    slot: Slot,
) -> Result<(Accepted, u64), Unsent> {
    let Some(mut appender) = writer.append() else {
        return Err((slot, Box::new(state.gone())));
    };
    let refused = match append_call(&mut appender, state, method, args, slot) {
        Appended::Sent(accepted, call_id) => return Ok((accepted, call_id)),
        Appended::Refused(refused) => refused,
    };
    // Answered once no lock is held: a reply slot may run a caller's code.
    drop(appender);
    match refused {
        Refused::Unsent(slot, error) => Err((slot, Box::new(error))),
        Refused::Registered(call_id, error) => {
            state.fail_call(call_id, error);
            Ok((Accepted::Now, call_id))
        }
    }
}

/// A call refused before it was registered: its slot back, and why (boxed: a refusal is
/// rare, and the error large).
pub(super) type Unsent = (Slot, Box<Error>);

/// What became of a call put on the stream.
enum Appended {
    /// On the stream, or kept back (then `Later`), under this id.
    Sent(Accepted, u64),
    /// Refused: to be answered once the stream's lock is released.
    Refused(Refused),
}

/// A call that could not be put on the stream.
enum Refused {
    /// Before it was registered: its slot, to answer with the error.
    Unsent(Slot, Error),
    /// After: its id among the route's pending calls.
    Registered(u64, Error),
}

fn append_call(
    appender: &mut Appender<'_, CallTable>,
    state: &RouteState,
    method: &str,
    args: &[u8],
    slot: Slot,
) -> Appended {
    let (buf, table) = appender.parts(CALL_HEADER + args.len());
    let index = match table.method_index(method, buf) {
        Ok(index) => index,
        Err(error) => return Appended::Refused(Refused::Unsent(slot, error)),
    };
    let limit = parking_limit(table.credit);
    if table.parked_calls >= limit {
        let actor = state.label().clone();
        let error = Error::Overloaded { actor, limit };
        return Appended::Refused(Refused::Unsent(slot, error));
    }
    table.last_call += 1;
    let call_id = table.last_call;
    let pending = match state.register(call_id, slot) {
        Ok(pending) => pending,
        Err(slot) => return Appended::Refused(Refused::Unsent(slot, state.gone())),
    };
    let on_wire = pending.saturating_sub(table.parked_calls);
    if table.parked.is_empty() && on_wire <= table.credit {
        if let Err(error) = write_call(buf, call_id, index, args) {
            return Appended::Refused(Refused::Registered(call_id, error));
        }
        // Calls already in flight: this one joins a batch rather than a write of its own.
        if on_wire > 1 {
            appender.batch();
        }
        return Appended::Sent(Accepted::Now, call_id);
    }
    let before = table.parked_bytes.len();
    if let Err(error) = write_call(&mut table.parked_bytes, call_id, index, args) {
        table.parked_bytes.truncate(before);
        return Appended::Refused(Refused::Registered(call_id, error));
    }
    let len = table.parked_bytes.len() - before;
    let ticket = table.line.join();
    table.parked.push_back(Parked::Call { len });
    table.parked_calls += 1;
    state.holding_back.store(true, Ordering::SeqCst);
    // A reply removed since the count above may have missed the flag: look again, now
    // that it is set, so that no room goes unused.
    release_into(appender, state);
    Appended::Sent(Accepted::InLine(ticket), call_id)
}

/// Appends a `Release` behind every call made so far, parked ones included.
pub(super) fn send_release(writer: &OrderedWriter<CallTable>) {
    let Some(mut appender) = writer.append() else {
        return;
    };
    let (buf, table) = appender.parts(8);
    match table.parked.is_empty() {
        true => write_release(buf),
        false => table.parked.push_back(Parked::Release),
    }
}

/// The route is gone: parked calls will never be written (their replies fail with the
/// route's other pending calls), and their `sent()` learns it now.
pub(super) fn drop_parked(writer: &OrderedWriter<CallTable>, state: &RouteState) {
    if let Some(mut appender) = writer.append() {
        let (_, table) = appender.parts(0);
        table.parked.clear();
        table.parked_bytes = BytesMut::new();
        table.parked_calls = 0;
        table.line.close();
        state.holding_back.store(false, Ordering::SeqCst);
    }
}

/// Replies freed credit: parked calls go on the wire, oldest first, as far as it goes.
pub(super) fn release_parked(writer: &OrderedWriter<CallTable>, state: &RouteState) {
    let Some(mut appender) = writer.append() else {
        return;
    };
    release_into(&mut appender, state);
}

fn release_into(appender: &mut Appender<'_, CallTable>, state: &RouteState) {
    let (buf, table) = appender.parts(0);
    if table.parked.is_empty() {
        return;
    }
    // Counted once: replies only lower the count while the stream's lock is held here,
    // so the room can only be larger than this, never smaller.
    let mut room = table.credit.saturating_sub(on_the_wire(state, table));
    let (mut calls, mut bytes) = (0, 0);
    while let Some(front) = table.parked.front() {
        match *front {
            Parked::Call { .. } if room == 0 => break,
            Parked::Call { len } => {
                room -= 1;
                calls += 1;
                bytes += len;
            }
            // The calls before a `Release` go first.
            Parked::Release => {
                buf.extend_from_slice(&table.parked_bytes[..bytes]);
                table.parked_bytes.advance(bytes);
                bytes = 0;
                write_release(buf);
            }
        }
        table.parked.pop_front();
    }
    buf.extend_from_slice(&table.parked_bytes[..bytes]);
    table.parked_bytes.advance(bytes);
    table.parked_calls -= calls;
    table.line.admit(calls as u64);
    if table.parked.is_empty() {
        state.holding_back.store(false, Ordering::SeqCst);
    }
}
