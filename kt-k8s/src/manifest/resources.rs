//! `Compute` → container resources.
//!
//! - CPU is a request only. A CPU limit makes the kernel throttle the worker in 100 ms
//!   slices whenever it bursts, which shows up as tail latency on every call; the request
//!   alone reserves the CPUs on the node.
//! - Memory is requested and limited at the same amount: memory cannot be taken back
//!   from a process, so without a limit a node under pressure OOM-kills whoever is
//!   largest, and with one the actor dies of its own excess with a clear `OOMKilled`.
//! - GPUs (`nvidia.com/gpu`) and other extended resources cannot be overcommitted, and
//!   Kubernetes requires request = limit for them; both are set, so the spec reads the
//!   same whichever one a tool looks at.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kt_core::{Compute, Error, Result};

/// The resource name of NVIDIA GPUs (the device plugin's).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// CPUs as a quantity: whole CPUs when whole (`"8"`), millicores otherwise (`"500m"`),
/// rounded up so that a request never shrinks.
pub(crate) fn cpu_quantity(cpus: f64) -> Quantity {
    let millis = (cpus * 1000.0).ceil() as u64;
    if millis.is_multiple_of(1000) {
        Quantity((millis / 1000).to_string())
    } else {
        Quantity(format!("{millis}m"))
    }
}

/// Bytes as a quantity, in the largest binary unit that divides them (`"64Gi"`), so the
/// pod reads like what the user wrote.
pub(crate) fn bytes_quantity(bytes: u64) -> Quantity {
    const UNITS: [(&str, u64); 5] = [
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return Quantity(format!("{}{unit}", bytes / size));
        }
    }
    Quantity(bytes.to_string())
}

/// The container's requests and limits.
pub(crate) fn requirements(compute: &Compute) -> Result<ResourceRequirements> {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(cpus) = compute.cpus {
        requests.insert("cpu".to_string(), cpu_quantity(cpus));
    }
    if let Some(bytes) = compute.memory_bytes {
        requests.insert("memory".to_string(), bytes_quantity(bytes));
        limits.insert("memory".to_string(), bytes_quantity(bytes));
    }
    let mut extended: Vec<(&str, u64)> = Vec::new();
    if compute.gpus > 0 {
        extended.push((GPU_RESOURCE, u64::from(compute.gpus)));
    }
    for (name, amount) in &compute.resources {
        let clash = match name.as_str() {
            "cpu" => Some("`.cpus(n)`"),
            "memory" => Some("`.memory(\"64Gi\")`"),
            GPU_RESOURCE if compute.gpus > 0 => Some("only `.gpus(n)`"),
            _ => None,
        };
        if let Some(instead) = clash {
            return Err(Error::invalid_options(format!(
                "compute: resource '{name}' is set twice (as `.resource(\"{name}\", ..)` \
                     and by a dedicated setter); use {instead}"
            )));
        }
        extended.push((name, *amount));
    }
    for (name, amount) in extended {
        requests.insert(name.to_string(), Quantity(amount.to_string()));
        limits.insert(name.to_string(), Quantity(amount.to_string()));
    }
    Ok(ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..ResourceRequirements::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_like_the_request() {
        assert_eq!(cpu_quantity(8.0).0, "8");
        assert_eq!(cpu_quantity(0.5).0, "500m");
        assert_eq!(cpu_quantity(0.0001).0, "1m");
        assert_eq!(bytes_quantity(64 << 30).0, "64Gi");
        assert_eq!(bytes_quantity(1536 << 20).0, "1536Mi");
        assert_eq!(bytes_quantity(1_000_000_000).0, "1000000000");
        assert_eq!(bytes_quantity(0).0, "0");
    }

    #[test]
    fn gpus_and_memory_are_limited_cpu_is_not() {
        let compute = Compute::new()
            .cpus(4.0)
            .memory("16Gi")
            .gpus(2)
            .resource("example.com/fpga", 1);
        let r = requirements(&compute).expect("valid");
        let limits = r.limits.expect("limits");
        let requests = r.requests.expect("requests");
        assert_eq!(limits[GPU_RESOURCE].0, "2");
        assert_eq!(requests[GPU_RESOURCE].0, "2");
        assert_eq!(limits["example.com/fpga"].0, "1");
        assert_eq!(limits["memory"].0, "16Gi");
        assert_eq!(requests["cpu"].0, "4");
        assert!(!limits.contains_key("cpu"));
    }

    #[test]
    fn a_resource_set_twice_is_rejected() {
        let twice = Compute::new().gpus(1).resource(GPU_RESOURCE, 2);
        assert!(matches!(
            requirements(&twice),
            Err(Error::InvalidOptions { .. })
        ));
        let cpu = Compute::new().resource("cpu", 2);
        assert!(matches!(
            requirements(&cpu),
            Err(Error::InvalidOptions { .. })
        ));
        let gpu_as_resource = Compute::new().resource(GPU_RESOURCE, 2);
        assert!(requirements(&gpu_as_resource).is_ok());
        assert!(requirements(&Compute::new()).is_ok_and(|r| r.limits.is_none()));
    }
}
