//! `kt store ls`: the data stores of the drivers on this machine.
//!
//! Each driver records its store directory's address in this user's state directory;
//! the command asks every live one for its keys over QUIC, authenticated with the
//! machine CA like any kt process of this user (a driver whose session uses a cluster's
//! CA answers only processes of that cluster, and shows as unreachable).

use std::io::Write;

use kt_store::sessions::{DriverStore, on_this_machine};

use super::ps::write_table;
use super::{CliError, Output, StoreLsArgs, format_age};

/// Lists the keys of every driver's store on this machine.
pub async fn store_ls(args: &StoreLsArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let stores = on_this_machine(args.prefix.as_deref().unwrap_or("")).await?;
    match args.output {
        Output::Json => {
            let json = serde_json::to_string_pretty(&stores)
                .map_err(|error| CliError::Invalid(error.to_string()))?;
            writeln!(out, "{json}")?;
        }
        Output::Table => write_table(out, &rows(&stores, now_ms()))?,
    }
    Ok(())
}

/// One row per kept version, under a header; a driver that did not answer gets one row
/// saying why.
fn rows(stores: &[DriverStore], now_ms: u64) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "DRIVER",
            "KEY",
            "VERSION",
            "SIZE",
            "HOLDERS",
            "IN FLIGHT",
            "AGE",
            "META",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for store in stores {
        let pid = store.pid.to_string();
        let keys = match &store.keys {
            Ok(keys) => keys,
            Err(error) => {
                rows.push(vec![pid, format!("(unreachable: {error})")]);
                continue;
            }
        };
        for key in keys {
            for listed in &key.versions {
                let info = &listed.info;
                let age = now_ms.saturating_sub(info.put_at_ms) / 1000;
                let meta: Vec<String> = info.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
                rows.push(vec![
                    pid.clone(),
                    key.key.clone(),
                    info.version.0.to_string(),
                    human_bytes(info.size),
                    listed.holders.to_string(),
                    in_flight(&listed.transfers, now_ms),
                    format_age(age as i64),
                    meta.join(","),
                ]);
            }
        }
    }
    rows
}

/// The transfers of a version under way: `-`, or each as `getter pid<-holder pid (age)`.
fn in_flight(transfers: &[kt_store::Transfer], now_ms: u64) -> String {
    if transfers.is_empty() {
        return "-".into();
    }
    let each: Vec<String> = transfers
        .iter()
        .map(|t| {
            let age = now_ms.saturating_sub(t.started_ms) / 1000;
            format!("{}<-{} ({})", t.to.pid, t.from.pid, format_age(age as i64))
        })
        .collect();
    each.join(" ")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `1.5MiB`, `512B`: binary units, one decimal.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes}B"),
        _ => format!("{value:.1}{}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_store::{
        HolderAddress, KeyListing, Transfer, ValueKind, Version, VersionInfo, VersionListing,
    };

    fn holder(pid: u32) -> HolderAddress {
        HolderAddress {
            node: format!("127.0.0.1:{pid}"),
            host: "h".into(),
            socket: None,
            pid,
        }
    }

    #[test]
    fn rows_show_each_kept_version_and_unreachable_drivers() {
        let info = VersionInfo {
            key: "policy/w".into(),
            version: Version(3),
            size: 3 << 20,
            kind: ValueKind::Tensors,
            meta: [("step".to_string(), "30".to_string())].into(),
            put_at_ms: 1_000,
        };
        let stores = vec![
            DriverStore {
                pid: 42,
                keys: Ok(vec![KeyListing {
                    key: "policy/w".into(),
                    versions: vec![VersionListing {
                        info,
                        holders: 2,
                        transfers: vec![Transfer {
                            to: holder(7),
                            from: holder(8),
                            started_ms: 59_000,
                            relay: false,
                        }],
                    }],
                    waiting: 0,
                }]),
            },
            DriverStore {
                pid: 43,
                keys: Err(kt_core::Error::NoRuntime),
            },
        ];
        let rows = rows(&stores, 61_000);
        assert_eq!(
            rows[1],
            [
                "42",
                "policy/w",
                "3",
                "3.0MiB",
                "2",
                "7<-8 (2s)",
                "60s",
                "step=30"
            ]
        );
        assert_eq!(rows[2][0], "43");
        assert!(rows[2][1].starts_with("(unreachable: "), "{:?}", rows[2]);
        assert_eq!(human_bytes(512), "512B");
    }
}
