//! The API's semantics over the store: create, read, update, patch, delete, garbage
//! collection by owner references, and the hooks that start the scheduler and the kubelet.
//!
//! Everything here is synchronous; the HTTP layer (`server`) and the emulated kubelet call
//! these functions, so both go through exactly the same rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::config::EmulatorConfig;
use crate::config::NodeConfig;
use crate::faults::Faults;
use crate::kubelet::Kubelet;
use crate::network::{Isolation, Network, NodeNetwork};
use crate::patch::{self, PatchKind};
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Key, Store};
use crate::time;

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Propagation {
    /// Dependents are deleted after the owner (the default for most kinds).
    #[default]
    Background,
    /// Treated as background: the emulator removes the owner first either way.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// The parts of `DeleteOptions` the emulator honours.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (may be empty) and query parameters (which win).
    pub fn parse(body: &[u8], query: &[(String, String)]) -> Result<Self, ApiError> {
        let mut opts = DeleteOptions::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
            opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
            opts.propagation =
                parse_propagation(v.get("propagationPolicy").and_then(Value::as_str))?;
            opts.precondition_uid = v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string);
            opts.precondition_rv = v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            opts.dry_run = v
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        }
        for (k, v) in query {
            match k.as_str() {
                "gracePeriodSeconds" => {
                    opts.grace_period_seconds = Some(
                        v.parse()
                            .map_err(|_| ApiError::bad_request("invalid gracePeriodSeconds"))?,
                    )
                }
                "propagationPolicy" => opts.propagation = parse_propagation(Some(v))?,
                "dryRun" => opts.dry_run = !v.is_empty(),
                _ => {}
            }
        }
        Ok(opts)
    }
}

fn parse_propagation(p: Option<&str>) -> Result<Propagation, ApiError> {
    match p {
        None | Some("") | Some("Background") => Ok(Propagation::Background),
        Some("Foreground") => Ok(Propagation::Foreground),
        Some("Orphan") => Ok(Propagation::Orphan),
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown propagationPolicy {other:?}"
        ))),
    }
}

/// The emulated cluster: store, node, scheduler trigger, kubelet and failure rules.
pub(crate) struct Cluster {
    pub config: EmulatorConfig,
    pub store: Store,
    pub faults: Faults,
    pub kubelet: Kubelet,
    /// Woken whenever scheduling may have a different outcome (pod added, finished,
    /// removed; rules changed).
    pub scheduler_wake: Notify,
    /// `host:port` of the API server, for discovery documents.
    pub server_address: String,
    /// This emulator's pod addresses and where pod processes run, node by node (in the
    /// order of `config.nodes`).
    pub network: Network,
    next_service_ip: AtomicU32,
}

fn meta(object: &Value, field: &str) -> Option<String> {
    object
        .get("metadata")?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

/// The object's metadata map, created if missing; `None` only if `object` is not an object.
fn meta_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let slot = object
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut()
}

/// Five characters in the alphabet the real server uses for `generateName` suffixes.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl Cluster {
    pub fn new(config: EmulatorConfig, server_address: String, network: Network) -> Arc<Self> {
        let cluster = Arc::new(Cluster {
            store: Store::new(config.history_capacity),
            faults: Faults::new(&config.missing_images),
            kubelet: Kubelet::new(),
            scheduler_wake: Notify::new(),
            server_address,
            network,
            next_service_ip: AtomicU32::new(1),
            config,
        });
        cluster.seed();
        cluster
    }

    /// The node and the namespaces every cluster has.
    fn seed(&self) {
        for ns in [
            "default",
            "kube-system",
            "kube-public",
            "kube-node-lease",
            self.config.default_namespace.as_str(),
        ] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            // Duplicates (the default namespace named twice) are expected and harmless.
            let _ = self.create(resources::namespaces(), "", body, false);
        }
        for (node, network) in self.nodes() {
            self.seed_node(node, network);
        }
    }

    /// The Node object of one configured node, Ready.
    fn seed_node(&self, node: &NodeConfig, network: &NodeNetwork) {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": node.labels},
            "spec": {},
        });
        let _ = self.create(resources::nodes(), "", body, false);
        let key = Key::new(resources::nodes(), "", &node.name);
        let status = json!({
            "capacity": node.allocatable,
            "allocatable": node.allocatable,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": time::now(), "lastTransitionTime": time::now(),
            }],
            "addresses": [
                // The node's own address is where its pods see this machine: their hostIP.
                {"type": "InternalIP", "address": network.host_address().to_string()},
                {"type": "Hostname", "address": node.name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.0-kt-emulator", "operatingSystem": "linux",
                "architecture": node.labels.get("kubernetes.io/arch").cloned().unwrap_or_default(),
                "containerRuntimeVersion": "kt-emulator://local-processes",
                "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
            "phase": "Running",
        });
        let _ = self.write_status(&key, None, |s| *s = status);
    }

    /// Every configured node with its network, in configuration order.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeConfig, &NodeNetwork)> {
        self.config
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| Some((node, self.network.node(i)?)))
    }

    /// The network of the node named `name`, if there is such a node.
    pub fn node_network(&self, name: &str) -> Option<&NodeNetwork> {
        self.nodes()
            .find(|(node, _)| node.name == name)
            .map(|(_, network)| network)
    }

    /// What the processes of pods on node `name` enter, if anything.
    pub fn isolation_of(&self, name: &str) -> Option<Isolation> {
        self.node_network(name)?.isolation()
    }

    pub fn get(&self, key: &Key) -> Result<Arc<Value>, ApiError> {
        self.store
            .get(key)
            .ok_or_else(|| ApiError::not_found(&key.resource.qualified_plural(), &key.name))
    }

    /// A `…List` of the matching objects.
    pub fn list(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Value {
        let (items, rv) = self.store.list(resource, namespace);
        let items: Vec<Value> = items
            .iter()
            .filter(|o| labels.matches_object(o) && fields.matches(o))
            .map(|o| (**o).clone())
            .collect();
        json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        })
    }

    /// POST: stores a new object after defaulting and validation.
    pub fn create(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        body["apiVersion"] = json!(resource.api_version());
        body["kind"] = json!(resource.kind);
        let Some(meta) = meta_mut(&mut body) else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        if resource.namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !ns.is_empty() && !namespace.is_empty() && ns != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let ns = if namespace.is_empty() {
                ns
            } else {
                namespace.to_string()
            };
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        resource.kind,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            }
        } else {
            name
        };
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(time::now()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        self.default_and_validate(resource, &name, &mut body)?;
        let key = Key::of(resource, &body);
        if dry_run {
            return match self.store.get(&key) {
                Some(_) => Err(ApiError::already_exists(
                    &resource.qualified_plural(),
                    &name,
                )),
                None => Ok(Arc::new(body)),
            };
        }
        let created = self.store.write(&key, |existing| match existing {
            Some(_) => Err(ApiError::already_exists(
                &resource.qualified_plural(),
                &name,
            )),
            None => Ok(body),
        })?;
        if resource.is_pod() {
            self.scheduler_wake.notify_one();
        }
        Ok(created)
    }

    /// Per-kind defaults and the few validations tests rely on.
    fn default_and_validate(
        &self,
        resource: &ResourceType,
        name: &str,
        body: &mut Value,
    ) -> Result<(), ApiError> {
        if resource.is_pod() {
            let containers = body.pointer("/spec/containers").and_then(Value::as_array);
            let Some(containers) = containers.filter(|c| !c.is_empty()) else {
                return Err(ApiError::invalid(
                    "Pod",
                    name,
                    "spec.containers: Required value",
                ));
            };
            for (i, c) in containers.iter().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::invalid(
                        "Pod",
                        name,
                        &format!("spec.containers[{i}].name: Required value"),
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::invalid(
                        "Pod",
                        name,
                        &format!("spec.containers[{i}].image: Required value"),
                    ));
                }
            }
            let spec = &mut body["spec"];
            for (field, default) in [
                ("restartPolicy", json!("Always")),
                ("terminationGracePeriodSeconds", json!(30)),
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("serviceAccountName", json!("default")),
            ] {
                if spec.get(field).is_none_or(Value::is_null) {
                    spec[field] = default;
                }
            }
            body["status"] = json!({"phase": "Pending", "qosClass": qos_class(body)});
        } else if resource.group.is_empty() && resource.plural == "secrets" {
            // The real server folds write-only `stringData` into base64 `data`.
            if let Some(Value::Object(string_data)) =
                body.as_object_mut().and_then(|b| b.remove("stringData"))
            {
                if !body.get("data").is_some_and(Value::is_object) {
                    body["data"] = json!({});
                }
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or_default();
                    body["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
            if body.get("type").is_none() {
                body["type"] = json!("Opaque");
            }
        } else if resource.group.is_empty() && resource.plural == "services" {
            if !body.get("spec").is_some_and(Value::is_object) {
                body["spec"] = json!({});
            }
            let spec = &mut body["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let n = self.next_service_ip.fetch_add(1, Ordering::Relaxed);
                spec["clusterIP"] = json!(format!("10.96.{}.{}", (n / 254) % 256, n % 254 + 1));
            }
            let ip = spec["clusterIP"].clone();
            if ip != json!("None") {
                spec["clusterIPs"] = json!([ip]);
            }
        }
        Ok(())
    }

    /// PUT of the object (`status == false`) or of its `/status` subresource.
    pub fn update(
        &self,
        key: &Key,
        mut body: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let plural = key.resource.qualified_plural();
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let body_name = meta(&body, "name").unwrap_or_default();
        if !body_name.is_empty() && body_name != key.name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                key.name
            )));
        }
        let wanted_rv = meta(&body, "resourceVersion").filter(|rv| !rv.is_empty());
        let resource = key.resource;
        let mut finished_deleting = false;
        let mut check = |existing: Option<&Arc<Value>>| -> Result<Value, ApiError> {
            let existing = existing.ok_or_else(|| ApiError::not_found(&plural, &key.name))?;
            if let Some(rv) = &wanted_rv
                && meta(existing, "resourceVersion").as_deref() != Some(rv.as_str())
            {
                return Err(ApiError::conflict(&plural, &key.name));
            }
            let mut next = if status {
                let mut next = (**existing).clone();
                next["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                next
            } else {
                body["apiVersion"] = json!(resource.api_version());
                body["kind"] = json!(resource.kind);
                if resource.has_status {
                    body["status"] = existing.get("status").cloned().unwrap_or(Value::Null);
                }
                if body.get("spec") != existing.get("spec") {
                    let generation = existing
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    if let Some(m) = meta_mut(&mut body) {
                        m.insert("generation".into(), json!(generation + 1));
                    }
                }
                std::mem::take(&mut body)
            };
            // Fields the server owns survive any update.
            let old_meta = existing.get("metadata").cloned().unwrap_or_default();
            let Some(m) = meta_mut(&mut next) else {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ));
            };
            for field in [
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old_meta.get(field) {
                    Some(v) => m.insert(field.into(), v.clone()),
                    None => m.remove(field),
                };
            }
            if next.get("status").is_some_and(Value::is_null)
                && let Some(obj) = next.as_object_mut()
            {
                obj.remove("status");
            }
            finished_deleting = old_meta.get("deletionTimestamp").is_some()
                && next
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                && !(resource.is_pod()
                    && self
                        .kubelet
                        .is_running(&meta(existing, "uid").unwrap_or_default()));
            Ok(next)
        };
        if dry_run {
            let existing = self.store.get(key);
            return check(existing.as_ref()).map(Arc::new);
        }
        let updated = self.store.write(key, check)?;
        if finished_deleting {
            self.remove(key);
        }
        Ok(updated)
    }

    /// PATCH of the object or of its `/status` subresource. Server-side apply creates a
    /// missing object.
    pub fn patch(
        &self,
        key: &Key,
        kind: PatchKind,
        patch_body: &[u8],
        status: bool,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let patch_doc: Value = serde_json::from_slice(patch_body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
        let existing = match self.store.get(key) {
            Some(existing) => existing,
            None if kind == PatchKind::Apply && !status => {
                return self.create(key.resource, &key.namespace, patch_doc, dry_run);
            }
            None => {
                return Err(ApiError::not_found(
                    &key.resource.qualified_plural(),
                    &key.name,
                ));
            }
        };
        let mut next = (*existing).clone();
        patch::apply(kind, &mut next, &patch_doc)?;
        // A patch carries a precondition only if it names a resourceVersion itself.
        let wanted_rv = patch_doc
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let rv = match wanted_rv {
            Some(rv) => rv.to_string(),
            None => meta(&existing, "resourceVersion").unwrap_or_default(),
        };
        if let Some(m) = meta_mut(&mut next) {
            m.insert("resourceVersion".into(), json!(rv));
        }
        self.update(key, next, status, dry_run)
    }

    /// Writes a status through a closure (the kubelet's and scheduler's path). Returns `None`
    /// if the object is gone or its uid is no longer `uid`.
    pub fn write_status(
        &self,
        key: &Key,
        uid: Option<&str>,
        f: impl FnOnce(&mut Value),
    ) -> Option<Arc<Value>> {
        self.write_object(key, uid, |o| {
            // Whatever a client stored, the kubelet and scheduler write into an object.
            let mut status = o
                .get("status")
                .filter(|s| s.is_object())
                .cloned()
                .unwrap_or_else(|| json!({}));
            f(&mut status);
            o["status"] = status;
        })
    }

    /// Read-modify-write of a whole object; skipped (no event) when nothing changes.
    pub fn write_object(
        &self,
        key: &Key,
        uid: Option<&str>,
        f: impl FnOnce(&mut Value),
    ) -> Option<Arc<Value>> {
        self.store
            .write(key, |existing| {
                let existing = existing.ok_or(())?;
                if uid.is_some_and(|u| meta(existing, "uid").as_deref() != Some(u)) {
                    return Err(());
                }
                let mut next = (**existing).clone();
                f(&mut next);
                if next == **existing {
                    return Err(());
                }
                Ok(next)
            })
            .ok()
    }

    /// DELETE. Pods with running processes are terminated gracefully first: they get a
    /// `deletionTimestamp` now and disappear when their processes are gone.
    pub fn delete(&self, key: &Key, opts: &DeleteOptions) -> Result<Arc<Value>, ApiError> {
        let existing = self.get(key)?;
        let plural = key.resource.qualified_plural();
        let uid = meta(&existing, "uid").unwrap_or_default();
        if opts.precondition_uid.as_ref().is_some_and(|u| *u != uid)
            || opts
                .precondition_rv
                .as_ref()
                .is_some_and(|rv| Some(rv) != meta(&existing, "resourceVersion").as_ref())
        {
            return Err(ApiError::conflict(&plural, &key.name));
        }
        if opts.dry_run {
            return Ok(existing);
        }
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let has_finalizers = existing
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if key.resource.is_pod() {
            let spec_grace = existing
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64);
            let grace = opts
                .grace_period_seconds
                .or(spec_grace)
                .unwrap_or(30)
                .max(0);
            if self.kubelet.is_running(&uid) || has_finalizers {
                // Mark first, then signal: the pod's task completes the deletion when it
                // ends, and it looks for this mark only after it can no longer be signalled.
                let marked = self.mark_deleting(key, &uid, grace);
                let cap = self.config.max_grace_period;
                if self.kubelet.terminate(&uid, grace, cap) || has_finalizers {
                    return Ok(marked.unwrap_or(existing));
                }
            }
        } else if has_finalizers {
            return Ok(self.mark_deleting(key, &uid, 0).unwrap_or(existing));
        }
        Ok(self.remove(key).unwrap_or(existing))
    }

    fn mark_deleting(&self, key: &Key, uid: &str, grace: i64) -> Option<Arc<Value>> {
        self.write_object(key, Some(uid), |o| {
            if let Some(m) = meta_mut(o)
                && !m.contains_key("deletionTimestamp")
            {
                m.insert("deletionTimestamp".into(), json!(time::now_plus(grace)));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        })
        .or_else(|| self.store.get(key))
    }

    /// The kubelet has stopped every process of a pod that is being deleted.
    pub fn finish_pod_deletion(&self, key: &Key, uid: &str) {
        let Some(pod) = self.store.get(key) else {
            return;
        };
        if meta(&pod, "uid").as_deref() != Some(uid)
            || pod.pointer("/metadata/deletionTimestamp").is_none()
        {
            return;
        }
        if pod
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            self.remove(key);
        }
    }

    /// Removes an object now and deletes whatever it owned (and, for a namespace, contained).
    pub fn remove(&self, key: &Key) -> Option<Arc<Value>> {
        let removed = self.store.remove(key)?;
        let uid = meta(&removed, "uid").unwrap_or_default();
        if key.resource.is_pod() {
            self.kubelet.forget(&uid);
            self.scheduler_wake.notify_one();
        }
        self.collect_garbage(&uid);
        if key.resource.is_namespace() {
            for (k, _) in self.store.all() {
                if k.resource.namespaced && k.namespace == key.name {
                    let _ = self.delete(&k, &DeleteOptions::default());
                }
            }
        }
        Some(removed)
    }

    fn owner_uids(object: &Value) -> Vec<String> {
        object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Deletes (background) every object whose owners are now all gone.
    fn collect_garbage(&self, removed_uid: &str) {
        for (key, object) in self.store.all() {
            let owners = Self::owner_uids(&object);
            if owners.iter().any(|u| u == removed_uid)
                && owners
                    .iter()
                    .all(|u| u == removed_uid || !self.store.uid_exists(u))
                && object.pointer("/metadata/deletionTimestamp").is_none()
            {
                // The dependent may have been deleted meanwhile; that is fine.
                let _ = self.delete(&key, &DeleteOptions::default());
            }
        }
    }

    fn orphan_dependents(&self, owner_uid: &str) {
        for (key, object) in self.store.all() {
            if Self::owner_uids(&object).iter().any(|u| u == owner_uid) {
                let owner = owner_uid.to_string();
                self.write_object(&key, None, move |o| {
                    if let Some(refs) = o
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| {
                            r.get("uid").and_then(Value::as_str) != Some(owner.as_str())
                        });
                    }
                });
            }
        }
    }
}

/// The pod's QoS class, from its containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        any |= requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty());
        let full = limits.is_some_and(|l| l.contains_key("cpu") && l.contains_key("memory"));
        let same = requests.is_none_or(|r| {
            r.iter()
                .all(|(k, v)| limits.and_then(|l| l.get(k)) == Some(v))
        });
        guaranteed &= full && same;
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
