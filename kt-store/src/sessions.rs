//! The stores of the drivers on this machine, for `kt store ls`: each driver records its
//! directory's address in the user's state directory (`store/<pid>`), and a listing
//! asks every driver that is still alive.

use std::path::PathBuf;
use std::time::Duration;

use kt_core::handle_wire::{HandleAddress, resolve};
use kt_core::{ActorRef, Error};
use serde::{Deserialize, Serialize};

use crate::directory::{KeyListing, StoreDirectory};

/// How long a listing waits for one driver's answer.
const ASK_WITHIN: Duration = Duration::from_secs(3);

/// One driver's store, as a listing found it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriverStore {
    /// The driver's process id.
    pub pid: u32,
    /// Its keys, or why it could not be asked.
    pub keys: Result<Vec<KeyListing>, Error>,
}

fn store_dir() -> Result<PathBuf, Error> {
    let dir = kt_transport::wire::directory::state_dir()?.join("store");
    // Inside the 0700 state directory: nobody else can enter it.
    std::fs::create_dir_all(&dir).map_err(|error| Error::StateDirectory {
        path: dir.display().to_string(),
        message: format!("cannot create it: {error}"),
    })?;
    Ok(dir)
}

/// Records this driver's directory, so that `kt store ls` on this machine finds it. A
/// failure only costs the listing, so it is logged, not returned.
pub(crate) fn register(directory: &ActorRef<StoreDirectory>) {
    let recorded = store_dir().and_then(|dir| {
        let encoded = kt_core::codec::encode(directory, "the store directory's address")?;
        let path = dir.join(std::process::id().to_string());
        let temp = dir.join(format!(".{}.tmp", std::process::id()));
        std::fs::write(&temp, encoded)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|error| Error::StateDirectory {
                path: path.display().to_string(),
                message: format!("cannot write it: {error}"),
            })
    });
    if let Err(error) = recorded {
        tracing::warn!("{error}; `kt store ls` will not list this driver's store");
    }
}

fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// The keys starting with `prefix` in the store of every live driver on this machine,
/// by driver; records of drivers that are gone are removed.
pub async fn on_this_machine(prefix: &str) -> Result<Vec<DriverStore>, Error> {
    let dir = store_dir()?;
    let entries = std::fs::read_dir(&dir).map_err(|error| Error::StateDirectory {
        path: dir.display().to_string(),
        message: format!("cannot read it: {error}"),
    })?;
    let mut stores = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let keys = ask(&entry.path(), prefix).await;
        stores.push(DriverStore { pid, keys });
    }
    stores.sort_by_key(|store| store.pid);
    Ok(stores)
}

async fn ask(record: &std::path::Path, prefix: &str) -> Result<Vec<KeyListing>, Error> {
    let bytes = std::fs::read(record).map_err(|error| Error::StateDirectory {
        path: record.display().to_string(),
        message: format!("cannot read it: {error}"),
    })?;
    let address: HandleAddress = kt_core::codec::decode(&bytes, "a store directory's address")?;
    let directory: ActorRef<StoreDirectory> = ActorRef::from_erased(resolve(address.clone())?)?;
    match tokio::time::timeout(ASK_WITHIN, directory.list(prefix.to_string())).await {
        Ok(listed) => listed,
        Err(_) => Err(Error::Unavailable {
            target: format!("the store directory at {}", address.node),
            message: format!("it did not answer within {ASK_WITHIN:?}"),
        }),
    }
}
