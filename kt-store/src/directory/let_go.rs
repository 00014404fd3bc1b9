//! Telling holders to drop the copies the directory no longer records: versions removed
//! by `rm`, and versions past a key's retention. Without it, a getter that never looks the
//! key up again would keep a removed version in its memory (or its spill file) until its
//! budget pushed it out.

use std::net::SocketAddr;
use std::time::Duration;

use kt_transport::Node;

use super::catalog::LetGo;

/// How long one holder may take to answer before it is left to its own devices (a holder
/// that cannot be reached holds nothing anyone can fetch either).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Tells every holder in `let_go` to drop its copies, at once; resolves when all have
/// answered, failed or timed out. This process's own copies are dropped here.
pub(crate) async fn tell_holders(let_go: LetGo) {
    let Ok(node) = Node::global() else {
        return;
    };
    let here = node.address().to_string();
    let LetGo { key, by_holder } = let_go;
    let tells = by_holder.into_iter().map(|(holder, versions)| {
        let (node, key) = (node.clone(), key.clone());
        let here = holder.node == here;
        async move {
            if here {
                crate::client::store().forget(&key, &versions);
                return;
            }
            let Ok(address) = holder.node.parse::<SocketAddr>() else {
                return;
            };
            let numbers: Vec<u64> = versions.iter().map(|v| v.0).collect();
            let told =
                tokio::time::timeout(ANSWER_WITHIN, node.tell_forget(address, &key, &numbers));
            match told.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!("telling {holder} to drop '{key}': {error}"),
                Err(_) => tracing::debug!(
                    "telling {holder} to drop '{key}': no answer within {ANSWER_WITHIN:?}"
                ),
            }
        }
    });
    futures_util::future::join_all(tells).await;
}
