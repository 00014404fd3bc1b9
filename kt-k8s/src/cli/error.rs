//! What can go wrong in a `kt` command. Every message names the kubeconfig, context and
//! namespace that were used, and says what to try next.

/// An error of a `kt` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The kubeconfig could not be loaded or has no usable context.
    #[error(
        "cannot use {source_desc}: {message}\n(pass --kubeconfig PATH, set KUBECONFIG, or pick \
         another context with --context NAME)"
    )]
    Config {
        /// Which kubeconfig (and context) was tried.
        source_desc: String,
        /// What kube said.
        message: String,
    },
    /// A request to the API server failed.
    #[error("{action} in {place} failed: {message}{hint}")]
    Api {
        /// What kt tried (`listing pods`).
        action: String,
        /// The namespace, kubeconfig and context used.
        place: String,
        /// What the API server (or the connection) said.
        message: String,
        /// What to try, when the failure says something useful.
        hint: String,
    },
    /// No actor or group has that name.
    #[error("no actor or group named '{name}' in {place}{}", close_names(.close))]
    NotFound {
        /// The name asked for.
        name: String,
        /// The namespace, kubeconfig and context used.
        place: String,
        /// Names that are close to it.
        close: Vec<String>,
    },
    /// The name matches actors of several sessions.
    #[error(
        "'{name}' names actors of several sessions ({}) in {place}; pick one with --session S",
        .sessions.join(", ")
    )]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The namespace, kubeconfig and context used.
        place: String,
        /// The sessions that have an actor of that name.
        sessions: Vec<String>,
    },
    /// A flag's value is not usable.
    #[error("{0}")]
    Invalid(String),
    /// kt's manifest builders refused the plan.
    #[error("{0}")]
    Manifest(#[from] kt_core::Error),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

fn close_names(close: &[String]) -> String {
    if close.is_empty() {
        "; `kt ps` lists the actors there (-A: in every namespace)".to_string()
    } else {
        format!("; did you mean {}?", close.join(", "))
    }
}

impl CliError {
    /// A failed API request, with a hint for the usual causes.
    pub(crate) fn api(action: impl Into<String>, place: String, error: kube::Error) -> Self {
        let hint = match &error {
            kube::Error::Api(status) if status.code == 401 => {
                "\n(the credentials were refused: log in again or refresh the kubeconfig's token)"
            }
            kube::Error::Api(status) if status.code == 403 => {
                "\n(the user lacks a permission: see `kubectl auth can-i --list -n NS`; kt needs \
                 pods, pods/log, services, configmaps and secrets)"
            }
            kube::Error::Api(_) => "",
            _ => {
                "\n(is the cluster reachable? check the server address with `kubectl cluster-info`)"
            }
        };
        let message = match &error {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        CliError::Api {
            action: action.into(),
            place,
            message,
            hint: hint.to_string(),
        }
    }
}
