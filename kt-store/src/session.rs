//! Where this process finds the store's directory: in the driver, the one it started on
//! first use; in a worker, the driver's, whose address the worker inherited.

use std::sync::{Arc, OnceLock};

use kt_core::handle_wire::{HandleAddress, resolve};
use kt_core::{ActorRef, Error, InProcess};
use kt_transport::worker::WorkerGone;
use kt_transport::worker::inherit::Inheritance;
use tokio::sync::OnceCell;

use crate::directory::{DIRECTORY_CONCURRENCY, StoreDirectory};

/// The name the directory's address is handed down under.
const INHERITED_NAME: &str = "kt.store.directory";

/// The address a worker inherited from its driver.
static INHERITED: OnceLock<HandleAddress> = OnceLock::new();

static DIRECTORY: OnceCell<ActorRef<StoreDirectory>> = OnceCell::const_new();

/// This session's directory.
pub(crate) async fn directory() -> Result<&'static ActorRef<StoreDirectory>, Error> {
    DIRECTORY
        .get_or_try_init(|| async {
            match INHERITED.get() {
                Some(address) => ActorRef::from_erased(resolve(address.clone())?),
                // The driver, or a process no backend started: the directory is here.
                None => {
                    let directory = StoreDirectory::spawn()
                        .on(Arc::new(InProcess))
                        .max_concurrency(DIRECTORY_CONCURRENCY)
                        .await?;
                    crate::sessions::register(&directory);
                    Ok(directory)
                }
            }
        })
        .await
}

fn provide() -> futures_util::future::BoxFuture<'static, Result<Option<Vec<u8>>, Error>> {
    Box::pin(async {
        // A handle travels as its address (exported on this process's node).
        let directory = directory().await?;
        kt_core::codec::encode(directory, "the store directory's address").map(Some)
    })
}

fn receive(bytes: &[u8]) -> Result<(), Error> {
    let address = kt_core::codec::decode(bytes, "the store directory's address")?;
    let _ = INHERITED.set(address);
    Ok(())
}

inventory::submit! {
    Inheritance { name: INHERITED_NAME, provide, receive }
}

/// A worker this driver supervised is gone: its holdings go with it, so a get fails
/// with `HolderLost` (or goes to another holder) at once instead of trying to reach it.
fn worker_gone(node: &str, _cause: &kt_core::DeathCause) {
    if let Some(directory) = DIRECTORY.get() {
        // Sent now; nobody waits for the answer.
        drop(directory.holder_gone(node.to_string()));
    }
}

inventory::submit! {
    WorkerGone { notify: worker_gone }
}
