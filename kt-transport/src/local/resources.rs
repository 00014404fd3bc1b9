//! The resources a machine offers local-process actors: CPUs and GPUs, reserved at spawn
//! and given back when the worker process exits.
//!
//! GPUs are counted from the device files the NVIDIA driver creates (`/dev/nvidia0`, ...),
//! so nothing needs the CUDA libraries; each GPU actor gets its own devices through
//! `CUDA_VISIBLE_DEVICES`, and actors without GPUs get an empty list so that they never
//! grab a device by accident.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use kt_core::{Compute, Error};
use tokio::sync::Notify;

#[derive(Debug)]
struct Free {
    cpus: f64,
    gpus: BTreeSet<u32>,
}

/// What one machine offers, and what is free now.
#[derive(Debug)]
pub struct Ledger {
    total_cpus: f64,
    total_gpus: u32,
    free: Mutex<Free>,
    released: Notify,
}

impl Ledger {
    /// A ledger of `cpus` CPUs and GPUs `0..gpus`.
    pub fn new(cpus: f64, gpus: u32) -> Arc<Ledger> {
        Arc::new(Ledger {
            total_cpus: cpus,
            total_gpus: gpus,
            free: Mutex::new(Free {
                cpus,
                gpus: (0..gpus).collect(),
            }),
            released: Notify::new(),
        })
    }

    /// This machine's CPUs and NVIDIA GPUs.
    pub fn detect() -> Arc<Ledger> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let gpus = std::fs::read_dir("/dev")
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name.strip_prefix("nvidia")
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .count() as u32
            })
            .unwrap_or(0);
        Ledger::new(cpus, gpus)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves what `compute` asks for: at once, after waiting (`wait`), or not at all.
    pub async fn reserve(
        self: &Arc<Self>,
        type_name: &str,
        compute: &Compute,
        wait: bool,
    ) -> Result<Grant, Error> {
        let cpus = compute.cpus.unwrap_or(0.0);
        let gpus = compute.gpus;
        let insufficient = |free: &Free| Error::InsufficientResources {
            type_name: type_name.to_string(),
            requested: format!("{cpus} CPUs and {gpus} GPUs"),
            available: format!(
                "this machine has {} CPUs and {} GPUs, {} CPUs and {} GPUs free",
                self.total_cpus,
                self.total_gpus,
                free.cpus,
                free.gpus.len()
            ),
        };
        if cpus > self.total_cpus || gpus > self.total_gpus {
            // It would never fit: waiting would wait forever.
            return Err(insufficient(&self.lock()));
        }
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut free = self.lock();
                if free.cpus >= cpus && free.gpus.len() >= gpus as usize {
                    free.cpus -= cpus;
                    let taken: Vec<u32> = free.gpus.iter().copied().take(gpus as usize).collect();
                    taken.iter().for_each(|g| {
                        free.gpus.remove(g);
                    });
                    return Ok(Grant {
                        ledger: self.clone(),
                        cpus,
                        gpus: taken,
                    });
                }
                if !wait {
                    return Err(insufficient(&free));
                }
            }
            released.await;
        }
    }
}

/// Resources held by one worker; given back when dropped.
#[derive(Debug)]
pub struct Grant {
    ledger: Arc<Ledger>,
    cpus: f64,
    gpus: Vec<u32>,
}

impl Grant {
    /// The value of `CUDA_VISIBLE_DEVICES` for the worker: its GPUs, or none.
    pub fn cuda_visible_devices(&self) -> String {
        self.gpus
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut free = self.ledger.lock();
        free.cpus += self.cpus;
        free.gpus.extend(self.gpus.drain(..));
        drop(free);
        self.ledger.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gpus_are_handed_out_disjoint_and_come_back() {
        let ledger = Ledger::new(8.0, 2);
        let one = Compute::new().gpus(1);
        let a = ledger.reserve("A", &one, false).await.expect("fits");
        let b = ledger.reserve("B", &one, false).await.expect("fits");
        assert_ne!(a.cuda_visible_devices(), b.cuda_visible_devices());
        let err = ledger.reserve("C", &one, false).await.expect_err("full");
        assert!(matches!(err, Error::InsufficientResources { .. }), "{err}");
        let waiting = tokio::spawn({
            let ledger = ledger.clone();
            async move {
                ledger
                    .reserve("C", &Compute::new().gpus(1), true)
                    .await
                    .map(|g| g.cuda_visible_devices())
            }
        });
        let freed = a.cuda_visible_devices();
        drop(a);
        assert_eq!(
            waiting.await.expect("task").expect("got the freed GPU"),
            freed
        );
    }

    #[tokio::test]
    async fn requests_that_can_never_fit_fail_even_when_waiting() {
        let ledger = Ledger::new(4.0, 0);
        let err = ledger
            .reserve("Big", &Compute::new().cpus(8.0), true)
            .await
            .expect_err("never fits");
        assert!(err.to_string().contains("this machine has 4 CPUs"), "{err}");
        let cpu_only = ledger
            .reserve("Small", &Compute::new().cpus(1.0), false)
            .await
            .expect("fits");
        assert_eq!(cpu_only.cuda_visible_devices(), "");
    }
}
