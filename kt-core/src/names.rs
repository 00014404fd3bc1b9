//! Named actors: the directory behind `.name("...")` and [`get_actor`].
//!
//! Names are unique among live actors (rule N1). The directory of this process holds
//! every named actor it hosts; a lookup that misses here asks the default placement,
//! which is how later backends find actors hosted elsewhere. An owned actor's entry
//! does not keep it alive (a lookup returns an owning handle only while another owning
//! handle exists); a detached actor's entry is what keeps it reachable until it is
//! killed.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use crate::actor::Actor;
use crate::actor_ref::{ActorRef, RawRef};
use crate::cell::LocalCell;
use crate::error::{Error, Result};
use crate::route::OwnerGuard;

struct Entry {
    id: u64,
    type_name: &'static str,
    /// A `Named<A>` for the entry's actor type.
    handle: Box<dyn Any + Send + Sync>,
}

struct Named<A: Actor> {
    cell: Arc<LocalCell<A>>,
    owner: Option<Weak<OwnerGuard>>,
}

static DIRECTORY: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(Default::default);

fn directory() -> MutexGuard<'static, HashMap<String, Entry>> {
    DIRECTORY
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Frees the name when the actor's task ends.
pub(crate) struct NameGuard {
    name: String,
    id: u64,
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        let mut dir = directory();
        if dir.get(&self.name).is_some_and(|entry| entry.id == self.id) {
            dir.remove(&self.name);
        }
    }
}

/// Claims `name` for the actor in `cell`, or fails with [`Error::NameTaken`].
pub(crate) fn register<A: Actor>(
    name: &str,
    cell: &Arc<LocalCell<A>>,
    owner: Option<Weak<OwnerGuard>>,
) -> Result<NameGuard> {
    let mut dir = directory();
    if dir.contains_key(name) {
        return Err(Error::NameTaken {
            name: name.to_string(),
        });
    }
    let handle = Box::new(Named {
        cell: cell.clone(),
        owner,
    });
    let id = cell.label.id;
    dir.insert(
        name.to_string(),
        Entry {
            id,
            type_name: A::TYPE_NAME,
            handle,
        },
    );
    Ok(NameGuard {
        name: name.to_string(),
        id,
    })
}

/// Finds the live actor named `name` in this process.
pub(crate) fn lookup_local<A: Actor>(name: &str) -> Option<Result<ActorRef<A>>> {
    let dir = directory();
    let entry = dir.get(name)?;
    let wrong_type = || Error::WrongActorType {
        name: name.to_string(),
        expected: A::TYPE_NAME.to_string(),
        found: entry.type_name.to_string(),
    };
    if entry.type_name != A::TYPE_NAME {
        return Some(Err(wrong_type()));
    }
    let Some(named) = entry.handle.downcast_ref::<Named<A>>() else {
        return Some(Err(wrong_type()));
    };
    if !named.cell.is_alive() {
        return None;
    }
    let owner = match &named.owner {
        None => None,
        // An owned actor whose owners are all gone is stopping: it is not found.
        Some(weak) => Some(weak.upgrade()?),
    };
    Some(Ok(ActorRef::from_raw(RawRef::local(
        named.cell.clone(),
        owner,
    ))))
}
