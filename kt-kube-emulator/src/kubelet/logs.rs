//! Container output kept for `pods/{name}/log`: a bounded buffer per container instance
//! (the current one and the previous one, for `previous=true`), with change notification
//! for `follow=true`.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
struct Instance {
    number: u64,
    data: Vec<u8>,
    /// Bytes dropped from the front to stay under the limit.
    dropped: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Instance>,
    previous: Option<Instance>,
    started: u64,
}

/// The logs of one container.
pub(crate) struct ContainerLog {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    limit: usize,
}

/// A read of a log.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub instance: u64,
    pub data: Vec<u8>,
    /// Absolute offset after `data`.
    pub end: u64,
    /// The instance has exited and everything it wrote is in.
    pub closed: bool,
}

impl ContainerLog {
    pub fn new(limit: usize) -> Self {
        ContainerLog {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            limit: limit.max(1024),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// A new process instance starts; the current one becomes the previous one.
    pub fn begin(&self) -> u64 {
        let mut state = self.lock();
        state.started += 1;
        let number = state.started;
        if let Some(mut old) = state.current.take() {
            old.closed = true;
            state.previous = Some(old);
        }
        state.current = Some(Instance {
            number,
            ..Instance::default()
        });
        drop(state);
        self.bump();
        number
    }

    pub fn append(&self, instance: u64, bytes: &[u8]) {
        let mut state = self.lock();
        if let Some(cur) = state.current.as_mut().filter(|c| c.number == instance) {
            cur.data.extend_from_slice(bytes);
            if cur.data.len() > self.limit {
                let excess = cur.data.len() - self.limit;
                cur.data.drain(..excess);
                cur.dropped += excess as u64;
            }
        }
        drop(state);
        self.bump();
    }

    /// The instance's process has exited and its output is drained.
    pub fn close(&self, instance: u64) {
        let mut state = self.lock();
        if let Some(cur) = state.current.as_mut().filter(|c| c.number == instance) {
            cur.closed = true;
        }
        drop(state);
        self.bump();
    }

    /// Everything kept of the current (or previous) instance; `None` if there is none.
    pub fn snapshot(&self, previous: bool) -> Option<Chunk> {
        let state = self.lock();
        let inst = if previous {
            state.previous.as_ref()
        } else {
            state.current.as_ref()
        }?;
        Some(Chunk {
            instance: inst.number,
            data: inst.data.clone(),
            end: inst.dropped + inst.data.len() as u64,
            closed: inst.closed,
        })
    }

    /// What `instance` wrote after absolute offset `from`; `None` once the instance is
    /// neither current nor previous.
    pub fn read_from(&self, instance: u64, from: u64) -> Option<Chunk> {
        let state = self.lock();
        let inst = [state.current.as_ref(), state.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|i| i.number == instance)?;
        let start = from.saturating_sub(inst.dropped) as usize;
        let data = inst
            .data
            .get(start..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        Some(Chunk {
            instance,
            end: inst.dropped + inst.data.len() as u64,
            data,
            closed: inst.closed,
        })
    }

    /// Changes whenever anything is written.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The last `n` lines of `data` (a trailing partial line counts as a line).
pub(crate) fn tail_lines(data: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &data[data.len()..];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_rotate_and_buffers_stay_bounded() {
        let log = ContainerLog::new(1024);
        let first = log.begin();
        log.append(first, b"hello\n");
        log.close(first);
        let second = log.begin();
        log.append(second, &[b'x'; 2000]);
        let prev = log.snapshot(true).expect("a previous instance");
        assert_eq!(prev.data, b"hello\n");
        let cur = log.snapshot(false).expect("a current instance");
        assert_eq!(cur.data.len(), 1024);
        assert_eq!(cur.end, 2000);
        let rest = log.read_from(second, 1990).expect("still kept");
        assert_eq!(rest.data.len(), 10);
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_lines(b"a\n", 5), b"a\n");
        assert_eq!(tail_lines(b"a\n", 0), b"");
    }
}
