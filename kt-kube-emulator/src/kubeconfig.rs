//! A kubeconfig for the emulator: one cluster (`http://127.0.0.1:PORT`), one user without
//! credentials, one context with the default namespace.

/// The kubeconfig YAML for an API server at `server` whose context uses `namespace`.
pub(crate) fn yaml(server: &str, namespace: &str) -> String {
    // Quoted scalars so that any namespace or URL stays a plain YAML string.
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kt-emulator
  cluster:
    server: \"{server}\"
users:
- name: kt-emulator
  user: {{}}
contexts:
- name: kt-emulator
  context:
    cluster: kt-emulator
    user: kt-emulator
    namespace: \"{namespace}\"
current-context: kt-emulator
preferences: {{}}
"
    )
}
