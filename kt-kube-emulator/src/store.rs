//! The object store: every object as JSON, one global resourceVersion counter, and a bounded
//! history of changes from which watches are served.
//!
//! Every write bumps the counter by one and appends exactly one event, so the history covers
//! the contiguous range `(floor, current]`; a watch from a resourceVersion below `floor` has
//! lost events and gets 410 Gone (`Expired`), as from the real server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::watch;

use crate::resources::ResourceType;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The watch event's `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub resource: &'static ResourceType,
    pub namespace: String,
    pub kind: EventType,
    pub object: Arc<Value>,
    /// The object before a modification, so that filtered watches can turn a change that
    /// leaves (or enters) the selection into DELETED (or ADDED), as the real server does.
    pub previous: Option<Arc<Value>>,
}

/// Where an object lives: resource type, namespace ("" for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub resource: &'static ResourceType,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(resource: &'static ResourceType, namespace: &str, name: &str) -> Self {
        let namespace = if resource.namespaced {
            namespace.to_string()
        } else {
            String::new()
        };
        Key {
            resource,
            namespace,
            name: name.to_string(),
        }
    }

    /// The key of a stored object.
    pub fn of(resource: &'static ResourceType, object: &Value) -> Self {
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Key::new(resource, ns, name)
    }
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<Event>,
    /// Events at or below this resourceVersion are no longer in `history`.
    floor: u64,
    capacity: usize,
}

/// The store. All operations are synchronous and short; callers never hold the lock across
/// an await.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    latest: watch::Sender<u64>,
}

/// A watch asked for changes that are no longer in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

fn set_rv(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    /// An empty store keeping at most `capacity` events for watches.
    pub fn new(capacity: usize) -> Self {
        let (latest, _) = watch::channel(1);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                floor: 1,
                capacity: capacity.max(16),
            }),
            latest,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write is one insert),
        // so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that changes whenever the store does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The current resourceVersion.
    #[cfg(test)]
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of one type (in one namespace, or all), and the resourceVersion they are
    /// consistent with.
    pub fn list(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Every object, with its type (for garbage collection and namespace deletion).
    pub fn all(&self) -> Vec<(Key, Arc<Value>)> {
        self.lock()
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether an object with this uid exists.
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.lock()
            .objects
            .values()
            .any(|o| o.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid))
    }

    fn record(&self, inner: &mut Inner, event: Event) {
        inner.history.push_back(event);
        while inner.history.len() > inner.capacity {
            if let Some(old) = inner.history.pop_front() {
                inner.floor = old.rv;
            }
        }
        self.latest.send_replace(inner.rv);
    }

    /// Writes an object: a new one (ADDED) or a replacement (MODIFIED). `check` sees the
    /// current object (if any) under the lock and may refuse the write.
    pub fn write<E>(
        &self,
        key: &Key,
        check: impl FnOnce(Option<&Arc<Value>>) -> Result<Value, E>,
    ) -> Result<Arc<Value>, E> {
        let mut inner = self.lock();
        let previous = inner.objects.get(key).cloned();
        let mut object = check(previous.as_ref())?;
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut object, rv);
        let object = Arc::new(object);
        inner.objects.insert(key.clone(), object.clone());
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let event = Event {
            rv,
            resource: key.resource,
            namespace: key.namespace.clone(),
            kind,
            object: object.clone(),
            previous,
        };
        self.record(&mut inner, event);
        Ok(object)
    }

    /// Removes an object (DELETED); the event carries the object at a new resourceVersion.
    pub fn remove(&self, key: &Key) -> Option<Arc<Value>> {
        let mut inner = self.lock();
        let previous = inner.objects.remove(key)?;
        inner.rv += 1;
        let rv = inner.rv;
        let mut last = (*previous).clone();
        set_rv(&mut last, rv);
        let last = Arc::new(last);
        let event = Event {
            rv,
            resource: key.resource,
            namespace: key.namespace.clone(),
            kind: EventType::Deleted,
            object: last.clone(),
            previous: Some(previous),
        };
        self.record(&mut inner, event);
        Some(last)
    }

    /// The events after `cursor` for one resource type, and the resourceVersion they bring
    /// the caller up to.
    pub fn events_since(
        &self,
        cursor: u64,
        resource: &'static ResourceType,
    ) -> Result<(Vec<Event>, u64), Expired> {
        let inner = self.lock();
        if cursor < inner.floor {
            return Err(Expired {
                requested: cursor,
                oldest: inner.floor,
            });
        }
        let skip = (cursor - inner.floor) as usize;
        let events = inner
            .history
            .iter()
            .skip(skip)
            .filter(|e| e.resource == resource)
            .cloned()
            .collect();
        Ok((events, inner.rv.max(cursor)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::pods;
    use serde_json::json;

    fn put(store: &Store, name: &str) -> Arc<Value> {
        let key = Key::new(pods(), "ns", name);
        let obj = json!({"metadata": {"name": name, "namespace": "ns"}});
        store.write::<()>(&key, |_| Ok(obj)).expect("written")
    }

    #[test]
    fn writes_bump_versions_and_record_events() {
        let store = Store::new(16);
        let a = put(&store, "a");
        let a2 = put(&store, "a");
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        assert_eq!(a2["metadata"]["resourceVersion"], "3");
        let (events, rv) = store.events_since(1, pods()).expect("in history");
        assert_eq!(rv, 3);
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventType::Added, EventType::Modified]
        );
        let (events, _) = store.events_since(2, pods()).expect("in history");
        assert_eq!(events.len(), 1);
        let gone = store.remove(&Key::new(pods(), "ns", "a")).expect("existed");
        assert_eq!(gone["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn old_cursors_expire() {
        let store = Store::new(16);
        for i in 0..40 {
            put(&store, &format!("p{i}"));
        }
        assert!(store.events_since(2, pods()).is_err());
        assert!(store.events_since(store.current_rv() - 5, pods()).is_ok());
    }
}
